//! The Rust peer of issue 19: RustStream 0.7 (`ruststream` with `ruststream-rdkafka`), built
//! only with `--features ruststream`.
//!
//! Its recommended setup, from the `ruststream-rdkafka` README: `ruststream` with the `macros`
//! and `json` features, `ruststream-rdkafka` with its defaults, a [`KafkaBroker`] on the
//! bootstrap servers, a [`KafkaTopic`] subscription with [`Commit::Tracked`] (precise
//! per-message acknowledgement) and the default JSON codec. Everything else is RustStream's
//! and librdkafka's defaults ("this crate does not impose its own"); the only properties set
//! are the benchmark's `--setting`s, which every side gets.
//!
//! Two things are set because the benchmark needs them, not to tune: every run subscribes in
//! a fresh group from the earliest offset ([`StartOffset::Earliest`], what kafkaesk's
//! `auto.offset.reset=earliest` and the baseline do), and topic and group names are the
//! run's, so the handlers are the manual form ([`Handle`] on a type holding the run's
//! counters; `#[subscriber]` takes literal topics). The manual form is RustStream's own second
//! spelling of the same handler ("the service ... written without the macros").
//!
//! Each side does what the others do per message: decode the envelope and the data into
//! [`Bench`] (here through RustStream's JSON codec) and add the id to a sum. RustStream does
//! not validate against a JSON Schema on publish; kafkaesk does.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use ruststream_rdkafka::prelude::*;
use serde::Serialize;

use kafkaesk_bench::measure::Probe;
use kafkaesk_bench::{Bench, Envelope, SCHEMA_KEY};

use crate::scenarios::consume::{ConsumeSpec, Track};
use crate::scenarios::latency::{now_ns, paced, LatencyResult, LatencySpec, Recorder, SENT_HEADER};
use crate::RunResult;

/// The versions Cargo.lock pins, for the report: `ruststream 0.7.7, ruststream-rdkafka 0.7.1`.
pub fn versions() -> String {
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock"))
        .unwrap_or_default();
    let version = |name: &str| {
        let header = format!("name = \"{name}\"\nversion = \"");
        lock.find(&header)
            .map(|at| &lock[at + header.len()..])
            .and_then(|rest| rest.split('"').next())
            .unwrap_or("?")
            .to_owned()
    };
    format!(
        "ruststream {}, ruststream-rdkafka {} (features: macros, json; rdkafka {})",
        version("ruststream"),
        version("ruststream-rdkafka"),
        version("rdkafka")
    )
}

/// The envelope as RustStream publishes it: the same `{"schema":"Bench:1","data":{...}}`
/// bytes as every other side, serialised by RustStream's JSON codec. The destination is named
/// at the call site (`.to(topic)`).
#[derive(Debug, Serialize, Outgoing)]
struct BenchEnvelope {
    schema: &'static str,
    data: Bench,
}

impl BenchEnvelope {
    fn sample(i: i64) -> Self {
        BenchEnvelope {
            schema: SCHEMA_KEY,
            data: Bench::sample(i),
        }
    }
}

fn app_info() -> AppInfo {
    AppInfo::new("kafkaesk-bench", env!("CARGO_PKG_VERSION"))
}

/// A broker on `servers` with the benchmark's `--setting`s (the ones every side gets) and
/// nothing else.
fn broker(servers: &str) -> KafkaBroker {
    let mut broker = KafkaBroker::new([servers]);
    for (key, value) in crate::kafka::extra_settings().both {
        broker = broker.config(key, value);
    }
    broker
}

/// The subscription every consuming run uses: a fresh group, tracked commits.
fn topic(topic: &str, group: &str) -> KafkaTopic {
    KafkaTopic::new(topic)
        .group(group)
        .start(StartOffset::Earliest)
        .commit(Commit::Tracked)
}

/// The consume handler: the same work as the baseline's loop body.
struct Count {
    track: Arc<Track>,
    target: usize,
}

impl Handle<Envelope<Bench>> for Count {
    async fn handle(
        &self,
        envelope: &Envelope<Bench>,
        _outs: &(),
        _ctx: &mut Context<'_>,
    ) -> Result<(), HandlerOutcome> {
        self.track.handle(&envelope.data, self.target);
        Ok(())
    }
}

