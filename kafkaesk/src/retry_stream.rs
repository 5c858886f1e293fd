//! Retry streams: where a failed record waits, without holding its
//! partition, until it is due to run again. What a subscription does with
//! them is on [`ErrorPolicy`](crate::ErrorPolicy#retry-streams); this module
//! names them and says what their records carry.
//!
//! # Headers
//!
//! A record moved to a retry stream keeps its value, key and headers
//! (incoming `kafkaesk-retry-*` headers are dropped) and gains:
//!
//! | header | value |
//! |---|---|
//! | [`RETRY_DUE`] | when it is due, in milliseconds since the Unix epoch |
//! | [`RETRY_ATTEMPT`] | which retry stream it is in, from 1 |
//! | [`RETRY_TOPIC`], [`RETRY_PARTITION`], [`RETRY_OFFSET`] | where it was first consumed |
//! | [`RETRY_ERROR`] | the handler's last error, cut to [`MAX_ERROR_TEXT`](crate::dead_letter::MAX_ERROR_TEXT) bytes |
//! | [`RETRY_SUBSCRIPTION`] | the subscription that moved it |
//!
//! # Untrusted
//!
//! Anyone who can write to a retry stream can forge these headers, so they
//! steer nothing. Which retry stream a record is in, and so its delay and
//! where it goes next, comes from the topic it was read from. A due time is
//! never later than the stream's delay from the moment the record is read,
//! so a record cannot hold its partition for longer. An origin that the
//! subscription could not have consumed, or that does not parse, is
//! replaced by the record's own position in the retry stream.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::dead_letter::MAX_ERROR_TEXT;
use crate::error::{Error, Result};
use crate::publish::Publisher;
use crate::record::{Headers, Record, RecordSource};
use crate::subscription::{delay_name, Streams};

/// When the record is due, in milliseconds since the Unix epoch.
pub const RETRY_DUE: &str = "kafkaesk-retry-due";
/// Which retry stream the record is in, from 1.
pub const RETRY_ATTEMPT: &str = "kafkaesk-retry-attempt";
/// The topic the record was first consumed from.
pub const RETRY_TOPIC: &str = "kafkaesk-retry-topic";
/// The partition the record was first consumed from.
pub const RETRY_PARTITION: &str = "kafkaesk-retry-partition";
/// The offset the record had where it was first consumed.
pub const RETRY_OFFSET: &str = "kafkaesk-retry-offset";
/// The handler's last error.
pub const RETRY_ERROR: &str = "kafkaesk-retry-error";
/// The subscription that moved the record.
pub const RETRY_SUBSCRIPTION: &str = "kafkaesk-retry-subscription";
/// What every header kafkaesk adds to a retried record starts with.
pub const RETRY_HEADER_PREFIX: &str = "kafkaesk-retry-";

/// The longest retry stream name a subscription may have, leaving room for
/// a topic prefix under Kafka's 249 characters.
pub const MAX_STREAM_NAME: usize = 200;

/// The retry stream of a subscription for `delay`: `{group}.retry-{delay}`,
/// or `{group}.{subscription}.retry-{delay}` when the subscription is not
/// named as its group. Characters a topic name cannot hold become `_`.
///
/// ```
/// use std::time::Duration;
/// use kafkaesk::retry_stream::stream_name;
/// assert_eq!(stream_name("billing", "billing", Duration::from_secs(60)), "billing.retry-1m");
/// assert_eq!(stream_name("billing", "charge", Duration::from_secs(10)), "billing.charge.retry-10s");
/// assert_eq!(stream_name("svc", "main::closure", Duration::from_secs(10)), "svc.main__closure.retry-10s");
/// ```
pub fn stream_name(group: &str, subscription: &str, delay: Duration) -> String {
    let base = if group == subscription {
        group.to_owned()
    } else {
        format!("{group}.{subscription}")
    };
    let base: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{base}.retry-{}", delay_name(delay))
}

/// Where a retried record was first consumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
}

