//! The dead-letter contract, both ways: what a dead-lettered record carries,
//! the write, and the replay that puts records back on their topics.
//!
//! # Headers
//!
//! A dead-lettered record keeps its value, key and headers, and gains these,
//! written by kafkaesk:
//!
//! | header | value |
//! |---|---|
//! | `kafkaesk-dlq-error` | the error, as text |
//! | `kafkaesk-dlq-topic` | the topic the record was consumed from (prefix included) |
//! | `kafkaesk-dlq-partition` | its partition |
//! | `kafkaesk-dlq-offset` | its offset |
//! | `kafkaesk-dlq-attempts` | how many times the handler ran on it |
//! | `kafkaesk-dlq-subscription` | the subscription's name |
//! | `kafkaesk-dlq-group` | the subscription's consumer group (absent without one) |
//!
//! Headers that start with `kafkaesk-dlq-` are kafkaesk's alone. Whoever can
//! publish to a subscribed topic can also set headers, so a record that
//! arrives with such headers keeps them renamed, `previous-kafkaesk-dlq-...`,
//! when it is dead-lettered: only what kafkaesk wrote counts.
//!
//! # Replay
//!
//! [`Application::replay_dead_letters`] republishes dead-lettered records to
//! the topic they came from, value, key and headers untouched, without the
//! `kafkaesk-dlq-*` headers. Replay republishes with the replaying service's
//! credentials, so it follows a record's `kafkaesk-dlq-topic` only when:
//!
//! - each `kafkaesk-dlq-*` header appears once (a record with two is
//!   ambiguous);
//! - `kafkaesk-dlq-subscription` names a subscription of the replaying
//!   application;
//! - and that subscription could have consumed the topic: it matches the
//!   subscription's streams under the application's topic prefix.
//!
//! Any other record is refused: logged at error level with its position and
//! the reason, counted in [`Replayed::refused`], and left in the dead-letter
//! stream.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use crate::app::Application;
use crate::error::{Error, Result};
use crate::partition_end::ReadToEnd;
use crate::publish::Publisher;
use crate::record::{Header, Headers, Record, TopicNames};
use crate::router::Router;

/// Header naming the error of a dead-lettered record.
pub const DLQ_ERROR: &str = "kafkaesk-dlq-error";
/// Header naming the topic a dead-lettered record was consumed from.
pub const DLQ_TOPIC: &str = "kafkaesk-dlq-topic";
/// Header with the partition a dead-lettered record was consumed from.
pub const DLQ_PARTITION: &str = "kafkaesk-dlq-partition";
/// Header with the offset of a dead-lettered record in its source partition.
pub const DLQ_OFFSET: &str = "kafkaesk-dlq-offset";
/// Header with the number of times the handler ran on a dead-lettered record.
pub const DLQ_ATTEMPTS: &str = "kafkaesk-dlq-attempts";
/// Header naming the subscription that dead-lettered a record.
pub const DLQ_SUBSCRIPTION: &str = "kafkaesk-dlq-subscription";
/// Header naming the consumer group that dead-lettered a record.
pub const DLQ_GROUP: &str = "kafkaesk-dlq-group";

/// The start of every header kafkaesk writes when dead-lettering.
pub const DLQ_HEADER_PREFIX: &str = "kafkaesk-dlq-";

/// What incoming `kafkaesk-dlq-*` headers are renamed to start with.
pub const PREVIOUS_DLQ_HEADER_PREFIX: &str = "previous-kafkaesk-dlq-";

/// What the consumer knows of a failed record's failure.
pub(crate) struct Failure<'a> {
    pub(crate) error: &'a Error,
    pub(crate) attempts: u32,
    pub(crate) subscription: &'a str,
    /// `None` for a subscription without a group: no header then.
    pub(crate) group: Option<&'a str>,
}

/// The headers of a dead letter of `record`: its own, with any
/// `kafkaesk-dlq-*` among them renamed, then kafkaesk's.
fn dead_letter_headers(record: &Record, failure: &Failure<'_>) -> Headers {
    let mut headers = Headers::new();
    for header in record.headers().iter() {
        match header.key.strip_prefix(DLQ_HEADER_PREFIX) {
            Some(rest) => headers.push(Header {
                key: format!("{PREVIOUS_DLQ_HEADER_PREFIX}{rest}"),
                value: header.value.clone(),
            }),
            None => headers.push(header.clone()),
        }
    }
    let headers = headers
        .with(DLQ_ERROR, failure.error.to_string())
        .with(DLQ_TOPIC, record.topic())
        .with(DLQ_PARTITION, record.partition().to_string())
        .with(DLQ_OFFSET, record.offset().to_string())
        .with(DLQ_ATTEMPTS, failure.attempts.to_string())
        .with(DLQ_SUBSCRIPTION, failure.subscription);
    match failure.group {
        Some(group) => headers.with(DLQ_GROUP, group),
        None => headers,
    }
}

