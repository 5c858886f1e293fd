//! Sending one message: its destination, placement on a partition,
//! queuing it in librdkafka (waiting for room when the queue is full) and
//! the metrics of what was refused.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use super::handle::{delivery_error, PublishFuture, PublishHandle, PublishState, Wait};
use super::{expected, Partitioner};
use crate::error::{Error, Result};
use crate::kafka::clients::{Clients, Connection};
use crate::kafka::producer::{Outbound, Producer};
use crate::observe::metrics::{kafka_error_label, PublishSeries, GENERAL_ERROR};
use crate::record::Headers;
use crate::settings::AckPolicy;

/// How long a publish waits for room when librdkafka's local queue is full.
const QUEUE_FULL_TIMEOUT: Duration = Duration::from_secs(60);

/// Where a message goes.
pub(super) enum Destination<'a> {
    /// A stream: the application's prefix comes first.
    Stream(&'a str),
    /// A full topic name, as it is, of a topic that exists: it is never
    /// created (dead-letter replay writes only where topics are).
    ExistingTopic(String),
}

/// A message ready for librdkafka.
pub(super) struct Outgoing {
    pub(super) payload: Vec<u8>,
    pub(super) key: Option<Vec<u8>>,
    pub(super) headers: Headers,
    pub(super) options: Options,
    /// The transaction's producer, when published in one.
    pub(super) via: Option<Producer>,
}

/// What a publish chose beyond the message itself.
#[derive(Default)]
pub(crate) struct Options {
    // Set through `builder_methods`, from the test harness's builder too.
    pub(crate) partition: Option<i32>,
    pub(crate) partitioner: Option<Partitioner>,
    pub(crate) acks: Option<AckPolicy>,
    pub(crate) timeout: Option<Duration>,
    /// The partition, and the offset its last message must be at.
    pub(crate) expected: Option<(i32, i64)>,
}

impl Options {
    /// Whether the partition is picked here, from the topic's partition count.
    fn needs_partition_count(&self) -> bool {
        self.partition.is_none()
            && matches!(
                self.partitioner,
                Some(Partitioner::RoundRobin | Partitioner::Custom(_))
            )
    }
}

/// What one attempt to hand a message to librdkafka gave.
pub(super) enum Enqueued {
    Queued(PublishHandle),
    /// librdkafka's local queue is full; try again once it drains.
    QueueFull,
    Failed(Error),
}

/// Hands `message` to librdkafka, and records a publish that began at
/// `started` as queued or refused in `series`, its topic's.
pub(super) fn enqueue(
    clients: &Clients,
    series: &PublishSeries,
    message: &Outgoing,
    partition: Option<i32>,
    started: Instant,
) -> Enqueued {
    let enqueued = try_enqueue(clients, series.topic(), message, partition);
    match &enqueued {
        Enqueued::Queued(_) => series.queued(started.elapsed()),
        Enqueued::QueueFull => {}
        Enqueued::Failed(err) => series.refused(&refusal_label(err)),
    }
    enqueued
}

/// The `error` label of a publish librdkafka refused.
pub(super) fn refusal_label(err: &Error) -> String {
    match err {
        Error::Delivery { source, .. } | Error::MessageTooLarge { source, .. } => {
            kafka_error_label(source)
        }
        _ => GENERAL_ERROR.to_owned(),
    }
}

/// Hands `message` to librdkafka through its transaction's producer, or the
/// producer of its ack policy.
pub(super) fn try_enqueue(
    clients: &Clients,
    topic: &Arc<str>,
    message: &Outgoing,
    partition: Option<i32>,
) -> Enqueued {
    let via = message.via.as_ref();
    let failed = |source| {
        Enqueued::Failed(delivery_error(
            topic.to_string(),
            message.payload.len(),
            source,
        ))
    };
    let options = &message.options;
    let producer = match (via, options.acks) {
        (Some(_), Some(acks)) if acks != AckPolicy::All => {
            return Enqueued::Failed(Error::InvalidSetting {
                name: "ack_policy".to_owned(),
                reason: format!(
                    "a transaction's messages are acknowledged by every in-sync replica; \
                     {acks:?} cannot apply inside one"
                ),
            })
        }
        (Some(producer), _) => Cow::Borrowed(producer),
        (None, acks) => match clients.producer(acks) {
            Ok(producer) => producer,
            Err(err) => return Enqueued::Failed(err),
        },
    };
    let outbound = Outbound {
        topic,
        partition,
        payload: &message.payload,
        key: message.key.as_deref(),
        headers: &message.headers,
    };
    let acks = match via {
        Some(_) => AckPolicy::All,
        None => clients.ack_policy(options.acks),
    };
    let wait = match (acks, options.timeout) {
        (AckPolicy::None, _) => Wait::Queued,
        (_, Some(timeout)) => Wait::Until {
            timeout,
            started: Instant::now(),
            sleep: None,
        },
        (_, None) => Wait::Report,
    };
    match producer.send(outbound) {
        Ok(delivery) => Enqueued::Queued(PublishHandle {
            topic: topic.clone(),
            bytes: message.payload.len(),
            delivery,
            wait,
        }),
        Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => Enqueued::QueueFull,
        Err(source) => failed(source),
    }
}

