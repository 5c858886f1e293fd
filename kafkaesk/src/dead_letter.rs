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
//! and never to a topic that must not receive it, whatever the
//! subscription's pattern (a `*` matches them all):
//!
//! - the dead-letter stream being replayed, or any of the application's
//!   dead-letter streams (a replay would loop);
//! - kafkaesk's own streams (`kafkaesk.*` under the prefix, such as the
//!   schemas stream);
//! - internal topics: names starting with `_` (`__consumer_offsets`,
//!   `_schemas`, `__transaction_state`) and Kafka Connect's default
//!   `connect-configs`, `connect-offsets` and `connect-status`;
//! - a topic that does not exist (replay never creates one).
//!
//! Any other record is refused: logged at error level with its position and
//! the reason, counted in [`Replayed::refused`], and left in the dead-letter
//! stream. So is a record whose republish fails for a reason that would
//! fail it again (too large, an invalid topic, no permission to write): the
//! replay goes on past it. A failure that may pass (a broker that does not
//! answer) ends the replay before that record, which the next replay tries
//! again.
//!
//! # Too large to dead-letter
//!
//! The dead letter of a record near the size limit (`message.max.bytes`)
//! may not fit once kafkaesk's headers are added. The error text is cut to
//! 1 KiB first; if the broker or the producer still refuses the dead letter
//! as too large, the record is skipped: logged at error level with its
//! position (it is still in its source topic, until retention removes it),
//! and counted in the `skipped` metric with reason `dead_letter_too_large`.
//! Stopping instead would restart into the same record forever.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use crate::app::Application;
use crate::error::{Error, Result};
use crate::kafka::clients::TopicState;
use crate::kafka::partition_end::ReadToEnd;
use crate::publish::Publisher;
use crate::record::{printable, Header, Headers, Record, TopicNames};
use crate::subscription::FinalAction;
use crate::subscription::Router;
use crate::sync::off_the_worker;

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

/// The longest error text a dead letter carries, in bytes: a handler's
/// error can quote the whole record.
pub const MAX_ERROR_TEXT: usize = 1024;

/// Topics replay never writes to, besides names starting with `_`: Kafka
/// Connect's defaults.
const INTERNAL_TOPICS: [&str; 3] = ["connect-configs", "connect-offsets", "connect-status"];

/// Streams under the prefix that are kafkaesk's own.
const KAFKAESK_STREAMS: &str = "kafkaesk.";

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
        .with(DLQ_ERROR, cut(failure.error.to_string(), MAX_ERROR_TEXT))
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