/// Publishes `record` to the dead-letter `stream`, value and key untouched,
/// and waits for the broker's acknowledgement.
pub(crate) async fn write(
    publisher: Publisher<'_>,
    stream: &str,
    record: &Record,
    failure: Failure<'_>,
) -> Result<()> {
    let headers = dead_letter_headers(record, &failure);
    forward(
        publisher.raw(stream, record.value().to_vec()),
        record,
        &headers,
    )
    .await
}

/// Sends `publish` with `record`'s key and `headers`, and waits for the
/// acknowledgement: the one way a dead letter travels, out or back.
async fn forward(
    publish: crate::publish::RawPublish<'_>,
    record: &Record,
    headers: &Headers,
) -> Result<()> {
    publish
        .maybe_key(record.key())
        .headers(headers)
        .wait()
        .await
        .map(|_| ())
}

/// What [`Application::replay_dead_letters`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Records republished to their source topic.
    pub republished: usize,
    /// Records refused and left in the dead-letter stream: not written by
    /// kafkaesk, ambiguous, or naming a topic their subscription could not
    /// have consumed. Each is logged with its position and the reason.
    pub refused: usize,
}

/// Where a dead letter goes back to, or why it does not.
fn replay_target(
    router: &Router,
    prefix: &str,
    record: &Record,
) -> std::result::Result<String, String> {
    let mut ours: HashMap<&str, Option<&[u8]>> = HashMap::new();
    for header in record.headers().iter() {
        if header.key.starts_with(DLQ_HEADER_PREFIX)
            && ours
                .insert(header.key.as_str(), header.value.as_deref())
                .is_some()
        {
            return Err(format!(
                "`{}` appears twice, so the record is ambiguous",
                header.key
            ));
        }
    }
    let text = |key: &str| -> std::result::Result<&str, String> {
        let value = ours
            .get(key)
            .copied()
            .flatten()
            .ok_or_else(|| format!("no `{key}` header: not a kafkaesk dead letter"))?;
        std::str::from_utf8(value).map_err(|_| format!("`{key}` is not UTF-8"))
    };
    let topic = text(DLQ_TOPIC)?;
    let name = text(DLQ_SUBSCRIPTION)?;
    let Some(subscription) = router.subscriptions().iter().find(|s| s.get_name() == name) else {
        return Err(format!(
            "it names subscription `{name}`, which this application does not have"
        ));
    };
    if !subscription.get_streams().matches_topic(prefix, topic) {
        return Err(format!(
            "subscription `{name}` (streams `{}`, prefix `{prefix}`) could not have consumed \
             topic `{topic}`",
            subscription.get_streams()
        ));
    }
    Ok(topic.to_owned())
}

/// The record's headers without kafkaesk's dead-letter headers.
fn original_headers(record: &Record) -> Headers {
    let mut headers = Headers::new();
    for header in record.headers().iter() {
        if !header.key.starts_with(DLQ_HEADER_PREFIX) {
            headers.push(header.clone());
        }
    }
    headers
}