/// Where a message's partition comes from.
pub(super) enum PartitionChoice {
    /// This partition, or librdkafka's partitioner (by key) when `None`.
    Chosen(Option<i32>),
    /// The partitioner needs the topic's partition count, not known yet.
    NeedsCount,
}

/// The partition of `message`: its own, or its partitioner's.
pub(super) fn place(
    clients: &Clients,
    topic: &Arc<str>,
    message: &Outgoing,
) -> Result<PartitionChoice> {
    let options = &message.options;
    if !options.needs_partition_count() {
        return Ok(PartitionChoice::Chosen(options.partition));
    }
    let Some(partitions) = clients.topics.cached_partitions(topic) else {
        return Ok(PartitionChoice::NeedsCount);
    };
    let count = partitions.count();
    let partition = match &options.partitioner {
        Some(Partitioner::RoundRobin) => partitions.next_round_robin(),
        Some(Partitioner::Custom(pick)) => {
            let picked = pick(message.key.as_deref(), count);
            if !(0..count).contains(&picked) {
                return Err(Error::InvalidSetting {
                    name: "partitioner".to_owned(),
                    reason: format!(
                        "the custom partitioner picked partition {picked} of `{topic}`, which has \
                         partitions 0 to {}",
                        count - 1
                    ),
                });
            }
            picked
        }
        Some(Partitioner::ByKey) | None => return Ok(PartitionChoice::Chosen(None)),
    };
    Ok(PartitionChoice::Chosen(Some(partition)))
}

/// Queues `message`: at once when the producer exists, the topic is known and
/// there is room, otherwise through [`send_slowly`].
pub(super) fn send_message<'a>(
    connection: &'a Connection,
    destination: Destination<'a>,
    retention: Option<Duration>,
    message: Outgoing,
) -> PublishFuture<'a> {
    let started = Instant::now();
    let ready = match (&destination, connection.clients_if_ready()) {
        _ if message.options.expected.is_some() => None,
        (Destination::Stream(stream), Some(clients)) => clients
            .topics
            .ready_stream(stream)
            .map(|series| (clients, series)),
        _ => None,
    };
    if let Some((clients, series)) = ready {
        match place(clients, series.topic(), &message) {
            Err(err) => return PublishFuture::done(Err(err)),
            Ok(PartitionChoice::NeedsCount) => {}
            Ok(PartitionChoice::Chosen(partition)) => {
                match enqueue(clients, &series, &message, partition, started) {
                    Enqueued::Queued(handle) => return PublishFuture::done(Ok(handle)),
                    Enqueued::Failed(err) => return PublishFuture::done(Err(err)),
                    Enqueued::QueueFull => {}
                }
            }
        }
    }
    PublishFuture(PublishState::Waiting(Box::pin(send_slowly(
        connection,
        destination,
        retention,
        message,
        started,
    ))))
}

/// Creates the producer and the topic if needed, then queues `message`,
/// waiting for room while librdkafka's queue is full.
pub(super) async fn send_slowly(
    connection: &Connection,
    destination: Destination<'_>,
    retention: Option<Duration>,
    mut message: Outgoing,
    started: Instant,
) -> Result<PublishHandle> {
    let clients = connection.clients().await?;
    let series = match destination {
        Destination::Stream(stream) => {
            let topic = connection.settings().topic(stream);
            clients
                .topics
                .ensure_stream(stream, topic, retention)
                .await?
        }
        Destination::ExistingTopic(topic) => connection.metrics().publishing(&Arc::from(topic)),
    };
    let topic = series.topic();
    if let Some(expected) = message.options.expected {
        if message.via.is_some() {
            return Err(Error::InvalidSetting {
                name: "expected_offset".to_owned(),
                reason: "an expected-offset write is a transaction of its own; publish it \
                         outside the transaction"
                    .to_owned(),
            });
        }
        let settings = connection.settings();
        return expected::write(clients, settings, &series, &mut message, expected, started).await;
    }
    if message.options.needs_partition_count() && clients.topics.cached_partitions(topic).is_none()
    {
        let count = connection.partition_count(topic, "topic").await?;
        clients.topics.remember_partitions(topic, count);
    }
    let partition = match place(clients, topic, &message)? {
        PartitionChoice::Chosen(partition) => partition,
        // Just remembered: `partition_count` fails for a topic without partitions.
        PartitionChoice::NeedsCount => None,
    };
    let mut backoff = Duration::from_millis(1);
    loop {
        match enqueue(clients, &series, &message, partition, started) {
            Enqueued::Queued(handle) => return Ok(handle),
            Enqueued::Failed(err) => return Err(err),
            Enqueued::QueueFull if started.elapsed() < QUEUE_FULL_TIMEOUT => {
                // librdkafka's queue drains as the broker acknowledges; wait for room.
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(50));
            }
            Enqueued::QueueFull => {
                series.refused("QueueFull");
                return Err(delivery_error(
                    topic.to_string(),
                    message.payload.len(),
                    KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull),
                ));
            }
        }
    }
}