/// `text` cut to at most `max` bytes, at a character boundary, saying how
/// much was cut.
fn cut(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let note = format!(" [{} bytes cut]", text.len());
    let mut end = max.saturating_sub(note.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(&note);
    text
}

/// Whether a failed publish would fail again the same way: the record or
/// its topic is at fault, not the connection to the broker.
pub(crate) fn fails_for_good(err: &Error) -> bool {
    match err {
        Error::MessageTooLarge { .. } => true,
        Error::Delivery {
            source: KafkaError::MessageProduction(code),
            ..
        } => matches!(
            code,
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::MessageBatchTooLarge
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::InvalidTopic
                | RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::PolicyViolation
        ),
        _ => false,
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

/// Why replay must not write to `topic`, if it must not: the dead-letter
/// stream `replaying` (a full topic name), the application's other
/// dead-letter streams, kafkaesk's own streams, internal topics.
fn protected(router: &Router, prefix: &str, replaying: &str, topic: &str) -> Option<String> {
    let stream = topic.strip_prefix(prefix);
    if topic == replaying {
        return Some("it names the dead-letter stream being replayed".to_owned());
    }
    let dead_letter_stream =
        router
            .subscriptions()
            .iter()
            .find_map(|s| match s.error_policy().final_action() {
                FinalAction::DeadLetter(dead) if Some(dead.as_str()) == stream => Some(s.name()),
                _ => None,
            });
    if let Some(name) = dead_letter_stream {
        return Some(format!(
            "it names the dead-letter stream of subscription `{name}`"
        ));
    }
    if stream.is_some_and(|s| s.starts_with(KAFKAESK_STREAMS)) {
        return Some("it names one of kafkaesk's own streams".to_owned());
    }
    let internal = |name: &str| name.starts_with('_') || INTERNAL_TOPICS.contains(&name);
    if internal(topic) || stream.is_some_and(internal) {
        return Some("it names an internal topic".to_owned());
    }
    None
}

/// Where a dead letter of the dead-letter topic `replaying` goes back to,
/// or why it does not.
fn replay_target(
    router: &Router,
    prefix: &str,
    replaying: &str,
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
    let Some(subscription) = router.subscriptions().iter().find(|s| s.name() == name) else {
        return Err(format!(
            "it names subscription `{name}`, which this application does not have"
        ));
    };
    if !subscription.streams().matches_topic(prefix, topic) {
        return Err(format!(
            "subscription `{name}` (streams `{}`, prefix `{prefix}`) could not have consumed \
             topic `{topic}`",
            subscription.streams()
        ));
    }
    if let Some(why) = protected(router, prefix, replaying, topic) {
        return Err(format!("replay never writes to `{topic}`: {why}"));
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
    /// Whether replay can write to `topic`: `Ok(Ok(()))` when it exists,
    /// `Ok(Err(why))` when it does not, or may not be read or written for
    /// good, and `Err` when the broker's answer may change (a leader being
    /// elected, no broker answering). The lookup never creates the topic.
    async fn target_exists(&self, topic: &str) -> Result<std::result::Result<(), String>> {
        let missing = || Ok(Err(format!("topic `{topic}` does not exist")));
        match self.connection().topic_state(topic).await? {
            TopicState::Exists(_) => Ok(Ok(())),
            TopicState::Missing
            | TopicState::Error(
                RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic,
            ) => missing(),
            TopicState::Error(
                code
                @ (RDKafkaErrorCode::TopicAuthorizationFailed | RDKafkaErrorCode::InvalidTopic),
            ) => Ok(Err(format!("topic `{topic}`: {code}"))),
            TopicState::Error(code) => Err(Error::Topic {
                topic: topic.to_owned(),
                reason: format!("cannot be looked up now ({code}); replay again later"),
            }),
        }
    }

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
        // Whether each target topic can be written, looked up once per replay.
        let mut existing: HashMap<String, std::result::Result<(), String>> = HashMap::new();
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
            let target = replay_target(&router, &settings.topic_prefix, &topic, &record);
            let target = match target {
                Ok(source) => match existing.get(&source) {
                    Some(Ok(())) => Ok(source),
                    Some(Err(why)) => Err(why.clone()),
                    None => match self.target_exists(&source).await {
                        Ok(found) => {
                            existing.insert(source.clone(), found.clone());
                            found.map(|()| source)
                        }
                        // It may pass (a leader election, a broker away):
                        // the next replay tries this record again.
                        Err(err) => break Err(err),
                    },
                },
                Err(reason) => Err(reason),
            };
            let refusal = match target {
                Ok(source) => {
                    let publish = self
                        .publisher()
                        .raw_to_existing_topic(source, record.value().to_vec());
                    match forward(publish, &record, &original_headers(&record)).await {
                        Ok(()) => None,
                        Err(err) if fails_for_good(&err) => {
                            Some(format!("republishing it failed for good: {err}"))
                        }
                        // It may pass: the next replay tries this record again.
                        Err(err) => break Err(err),
                    }
                }
                Err(reason) => Some(reason),
            };
            match refusal {
                None => replayed.republished += 1,
                Some(reason) => {
                    replayed.refused += 1;
                    // The reason quotes the record's headers.
                    tracing::error!(
                        record = %record.position(),
                        "dead letter not replayed: {}; it stays in {topic}",
                        printable(&reason)
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
            off_the_worker(|| consumer.commit(&tpl, CommitMode::Sync))?;
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
        router.subscribe(Subscription::new("orders.*", handle).with_name("orders"));
        router.subscribe(
            Subscription::new("*", handle)
                .with_name("everything")
                .on_error(crate::ErrorPolicy::dead_letter("everything.dead")),
        );
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
            replay_target(&router(), "p.", "p.orders.dead", &record(headers)),
            Ok("p.orders.created".into())
        );
    }

    #[test]
    fn replay_refuses_what_kafkaesk_did_not_write() {
        let router = router();
        let target = |headers| replay_target(&router, "p.", "p.orders.dead", &record(headers));
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
    fn replay_never_writes_to_dead_letter_kafkaesk_or_internal_topics() {
        let router = router();
        let target = |topic: &str| {
            let headers = Headers::new()
                .with(DLQ_TOPIC, topic)
                .with(DLQ_SUBSCRIPTION, "everything");
            replay_target(&router, "p.", "p.orders.dead", &record(headers))
        };
        assert_eq!(target("p.payments"), Ok("p.payments".into()));
        for (topic, why) in [
            ("p.orders.dead", "being replayed"),
            ("p.everything.dead", "subscription `everything`"),
            ("p.kafkaesk.schemas", "kafkaesk's own"),
            ("p._schemas", "internal"),
            ("p.__consumer_offsets", "internal"),
            ("p.connect-configs", "internal"),
        ] {
            let refused = target(topic).unwrap_err();
            assert!(refused.contains(why), "{topic}: {refused}");
        }
        // Without a prefix, Kafka's own names as they are.
        let headers = Headers::new()
            .with(DLQ_TOPIC, "__consumer_offsets")
            .with(DLQ_SUBSCRIPTION, "everything");
        assert!(replay_target(&router, "", "dead", &record(headers))
            .unwrap_err()
            .contains("internal"));
    }

    #[test]
    fn the_error_text_of_a_dead_letter_is_cut_at_a_character_boundary() {
        let long = "é".repeat(2000);
        let cut = cut(long.clone(), MAX_ERROR_TEXT);
        assert!(cut.len() <= MAX_ERROR_TEXT, "{}", cut.len());
        assert!(cut.ends_with(" [4000 bytes cut]"), "{cut}");
        assert_eq!(super::cut("short".into(), MAX_ERROR_TEXT), "short");
    }

    #[test]
    fn only_failures_that_would_repeat_refuse_a_dead_letter_for_good() {
        let delivery = |code| Error::Delivery {
            topic: "t".into(),
            source: KafkaError::MessageProduction(code),
        };
        assert!(fails_for_good(&delivery(
            RDKafkaErrorCode::TopicAuthorizationFailed
        )));
        assert!(fails_for_good(&delivery(
            RDKafkaErrorCode::MessageSizeTooLarge
        )));
        assert!(!fails_for_good(&delivery(
            RDKafkaErrorCode::MessageTimedOut
        )));
        assert!(!fails_for_good(&delivery(RDKafkaErrorCode::AllBrokersDown)));
        assert!(!fails_for_good(&Error::Stopped));
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