impl Origin {
    /// The origin of `record`, read from a retry stream, if its headers name
    /// one the subscription (`streams` under `prefix`) could have consumed;
    /// else the record's own position.
    pub(crate) fn of(record: &Record, streams: &Streams, prefix: &str) -> Origin {
        let headers = record.headers();
        let text = |key| {
            headers
                .get(key)
                .and_then(|value| std::str::from_utf8(value).ok())
        };
        let topic = text(RETRY_TOPIC).filter(|topic| streams.matches_topic(prefix, topic));
        let partition = text(RETRY_PARTITION)
            .and_then(|p| p.parse::<i32>().ok())
            .filter(|p| *p >= 0);
        let offset = text(RETRY_OFFSET)
            .and_then(|o| o.parse::<i64>().ok())
            .filter(|o| *o >= 0);
        match (topic, partition, offset) {
            (Some(topic), Some(partition), Some(offset)) => Origin {
                topic: topic.to_owned(),
                partition,
                offset,
            },
            _ => Origin::here(record),
        }
    }

    /// `record`'s own position.
    pub(crate) fn here(record: &Record) -> Origin {
        Origin {
            topic: record.topic().to_owned(),
            partition: record.partition(),
            offset: record.offset(),
        }
    }

    /// `record` as it was where it was first consumed: its origin's
    /// position, and its headers without `kafkaesk-retry-*`. What a dead
    /// letter of a retried record describes, so a replay returns it there.
    pub(crate) fn record(&self, record: &Record) -> Record {
        Record::new(
            self.topic.as_str(),
            self.partition,
            self.offset,
            record.key().map(<[u8]>::to_vec),
            Some(record.value().to_vec()),
            own_headers(record),
            record.timestamp(),
        )
    }
}

/// `record`'s headers without kafkaesk's retry headers.
fn own_headers(record: &Record) -> Headers {
    let mut headers = Headers::new();
    for header in record.headers().iter() {
        if !header.key.starts_with(RETRY_HEADER_PREFIX) {
            headers.push(header.clone());
        }
    }
    headers
}

/// What a move to a retry stream carries besides the record.
pub(crate) struct Move<'a> {
    pub(crate) origin: &'a Origin,
    /// Which retry stream, from 1.
    pub(crate) attempt: usize,
    pub(crate) delay: Duration,
    pub(crate) error: &'a Error,
    pub(crate) subscription: &'a str,
}

/// Milliseconds since the Unix epoch.
fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn millis(delay: Duration) -> i64 {
    i64::try_from(delay.as_millis()).unwrap_or(i64::MAX)
}

/// The headers of `record` moved to a retry stream.
fn retry_headers(record: &Record, moved: &Move<'_>, now_ms: i64) -> Headers {
    let error = crate::dead_letter::cut(moved.error.to_string(), MAX_ERROR_TEXT);
    own_headers(record)
        .with(
            RETRY_DUE,
            now_ms.saturating_add(millis(moved.delay)).to_string(),
        )
        .with(RETRY_ATTEMPT, moved.attempt.to_string())
        .with(RETRY_TOPIC, &moved.origin.topic)
        .with(RETRY_PARTITION, moved.origin.partition.to_string())
        .with(RETRY_OFFSET, moved.origin.offset.to_string())
        .with(RETRY_ERROR, error)
        .with(RETRY_SUBSCRIPTION, moved.subscription)
}

/// Writes `record` to the retry `stream`, value and key untouched, and
/// waits for the broker's acknowledgement.
pub(crate) async fn write(
    publisher: Publisher<'_>,
    stream: &str,
    record: &Record,
    moved: Move<'_>,
) -> Result<()> {
    let headers = retry_headers(record, &moved, now_millis());
    publisher
        .raw(stream, record.value().to_vec())
        .maybe_key(record.key())
        .headers(&headers)
        .wait()
        .await
        .map(|_| ())
}

