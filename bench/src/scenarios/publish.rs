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

/// kafkaesk: `app.publish(stream, &data)` (serialise, validate, queue) for every
/// message, then every handle awaited. `idempotent` keeps kafkaesk's default;
/// without it the producer is librdkafka's plain one, as the baseline's.
pub async fn kafkaesk(
    servers: &str,
    prefix: &str,
    stream: &str,
    messages: usize,
    idempotent: bool,
) -> Result<RunResult> {
    let mut router = Router::new();
    router.schema::<Bench>().context("registering the schema")?;
    let mut settings = crate::kafka::kafkaesk_settings();
    if !idempotent {
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
