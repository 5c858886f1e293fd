//! Scenario 1 (and the drain of scenario 5): consuming a pre-filled topic.
//!
//! Both sides do the same work per message: decode the envelope and the data
//! into [`Bench`] and add its id to a sum. Throughput runs from the first
//! message to the last one handled, so joining the group is left out on both
//! sides; CPU time covers the whole run, setup and closing included.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kafkaesk::{Application, Router, Subscription};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::Message;

use kafkaesk_bench::measure::Probe;
use kafkaesk_bench::{decode_envelope, Bench};

use crate::kafka::client_config;
use crate::RunResult;

/// Where and how much to consume.
#[derive(Debug, Clone)]
pub struct ConsumeSpec {
    /// Bootstrap servers.
    pub servers: String,
    /// Topic prefix (kafkaesk's `topic_prefix`).
    pub prefix: String,
    /// Stream name; the topic is `prefix + stream`.
    pub stream: String,
    /// Consumer group, fresh for every run.
    pub group: String,
    /// Messages to consume.
    pub messages: usize,
    /// Gives up after this long.
    pub timeout: Duration,
}

impl ConsumeSpec {
    pub(crate) fn topic(&self) -> String {
        format!("{}{}", self.prefix, self.stream)
    }
}

/// First and last handled message, shared by the handlers of one run.
#[derive(Default)]
pub(crate) struct Track {
    count: AtomicUsize,
    sum: AtomicU64,
    first: OnceLock<Instant>,
    last: Mutex<Option<Instant>>,
}

impl Track {
    pub(crate) fn handle(&self, data: &Bench, target: usize) {
        self.first.get_or_init(Instant::now);
        self.sum.fetch_add(data.id as u64, Ordering::Relaxed);
        if self.count.fetch_add(1, Ordering::Relaxed) + 1 == target {
            *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        }
    }

    /// Messages handled so far.
    #[cfg_attr(not(feature = "ruststream"), allow(dead_code))]
    pub(crate) fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    pub(crate) fn result(&self, spec: &ConsumeSpec, probe: &Probe) -> Result<RunResult> {
        let count = self.count.load(Ordering::Relaxed);
        let last = *self.last.lock().unwrap_or_else(|e| e.into_inner());
        let (Some(first), Some(last)) = (self.first.get(), last) else {
            bail!(
                "consumed {count} of {} messages from {} within {:?}",
                spec.messages,
                spec.topic(),
                spec.timeout
            );
        };
        Ok(RunResult {
            messages: spec.messages,
            seconds: last.duration_since(*first).as_secs_f64(),
            cpu: probe.cpu(),
        })
    }
}

/// The baseline: an rdkafka `StreamConsumer` in a fresh group with librdkafka's
/// defaults, decoding with serde_json and committing once at the end.
pub async fn baseline(spec: &ConsumeSpec) -> Result<RunResult> {
    let probe = Probe::start();
    let track = Track::default();
    let consumer: StreamConsumer = client_config(&spec.servers)
        .set("group.id", &spec.group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .context("creating the baseline consumer")?;
    consumer
        .subscribe(&[&spec.topic()])
        .context("subscribing the baseline consumer")?;
    let deadline = tokio::time::Instant::now() + spec.timeout;
    let mut seen = 0usize;
    while seen < spec.messages {
        let message = match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Err(_) => break,
            Ok(Err(err)) => {
                eprintln!("baseline consumer error: {err}");
                continue;
            }
            Ok(Ok(message)) => message,
        };
        let data = decode_envelope(message.payload().unwrap_or_default())
            .context("the baseline could not decode a message")?;
        track.handle(&data, spec.messages);
        seen += 1;
    }
    if seen == spec.messages {
        consumer
            .commit_consumer_state(CommitMode::Sync)
            .context("committing the baseline's offsets")?;
    }
    // Leaving the group blocks until the broker answers; not on the async threads.
    tokio::task::spawn_blocking(move || drop(consumer))
        .await
        .context("closing the baseline consumer")?;
    track.result(spec, &probe)
}

/// kafkaesk: a typed handler subscribed through the router API (a fresh group
/// per run), run with `consume_for`.
pub async fn kafkaesk(spec: &ConsumeSpec, concurrency: usize) -> Result<RunResult> {
    let probe = Probe::start();
    let track = Arc::new(Track::default());
    let target = spec.messages;
    let handler_track = track.clone();
    let handler = move |data: Bench| {
        let track = handler_track.clone();
        async move { track.handle(&data, target) }
    };
    let mut router = Router::new();
    router.schema::<Bench>().context("registering the schema")?;
    router.subscribe(
        Subscription::for_streams([spec.stream.as_str()], handler)
            .with_name("bench-consume")
            .with_group(&spec.group)
            .with_concurrency(concurrency),
    );
    let app = Application::builder()
        .kafka_servers([spec.servers.as_str()])
        .topic_prefix(&spec.prefix)
        .kafka_settings(crate::kafka::kafkaesk_settings())
        .mount(router)
        .build()
        .context("building the kafkaesk application")?;
    let consumed = app
        .consume_for(spec.messages, spec.timeout)
        .await
        .context("kafkaesk consume_for")?;
    // The application's producer and admin client close off the async threads.
    tokio::task::spawn_blocking(move || drop(app))
        .await
        .context("closing the kafkaesk application")?;
    if consumed < spec.messages {
        eprintln!(
            "kafkaesk consume_for returned {consumed} of {} messages",
            spec.messages
        );
    }
    track.result(spec, &probe)
}