impl Application {
    /// Republishes every record in the dead-letter `stream` to the topic it was
    /// consumed from, untouched (value, key and original headers; the
    /// `kafkaesk-dlq-*` headers are removed).
    ///
    /// Only records that this application's subscriptions could have
    /// dead-lettered go back; the others are refused and stay (see the
    /// [`dead_letter`](crate::dead_letter#replay) docs for the rules).
    ///
    /// Reads until the end of every partition of the dead-letter stream, then
    /// commits in the group `kafkaesk-replay.<topic>`, so a second call only
    /// replays what was dead-lettered since. Fails with [`Error::Timeout`] if
    /// that takes longer than `timeout` (what was republished by then is
    /// committed), and with [`Error::Topic`] if the stream does not exist.
    ///
    /// ```no_run
    /// # async fn demo(app: kafkaesk::Application) -> Result<(), kafkaesk::Error> {
    /// let replayed = app.replay_dead_letters("orders.dead", std::time::Duration::from_secs(60)).await?;
    /// println!("{} records are back on their topics", replayed.republished);
    /// # Ok(()) }
    /// ```
    pub async fn replay_dead_letters(&self, stream: &str, timeout: Duration) -> Result<Replayed> {
        let settings = self.settings();
        let topic = settings.topic(stream);
        // One group per dead-letter topic: its commits remember what was replayed.
        let config = settings.reader_config(&format!("kafkaesk-replay.{topic}"))?;
        let partitions = self
            .connection()
            .partition_count(&topic, "dead-letter stream")
            .await?;
        let consumer: StreamConsumer<ReadToEnd> = config.create_with_context(ReadToEnd)?;
        consumer.subscribe(&[&topic])?;
        let router = self.router();

        let deadline = tokio::time::Instant::now() + timeout;
        let mut topic_names = TopicNames::default();
        let mut at_end: HashSet<i32> = HashSet::new();
        let mut next_offsets: HashMap<i32, i64> = HashMap::new();
        let mut replayed = Replayed::default();
        let outcome = loop {
            let record = match tokio::time::timeout_at(deadline, consumer.recv()).await {
                Err(_) => break Err(Error::Timeout(timeout)),
                Ok(Err(KafkaError::PartitionEOF(partition))) => {
                    at_end.insert(partition);
                    if at_end.len() >= partitions {
                        break Ok(());
                    }
                    continue;
                }
                Ok(Err(err)) => break Err(Error::Kafka(err)),
                Ok(Ok(message)) => topic_names.record(&message),
            };
            at_end.remove(&record.partition());
            match replay_target(&router, &settings.topic_prefix, &record) {
                Ok(source) => {
                    let publish = self
                        .publisher()
                        .raw_to_topic(source, record.value().to_vec());
                    if let Err(err) = forward(publish, &record, &original_headers(&record)).await {
                        break Err(err);
                    }
                    replayed.republished += 1;
                }
                Err(reason) => {
                    replayed.refused += 1;
                    tracing::error!(
                        record = %record.position(),
                        "dead letter not replayed: {reason}; it stays in {topic}"
                    );
                }
            }
            next_offsets.insert(record.partition(), record.offset().saturating_add(1));
        };

        // Commit what was replayed or refused, even when stopping early, so a
        // second replay does not publish it twice.
        if !next_offsets.is_empty() {
            let mut tpl = TopicPartitionList::new();
            for (partition, offset) in &next_offsets {
                tpl.add_partition_offset(&topic, *partition, Offset::Offset(*offset))?;
            }
            consumer.commit(&tpl, CommitMode::Sync)?;
        }
        outcome.map(|()| replayed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Subscription;

    async fn handle(_: Vec<u8>) {}

    fn record(headers: Headers) -> Record {
        Record::new(
            "p.orders.dead",
            0,
            4,
            None,
            Some(b"x".to_vec()),
            headers,
            None,
        )
    }

    fn router() -> Router {
        let mut router = Router::new();
        router.subscribe(Subscription::new("orders.*", handle).name("orders"));
        router
    }

    fn kafkaesk_headers(topic: &str) -> Headers {
        Headers::new()
            .with(DLQ_TOPIC, topic)
            .with(DLQ_SUBSCRIPTION, "orders")
            .with(DLQ_ATTEMPTS, "1")
    }

    #[test]
    fn incoming_dead_letter_headers_are_renamed_when_dead_lettering() {
        let forged = Headers::new()
            .with(DLQ_TOPIC, "p.payments")
            .with("trace", "t-1");
        let source = Record::new("p.orders.created", 2, 9, None, None, forged, None);
        let error = Error::Stopped;
        let headers = dead_letter_headers(
            &source,
            &Failure {
                error: &error,
                attempts: 1,
                subscription: "orders",
                group: Some("g"),
            },
        );
        let topics: Vec<&[u8]> = headers
            .iter()
            .filter(|h| h.key == DLQ_TOPIC)
            .filter_map(|h| h.value.as_deref())
            .collect();
        assert_eq!(topics, [&b"p.orders.created"[..]]);
        assert_eq!(
            headers.get("previous-kafkaesk-dlq-topic"),
            Some(&b"p.payments"[..])
        );
        assert_eq!(headers.get("trace"), Some(&b"t-1"[..]));
        assert_eq!(
            replay_target(&router(), "p.", &record(headers)),
            Ok("p.orders.created".into())
        );
    }

    #[test]
    fn replay_refuses_what_kafkaesk_did_not_write() {
        let router = router();
        let target = |headers| replay_target(&router, "p.", &record(headers));
        assert_eq!(
            target(kafkaesk_headers("p.orders.paid")),
            Ok("p.orders.paid".into())
        );
        // Two sets: ambiguous.
        let twice = kafkaesk_headers("p.orders.paid").with(DLQ_TOPIC, "p.payments");
        assert!(target(twice).unwrap_err().contains("twice"));
        // A topic the subscription could not have consumed.
        assert!(target(kafkaesk_headers("p.payments"))
            .unwrap_err()
            .contains("could not"));
        assert!(target(kafkaesk_headers("orders.paid"))
            .unwrap_err()
            .contains("could not"));
        // No subscription, or one the application does not have.
        let anonymous = Headers::new().with(DLQ_TOPIC, "p.orders.paid");
        assert!(target(anonymous)
            .unwrap_err()
            .contains("not a kafkaesk dead letter"));
        let stranger = Headers::new()
            .with(DLQ_TOPIC, "p.orders.paid")
            .with(DLQ_SUBSCRIPTION, "other");
        assert!(target(stranger).unwrap_err().contains("does not have"));
    }

    #[test]
    fn replayed_records_lose_only_kafkaesk_headers() {
        let headers = kafkaesk_headers("p.orders.paid")
            .with("trace", "t")
            .with("previous-kafkaesk-dlq-topic", "x");
        let kept: Vec<String> = original_headers(&record(headers))
            .iter()
            .map(|h| h.key.clone())
            .collect();
        assert_eq!(kept, ["trace", "previous-kafkaesk-dlq-topic"]);
    }
}