/// Waits until `done` says so or `timeout` passes, checking every 5 ms.
async fn wait_until(timeout: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while !done() {
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}

/// Scenario 1 (and the drain of scenario 5): RustStream consumes the pre-filled topic in a
/// fresh group, with `workers` deliveries at once (1: its default, one at a time).
pub async fn consume(spec: &ConsumeSpec, workers: usize) -> Result<RunResult> {
    let probe = Probe::start();
    let track = Arc::new(Track::default());
    let handler = Count {
        track: track.clone(),
        target: spec.messages,
    };
    let source = topic(&spec.topic(), &spec.group);
    let app = RustStream::new(app_info()).with_broker(broker(&spec.servers), move |b| {
        let definition = subscriber(source, handler);
        match NonZeroUsize::new(workers).filter(|n| n.get() > 1) {
            Some(n) => {
                b.include(definition.workers(n).build());
            }
            None => {
                b.include(definition.build());
            }
        }
    });
    let running = app.start().await.context("starting the RustStream app")?;
    let target = spec.messages;
    let finished = wait_until(spec.timeout, || track.count() >= target).await;
    running
        .shutdown()
        .await
        .context("shutting the RustStream app down")?;
    if !finished {
        eprintln!(
            "RustStream consumed {} of {} messages",
            track.count(),
            spec.messages
        );
    }
    track.result(spec, &probe)
}

/// Scenario 2: a publisher taken from the running app (`RunningApp::publisher` on a token of
/// the default `Publish` policy), one warm-up message, then every message published and its
/// delivery report awaited. RustStream's `publish()` future resolves on the delivery report
/// and there is no separate enqueue step, so all N futures are awaited together, the same
/// everything-in-flight pattern as the other sides.
pub async fn publish(servers: &str, topic: &str, messages: usize) -> Result<RunResult> {
    let broker = broker(servers).bindable();
    let egress = broker.bind(Publish::default());
    let app = RustStream::new(app_info()).with_broker(broker, |_b| {});
    let running = app.start().await.context("starting the RustStream app")?;
    let publisher = running
        .publisher(egress)
        .await
        .context("pairing the RustStream publisher")?;
    publisher
        .message(&BenchEnvelope::sample(-1))
        .to(topic)
        .publish()
        .await
        .context("RustStream warm-up message")?;
    let data: Vec<BenchEnvelope> = (0..messages as i64).map(BenchEnvelope::sample).collect();

    let probe = Probe::start();
    futures::future::try_join_all(
        data.iter()
            .map(|item| publisher.message(item).to(topic).publish()),
    )
    .await
    .context("RustStream publish")?;
    let result = RunResult {
        messages,
        seconds: probe.wall().as_secs_f64(),
        cpu: probe.cpu(),
    };
    drop(publisher);
    running
        .shutdown()
        .await
        .context("shutting the RustStream app down")?;
    Ok(result)
}

/// The latency handler: the envelope through the codec, the send time from the header.
struct Stamp {
    recorder: Arc<Recorder>,
}

impl Handle<Envelope<Bench>> for Stamp {
    async fn handle(
        &self,
        envelope: &Envelope<Bench>,
        _outs: &(),
        ctx: &mut Context<'_>,
    ) -> Result<(), HandlerOutcome> {
        self.recorder
            .record(envelope.data.id, ctx.headers().get(SENT_HEADER));
        Ok(())
    }
}

/// Scenario 4: one app subscribes (tracked commits, its default one delivery at a time) and
/// publishes through a publisher taken from it. Each publish runs in a task of its own, so the
/// paced loop does not wait for delivery reports; the send time is stamped in that task just
/// before `publish()`.
pub async fn latency(spec: &LatencySpec) -> Result<LatencyResult> {
    let recorder = Arc::new(Recorder::default());
    let handler = Stamp {
        recorder: recorder.clone(),
    };
    let source = topic(&spec.topic(), &spec.group);
    let broker = broker(&spec.servers).bindable();
    let egress = broker.bind(Publish::default());
    let app = RustStream::new(app_info()).with_broker(broker, move |b| {
        b.include(subscriber(source, handler).build());
    });
    let running = app.start().await.context("starting the RustStream app")?;
    let publisher = running
        .publisher(egress)
        .await
        .context("pairing the RustStream publisher")?;
    let topic = spec.topic();
    let send = |id: i64| {
        let publisher = publisher.clone();
        let topic = topic.clone();
        tokio::spawn(async move {
            let data = BenchEnvelope::sample(id);
            let mut headers = HeaderMap::new();
            headers.insert(SENT_HEADER, now_ns().to_string().into_bytes());
            publisher
                .message(&data)
                .to(topic.as_str())
                .with_headers(headers)
                .publish()
                .await
        })
    };
    recorder
        .wait_warm(async || {
            send(-1)
                .await
                .context("the RustStream warm-up task")?
                .context("RustStream warm-up message")
        })
        .await?;
    let mut pending = Vec::new();
    paced(spec.rate, spec.messages(), async |i, _sent| {
        pending.push(send(i));
        Ok(())
    })
    .await?;
    for task in pending {
        task.await
            .context("a RustStream publish task")?
            .context("RustStream latency publish")?;
    }
    recorder.wait_all(spec.messages()).await;
    drop(publisher);
    running
        .shutdown()
        .await
        .context("shutting the RustStream app down")?;
    recorder.result(spec.messages())
}
