//! Scenario 4: publish at a fixed rate and measure publish-to-handler latency.
//!
//! The publisher stamps each message with the wall-clock time just before it is
//! handed to the producer (a `bench-sent-ns` header; the message itself is the
//! usual [`Bench`] envelope), and the handler subtracts it from the time it runs.
//! Publisher and consumer share the process, so they share the clock. The
//! consumer joins first: warm-up messages (negative ids, not measured) are sent
//! until one arrives.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use kafkaesk::{Application, Record, Router, Subscription};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers as _, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;
use tokio::sync::watch;

use kafkaesk_bench::measure::percentile;
use kafkaesk_bench::{decode_envelope, envelope_bytes, Bench};

use crate::kafka::{client_config, delivered, send_with_backoff};

pub(crate) const SENT_HEADER: &str = "bench-sent-ns";

/// What to run.
#[derive(Debug, Clone)]
pub struct LatencySpec {
    /// Bootstrap servers.
    pub servers: String,
    /// Topic prefix.
    pub prefix: String,
    /// Stream name; the topic is `prefix + stream`.
    pub stream: String,
    /// Consumer group.
    pub group: String,
    /// Messages per second.
    pub rate: u32,
    /// How long to publish.
    pub duration: Duration,
}

impl LatencySpec {
    pub(crate) fn topic(&self) -> String {
        format!("{}{}", self.prefix, self.stream)
    }

    pub(crate) fn messages(&self) -> usize {
        (self.duration.as_secs_f64() * f64::from(self.rate)).round() as usize
    }
}

/// Latency percentiles of one run, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct LatencyResult {
    /// Messages measured.
    pub samples: usize,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Maximum.
    pub max_ms: f64,
}

pub(crate) fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

/// Latencies seen by the handler of one run.
#[derive(Default)]
pub(crate) struct Recorder {
    warmed_up: AtomicBool,
    received: AtomicUsize,
    latencies_ms: Mutex<Vec<f64>>,
}

impl Recorder {
    pub(crate) fn record(&self, id: i64, sent: Option<&[u8]>) {
        if id < 0 {
            self.warmed_up.store(true, Ordering::Release);
            return;
        }
        let Some(sent) = sent
            .and_then(|s| std::str::from_utf8(s).ok())
            .and_then(|s| s.parse::<u128>().ok())
        else {
            return;
        };
        let latency_ms = now_ns().saturating_sub(sent) as f64 / 1e6;
        self.latencies_ms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(latency_ms);
        self.received.fetch_add(1, Ordering::Release);
    }

    pub(crate) fn result(&self, expected: usize) -> Result<LatencyResult> {
        let mut all = self
            .latencies_ms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if all.len() < expected {
            bail!(
                "only {} of {expected} latency messages reached the handler",
                all.len()
            );
        }
        all.sort_by(f64::total_cmp);
        Ok(LatencyResult {
            samples: all.len(),
            p50_ms: percentile(&all, 50.0),
            p99_ms: percentile(&all, 99.0),
            max_ms: all.last().copied().unwrap_or(f64::NAN),
        })
    }

