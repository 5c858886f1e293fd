//! Scenario 2: publishing N messages and awaiting every delivery.
//!
//! Both sides follow the same pattern: connect and send one warm-up message
//! (not timed), then queue all N messages, then await every delivery. The
//! baseline sends bytes serialised before the clock starts; kafkaesk gets the
//! typed structs and serialises and validates them itself.

use std::time::Duration;

use anyhow::{Context, Result};
use kafkaesk::{Application, Router};
use rdkafka::producer::{FutureProducer, FutureRecord};

use kafkaesk_bench::measure::Probe;
use kafkaesk_bench::{envelope_bytes, Bench};

use crate::kafka::{client_config, delivered, send_with_backoff};
use crate::RunResult;

/// The baseline: an rdkafka `FutureProducer` with librdkafka's defaults.
pub async fn baseline(servers: &str, topic: &str, messages: usize) -> Result<RunResult> {
    let producer: FutureProducer = client_config(servers)
        .create()
        .context("creating the baseline producer")?;
    let warm_up = envelope_bytes(&Bench::sample(-1));
    delivered(
        send_with_backoff(
            &producer,
            FutureRecord::to(topic).payload(warm_up.as_slice()),
        )
        .await?,
    )
    .await
    .context("baseline warm-up message")?;
    let payloads: Vec<Vec<u8>> = (0..messages as i64)
        .map(|i| envelope_bytes(&Bench::sample(i)))
        .collect();

    let probe = Probe::start();
    let mut pending = Vec::with_capacity(messages);
    for payload in &payloads {
        let record = FutureRecord::to(topic).payload(payload.as_slice());
        pending.push(send_with_backoff(&producer, record).await?);
    }
    for delivery in pending {
        delivered(delivery).await.context("baseline publish")?;
    }
    let result = RunResult {
        messages,
        seconds: probe.wall().as_secs_f64(),
        cpu: probe.cpu(),
    };
    tokio::task::spawn_blocking(move || drop(producer))
        .await
        .context("closing the baseline producer")?;
    Ok(result)
}

/// How the kafkaesk side publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// kafkaesk's default: an idempotent producer.
    Idempotent,
    /// `enable.idempotence=false`, librdkafka's plain producer as the baseline's.
    Plain,
    /// Transactions of this many messages, each committed before the next begins.
    Transactions(usize),
}

/// kafkaesk: `app.publish(stream, &data)` (serialise, validate, queue) for every
/// message, then every handle awaited; in [`Mode::Transactions`], the same
/// through `tx.publish` in transactions of N messages, each committed.
pub async fn kafkaesk(
    servers: &str,
    prefix: &str,
    stream: &str,
    messages: usize,
    mode: Mode,
) -> Result<RunResult> {
    let mut router = Router::new();
    router.schema::<Bench>().context("registering the schema")?;
    let mut settings = crate::kafka::kafkaesk_settings();
    if mode == Mode::Plain {
        settings.push(("enable.idempotence".into(), "false".into()));
    }
    let app = Application::builder()
        .kafka_servers([servers])
        .topic_prefix(prefix)
        .kafka_settings(settings)
        .mount(router)
        .build()
        .context("building the kafkaesk application")?;
    app.publish_and_wait(stream, &Bench::sample(-1))
        .await
        .context("kafkaesk warm-up message")?;
    let data: Vec<Bench> = (0..messages as i64).map(Bench::sample).collect();

    let probe = Probe::start();
    if let Mode::Transactions(size) = mode {
        for chunk in data.chunks(size.max(1)) {
            let tx = app.transaction().await.context("kafkaesk transaction")?;
            let mut pending = Vec::with_capacity(chunk.len());
            for item in chunk {
                pending.push(tx.publish(stream, item).await.context("kafkaesk publish")?);
            }
            for handle in pending {
                handle.await.context("kafkaesk delivery")?;
            }
            tx.commit().await.context("kafkaesk commit")?;
        }
    } else {
        let mut pending = Vec::with_capacity(messages);
        for item in &data {
            pending.push(
                app.publish(stream, item)
                    .await
                    .context("kafkaesk publish")?,
            );
        }
        for handle in pending {
            handle.await.context("kafkaesk delivery")?;
        }
    }
    let result = RunResult {
        messages,
        seconds: probe.wall().as_secs_f64(),
        cpu: probe.cpu(),
    };
    tokio::time::timeout(Duration::from_secs(30), app.finalize())
        .await
        .context("finalizing the kafkaesk application timed out")?
        .context("finalizing the kafkaesk application")?;
    tokio::task::spawn_blocking(move || drop(app))
        .await
        .context("closing the kafkaesk application")?;
    Ok(result)
}
