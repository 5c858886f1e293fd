//! Broker plumbing shared by the scenarios: topics, pre-filling, client settings.

use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;

use kafkaesk_bench::{envelope_bytes, Bench};

/// Partitions of every benchmark topic, as the issue asks.
pub const PARTITIONS: i32 = 7;

/// librdkafka properties given on the command line, for experiments.
#[derive(Debug, Clone, Default)]
pub struct ExtraSettings {
    /// Applied to every client, baseline and kafkaesk alike (`--setting`).
    pub both: Vec<(String, String)>,
    /// Applied to kafkaesk's clients only (`--kafkaesk-setting`), to try
    /// library defaults before changing them.
    pub kafkaesk: Vec<(String, String)>,
}

static EXTRA: OnceLock<ExtraSettings> = OnceLock::new();

/// Sets the extra properties once, before any client is created.
pub fn set_extra_settings(extra: ExtraSettings) {
    let _ = EXTRA.set(extra);
}

/// The extra properties in force.
pub fn extra_settings() -> ExtraSettings {
    EXTRA.get().cloned().unwrap_or_default()
}

/// Parses `KEY=VALUE`.
pub fn parse_setting(text: &str) -> std::result::Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.trim().to_owned()))
        }
        _ => Err(format!("expected KEY=VALUE, got `{text}`")),
    }
}

/// librdkafka settings with nothing but the broker (plus any `--setting`): the
/// baselines use librdkafka's defaults, so nothing is tuned in their favour or
/// against them.
pub fn client_config(servers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", servers);
    for (key, value) in extra_settings().both {
        config.set(key, value);
    }
    config
}

/// The properties a kafkaesk application gets on top of its own defaults.
pub fn kafkaesk_settings() -> Vec<(String, String)> {
    let extra = extra_settings();
    extra.both.into_iter().chain(extra.kafkaesk).collect()
}

/// Creates and deletes the benchmark's topics.
pub struct Admin {
    admin: AdminClient<DefaultClientContext>,
}

impl Admin {
    /// An admin client for `servers`.
    pub fn new(servers: &str) -> Result<Self> {
        let admin = client_config(servers)
            .create()
            .context("creating the admin client")?;
        Ok(Admin { admin })
    }

    /// Creates `topic` with [`PARTITIONS`] partitions; an existing topic is an error,
    /// because every run uses fresh names.
    pub async fn create(&self, topic: &str) -> Result<()> {
        let new_topic = NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1));
        let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(30)));
        let results = self
            .admin
            .create_topics([&new_topic], &opts)
            .await
            .with_context(|| format!("creating topic {topic}"))?;
        for result in results {
            if let Err((name, code)) = result {
                bail!("creating topic {name}: {code}");
            }
        }
        Ok(())
    }

    /// Deletes topics to give the in-memory broker its memory back. Failures are
    /// only reported: the numbers do not depend on it.
    pub async fn delete(&self, topics: &[String]) {
        if topics.is_empty() {
            return;
        }
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(30)));
        match self.admin.delete_topics(&names, &opts).await {
            Ok(results) => {
                for result in results {
                    if let Err((name, code)) = result {
                        eprintln!("note: could not delete topic {name}: {code}");
                    }
                }
            }
            Err(err) => eprintln!("note: could not delete topics {names:?}: {err}"),
        }
    }
}

/// Sends `record`, waiting for room while librdkafka's local queue is full.
pub async fn send_with_backoff(
    producer: &FutureProducer,
    mut record: FutureRecord<'_, (), [u8]>,
) -> Result<DeliveryFuture> {
    let mut backoff = Duration::from_micros(500);
    loop {
        match producer.send_result(record) {
            Ok(delivery) => return Ok(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                record = returned;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(20));
            }
            Err((err, _)) => return Err(err).context("queueing a message"),
        }
    }
}

/// Waits for a delivery and turns its failure into an error.
pub async fn delivered(delivery: DeliveryFuture) -> Result<()> {
    match delivery.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((err, _))) => Err(err).context("the broker refused a message"),
        Err(_) => bail!("the producer was dropped before the delivery report"),
    }
}

/// Writes messages `0..count` to `topic` as fast as possible, spread evenly over
/// the partitions. Not measured: it only sets up the consume scenarios.
pub async fn prefill(servers: &str, topic: &str, count: usize) -> Result<()> {
    let producer: FutureProducer = client_config(servers)
        .set("linger.ms", "50")
        .set("batch.num.messages", "10000")
        .set("batch.size", "1000000")
        .create()
        .context("creating the pre-fill producer")?;
    // Chunks keep the number of pending delivery futures, and so memory, bounded.
    const CHUNK: usize = 50_000;
    let mut next = 0usize;
    while next < count {
        let end = (next + CHUNK).min(count);
        let mut pending = Vec::with_capacity(end - next);
        for i in next..end {
            let payload = envelope_bytes(&Bench::sample(i as i64));
            let record = FutureRecord::to(topic)
                .payload(payload.as_slice())
                .partition((i % PARTITIONS as usize) as i32);
            pending.push(send_with_backoff(&producer, record).await?);
        }
        for delivery in pending {
            delivered(delivery)
                .await
                .with_context(|| format!("pre-filling {topic}"))?;
        }
        next = end;
    }
    Ok(())
}