    pub(crate) async fn wait_warm(
        &self,
        mut send_warm_up: impl AsyncFnMut() -> Result<()>,
    ) -> Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while !self.warmed_up.load(Ordering::Acquire) {
            if tokio::time::Instant::now() > deadline {
                bail!("the consumer received no warm-up message within 60 s");
            }
            send_warm_up().await?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    pub(crate) async fn wait_all(&self, expected: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while self.received.load(Ordering::Acquire) < expected
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Sends `count` messages at `rate` per second through `send`, which gets the
/// message index and the send timestamp.
pub(crate) async fn paced(
    rate: u32,
    count: usize,
    mut send: impl AsyncFnMut(i64, String) -> Result<()>,
) -> Result<()> {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
    // Catch up after a late tick so the average rate holds.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for i in 0..count as i64 {
        tick.tick().await;
        send(i, now_ns().to_string()).await?;
    }
    Ok(())
}

/// The baseline: rdkafka `FutureProducer` and `StreamConsumer` with librdkafka's defaults.
pub async fn baseline(spec: &LatencySpec) -> Result<LatencyResult> {
    let recorder = Arc::new(Recorder::default());
    let consumer: StreamConsumer = client_config(&spec.servers)
        .set("group.id", &spec.group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .context("creating the baseline consumer")?;
    consumer
        .subscribe(&[&spec.topic()])
        .context("subscribing the baseline consumer")?;
    let (stop, mut stopped) = watch::channel(false);
    let consumer_recorder = recorder.clone();
    let consuming = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stopped.changed() => break,
                message = consumer.recv() => match message {
                    Ok(message) => {
                        let sent = message.headers().and_then(|headers| {
                            headers.iter().find(|h| h.key == SENT_HEADER).and_then(|h| h.value)
                        });
                        match decode_envelope(message.payload().unwrap_or_default()) {
                            Ok(data) => consumer_recorder.record(data.id, sent),
                            Err(err) => eprintln!("baseline latency consumer: {err}"),
                        }
                    }
                    Err(err) => eprintln!("baseline latency consumer error: {err}"),
                },
            }
        }
        consumer
    });

    let producer: FutureProducer = client_config(&spec.servers)
        .create()
        .context("creating the baseline producer")?;
    let topic = spec.topic();
    let send = async |id: i64, sent: String| -> Result<rdkafka::producer::DeliveryFuture> {
        let payload = envelope_bytes(&Bench::sample(id));
        let headers = OwnedHeaders::new().insert(Header {
            key: SENT_HEADER,
            value: Some(sent.as_bytes()),
        });
        send_with_backoff(
            &producer,
            FutureRecord::to(&topic)
                .payload(payload.as_slice())
                .headers(headers),
        )
        .await
    };
    recorder
        .wait_warm(async || send(-1, now_ns().to_string()).await.map(drop))
        .await?;
    let mut pending = Vec::new();
    paced(spec.rate, spec.messages(), async |i, sent| {
        pending.push(send(i, sent).await?);
        Ok(())
    })
    .await?;
    for delivery in pending {
        delivered(delivery)
            .await
            .context("baseline latency publish")?;
    }
    recorder.wait_all(spec.messages()).await;
    stop.send_replace(true);
    let consumer = consuming.await.context("the baseline consumer task")?;
    tokio::task::spawn_blocking(move || {
        drop(consumer);
        drop(producer);
    })
    .await
    .context("closing the baseline clients")?;
    recorder.result(spec.messages())
}

/// kafkaesk: `app.publish(...).header(...)` on the publishing side and a typed
/// handler that also takes the [`Record`] for the header.
pub async fn kafkaesk(spec: &LatencySpec) -> Result<LatencyResult> {
    let recorder = Arc::new(Recorder::default());
    let handler_recorder = recorder.clone();
    let handler = move |data: Bench, record: Record| {
        let recorder = handler_recorder.clone();
        async move { recorder.record(data.id, record.headers().get(SENT_HEADER)) }
    };
    let mut router = Router::new();
    router.schema::<Bench>().context("registering the schema")?;
    router.subscribe(
        Subscription::for_streams([spec.stream.as_str()], handler)
            .with_name("bench-latency")
            .with_group(&spec.group),
    );
    let app = Application::builder()
        .kafka_servers([spec.servers.as_str()])
        .topic_prefix(&spec.prefix)
        .kafka_settings(crate::kafka::kafkaesk_settings())
        .mount(router)
        .build()
        .context("building the kafkaesk application")?;
    let consuming = tokio::spawn({
        let app = app.clone();
        async move { app.consume_forever().await }
    });

    let send = async |id: i64, sent: String| -> Result<kafkaesk::PublishHandle> {
        let data = Bench::sample(id);
        app.publish(&spec.stream, &data)
            .header(SENT_HEADER, sent.as_bytes())
            .await
            .context("kafkaesk latency publish")
    };
    recorder
        .wait_warm(async || send(-1, now_ns().to_string()).await.map(drop))
        .await?;
    let mut pending = Vec::new();
    paced(spec.rate, spec.messages(), async |i, sent| {
        pending.push(send(i, sent).await?);
        Ok(())
    })
    .await?;
    for handle in pending {
        handle.await.context("kafkaesk latency delivery")?;
    }
    recorder.wait_all(spec.messages()).await;
    app.stop();
    consuming
        .await
        .context("the kafkaesk consumer task")?
        .context("kafkaesk consume_forever")?;
    tokio::task::spawn_blocking(move || drop(app))
        .await
        .context("closing the kafkaesk application")?;
    recorder.result(spec.messages())
}
