//! The dead-letter contract, both ways: what a dead-lettered record carries,
//! the write (here), and the replay that puts records back on their topics
//! (`replay.rs`), each record once (`settled.rs`), selected by a
//! [`DeadLetterFilter`] (`filter.rs`).
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
//! [`Application::replay_dead_letters`](crate::Application::replay_dead_letters)
//! (and [`DeadLetterReplay`], which it runs, as does the `kafkaesk
//! dead-letters STREAM replay` command) republishes dead-lettered records to the topic they came from, value,
//! key and headers untouched, without the `kafkaesk-dlq-*` headers (renamed
//! `previous-kafkaesk-dlq-*` headers stay as they are). Replay republishes
//! with the replaying service's credentials, so it follows a record's
//! `kafkaesk-dlq-topic` only when:
//!
//! - each `kafkaesk-dlq-*` header appears once (a record with two is
//!   ambiguous);
//! - and the subscription that `kafkaesk-dlq-subscription` names could have
//!   consumed the topic. For an application
//!   ([`ReplayTargets::Subscriptions`]): it is a subscription of the
//!   replaying application and its streams match the topic under the
//!   application's topic prefix. Without one (the command,
//!   [`ReplayTargets::CommittedGroups`]): the consumer group that
//!   `kafkaesk-dlq-group` names has committed past the record in the
//!   partition that `kafkaesk-dlq-partition` names;
//!
//! and never to a topic that must not receive it, whatever the
//! subscription's pattern (a `*` matches them all):
//!
//! - the dead-letter stream being replayed, or any of the application's
//!   dead-letter streams (a replay would loop; without an application, only
//!   the one replayed is known);
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
//! # Replay once
//!
//! A replay settles each record it handles (republished or refused) and
//! commits that in the group `kafkaesk-replay.<topic>`: no later replay
//! handles it again. A [`DeadLetterFilter`] or a limit leaves records out;
//! they stay for a later replay, also when records after them were
//! replayed: the commit's offset stops at the first record left out, and
//! its metadata lists the offsets settled beyond it (bounded to 2 KiB, under
//! Kafka's `offset.metadata.max.bytes`; when full, the rest of that
//! partition waits for a later replay). Settled records are committed every
//! second and when the replay ends, however it ends.
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

mod filter;
mod replay;
mod settled;

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::error::{Error, Result};
use crate::publish::Publisher;
use crate::record::{Header, Headers, Record};

pub use filter::DeadLetterFilter;
pub use replay::{DeadLetterReplay, ReplayCounts, ReplayReport, ReplayTargets, Replayed};

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
pub(crate) fn cut(mut text: String, max: usize) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(headers.get(DLQ_GROUP), Some(&b"g"[..]));
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
}