/// How long `record`, read from a retry stream whose delay is `delay`, has
/// yet to wait: until its due header, else its timestamp plus the delay,
/// and never longer than the delay from now.
pub(crate) fn wait_for(record: RecordSource<'_>, delay: Duration) -> Duration {
    let now = now_millis();
    let delay = millis(delay);
    let due = record
        .header(RETRY_DUE)
        .and_then(|value| std::str::from_utf8(value).ok())
        .and_then(|text| text.parse::<i64>().ok())
        .or_else(|| record.timestamp().map(|t| t.saturating_add(delay)))
        .unwrap_or(now);
    let wait = due.min(now.saturating_add(delay)).saturating_sub(now);
    Duration::from_millis(u64::try_from(wait).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::PendingRecord;

    fn retried(headers: Headers, timestamp: Option<i64>) -> Record {
        Record::new(
            "p.billing.retry-10s",
            1,
            7,
            Some(b"k".to_vec()),
            Some(b"v".to_vec()),
            headers,
            timestamp,
        )
    }

    #[test]
    fn a_due_time_never_holds_a_record_longer_than_its_delay() {
        let delay = Duration::from_secs(10);
        let wait = |headers: Headers, timestamp| {
            let record = PendingRecord::Owned(retried(headers, timestamp));
            wait_for(record.source(), delay)
        };
        let now = now_millis();
        let far = Headers::new().with(RETRY_DUE, (now + 86_400_000).to_string());
        assert!(wait(far, None) <= delay);
        let past = Headers::new().with(RETRY_DUE, (now - 5).to_string());
        assert_eq!(wait(past, None), Duration::ZERO);
        let soon = Headers::new().with(RETRY_DUE, (now + 3000).to_string());
        let soon = wait(soon, None);
        assert!(soon > Duration::from_secs(2) && soon <= Duration::from_secs(3));
        // No header: its timestamp plus the delay; neither: due now.
        let by_timestamp = wait(Headers::new().with(RETRY_DUE, "soon"), Some(now - 4000));
        assert!(by_timestamp <= Duration::from_secs(6) && by_timestamp > Duration::from_secs(5));
        assert_eq!(wait(Headers::new(), None), Duration::ZERO);
    }

    #[test]
    fn an_origin_the_subscription_could_not_consume_is_not_followed() {
        let streams = Streams::Pattern("orders.*".into());
        let origin = |topic: &str, partition: &str| {
            let headers = Headers::new()
                .with(RETRY_TOPIC, topic)
                .with(RETRY_PARTITION, partition)
                .with(RETRY_OFFSET, "41");
            Origin::of(&retried(headers, None), &streams, "p.")
        };
        assert_eq!(
            origin("p.orders.created", "3"),
            Origin {
                topic: "p.orders.created".into(),
                partition: 3,
                offset: 41
            }
        );
        let own = Origin {
            topic: "p.billing.retry-10s".into(),
            partition: 1,
            offset: 7,
        };
        assert_eq!(origin("p.payments", "3"), own);
        assert_eq!(origin("p.orders.created", "-1"), own);
        assert_eq!(origin("p.orders.created", "x"), own);
    }

    #[test]
    fn a_moved_record_keeps_its_own_headers_and_gains_kafkaesks() {
        let forged = Headers::new()
            .with(RETRY_TOPIC, "p.payments")
            .with("trace", "t-1");
        let record = retried(forged, None);
        let origin = Origin::here(&record);
        let error = Error::Stopped;
        let moved = Move {
            origin: &origin,
            attempt: 2,
            delay: Duration::from_secs(60),
            error: &error,
            subscription: "billing",
        };
        let headers = retry_headers(&record, &moved, 1_000);
        let topics: Vec<_> = headers
            .iter()
            .filter(|h| h.key == RETRY_TOPIC)
            .filter_map(|h| h.value.clone())
            .collect();
        assert_eq!(topics, [b"p.billing.retry-10s".to_vec()]);
        assert_eq!(headers.get(RETRY_DUE), Some(&b"61000"[..]));
        assert_eq!(headers.get(RETRY_ATTEMPT), Some(&b"2"[..]));
        assert_eq!(headers.get("trace"), Some(&b"t-1"[..]));
        let back = origin.record(&record);
        assert!(back.headers().get(RETRY_TOPIC).is_none());
        assert_eq!(back.key(), Some(&b"k"[..]));
    }
}
