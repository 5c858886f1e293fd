//! What a subscription does when its handler fails.
//!
//! A handler *fails* when it returns an error, panics, or runs past the
//! subscription's timeout. Records that cannot be decoded are not failures:
//! they are always counted as unhandled and skipped.
//!
//! An [`ErrorPolicy`] is an optional in-place retry followed by one final
//! action:
//!
//! | final action | what happens to the failed record |
//! |---|---|
//! | [`stop`](ErrorPolicy::stop) (default) | the consumer stops without committing it; the application's run returns the error, and the record comes back after a restart (Python kafkaesk's behaviour) |
//! | [`skip`](ErrorPolicy::skip) | logged at error level, counted as `skipped`, committed; the consumer goes on |
//! | [`dead_letter`](ErrorPolicy::dead_letter) | the original record (value and key untouched, headers kept) is published to a dead-letter stream with [headers](self#dead-letter-headers) describing the failure; its offset is committed only once the broker acknowledged that write. If the write fails, the consumer stops as with `stop` |
//!
//! ```
//! use std::time::Duration;
//! use kafkaesk::{ErrorPolicy, Subscription};
//!
//! async fn index(raw: Vec<u8>) -> Result<(), std::io::Error> { Ok(()) }
//!
//! // Retry 3 times (after 100 ms, 200 ms, 400 ms), then dead-letter.
//! let sub = Subscription::new("content.*", index).on_error(
//!     ErrorPolicy::retry(3, Duration::from_millis(100)).then_dead_letter("content.dead"),
//! );
//! ```
//!
//! With the macro: `#[subscribe("content.*", retry = 3, backoff = 0.1, dead_letter = "content.dead")]`,
//! or `on_error = "skip"`.
//!
//! # Retries
//!
//! A retry runs the handler again on the same record, in place, after an
//! exponential backoff (`backoff`, doubled each attempt, capped at
//! [`max_backoff`](ErrorPolicy::max_backoff), 30 s by default).
//!
//! Retries hold back only the failed record's partition. The consumer pauses
//! that partition and retries in the background; records of the partition
//! fetched meanwhile wait, and run once the retries end, so each partition is
//! still handled in order and nothing past the failed record is committed
//! before it is settled. The subscription's other partitions are consumed
//! as usual during the backoffs. Because the consumer keeps polling, long
//! retries do not run into `max.poll.interval.ms`.
//!
//! If the partition is revoked in a rebalance during the retries, they are
//! abandoned: the partition's new owner consumes the record again from the
//! last commit. If the application stops during the retries, the record and
//! its partition's later records stay uncommitted and are consumed again
//! after a restart.
//!
//! # Dead-letter headers
//!
//! | header | value |
//! |---|---|
//! | `kafkaesk-dlq-error` | the error, as text |
//! | `kafkaesk-dlq-topic` | the topic the record was consumed from (prefix included) |
//! | `kafkaesk-dlq-partition` | its partition |
//! | `kafkaesk-dlq-offset` | its offset |
//! | `kafkaesk-dlq-attempts` | how many times the handler ran on it |
//! | `kafkaesk-dlq-subscription` | the subscription's name |
//! | `kafkaesk-dlq-group` | the subscription's consumer group |
//!
//! [`Application::replay_dead_letters`](crate::Application::replay_dead_letters)
//! republishes dead-lettered records to the topic they came from.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use crate::app::{set_default_setting, Application};
use crate::error::{Error, Result};
use crate::publish::RawPublish;
use crate::record::{Headers, Record, TopicNames};

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

/// Every header kafkaesk adds when dead-lettering; replay removes them.
pub const DLQ_HEADERS: [&str; 7] = [
    DLQ_ERROR,
    DLQ_TOPIC,
    DLQ_PARTITION,
    DLQ_OFFSET,
    DLQ_ATTEMPTS,
    DLQ_SUBSCRIPTION,
    DLQ_GROUP,
];

/// The default cap on a retry's backoff.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What happens to a failed record once retries, if any, are used up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinalAction {
    /// Stop the consumer without committing the record.
    Stop,
    /// Log, count and commit the record, and go on.
    Skip,
    /// Publish the record to this dead-letter stream, then commit it.
    DeadLetter(String),
}

/// In-place retries of a failed handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    /// Extra runs of the handler after the first failure.
    pub attempts: u32,
    /// Wait before the first retry; doubled for each further one.
    pub backoff: Duration,
    /// Cap on the wait.
    pub max_backoff: Duration,
}

impl Retry {
    /// The wait before retry number `retry` (1-based).
    pub fn delay(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.saturating_sub(1));
        self.backoff
            .checked_mul(factor)
            .unwrap_or(self.max_backoff)
            .min(self.max_backoff)
    }
}

/// A subscription's error policy: optional retries, then a [`FinalAction`].
/// See the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorPolicy {
    retry: Option<Retry>,
    action: FinalAction,
}

impl Default for ErrorPolicy {
    fn default() -> Self {
        ErrorPolicy::stop()
    }
}

impl ErrorPolicy {
    /// Stop the consumer without committing (the default).
    pub fn stop() -> Self {
        ErrorPolicy {
            retry: None,
            action: FinalAction::Stop,
        }
    }

    /// Log, count, commit and go on.
    pub fn skip() -> Self {
        ErrorPolicy {
            retry: None,
            action: FinalAction::Skip,
        }
    }

    /// Publish failed records to `stream`, then commit them.
    pub fn dead_letter(stream: impl Into<String>) -> Self {
        ErrorPolicy {
            retry: None,
            action: FinalAction::DeadLetter(stream.into()),
        }
    }

    /// Retry `attempts` times with exponential backoff starting at `backoff`,
    /// then stop. Chain [`then_skip`](Self::then_skip) or
    /// [`then_dead_letter`](Self::then_dead_letter) to change what follows.
    pub fn retry(attempts: u32, backoff: Duration) -> Self {
        ErrorPolicy {
            retry: Some(Retry {
                attempts,
                backoff,
                max_backoff: DEFAULT_MAX_BACKOFF.max(backoff),
            }),
            action: FinalAction::Stop,
        }
    }

    /// Caps the retry backoff (30 s by default).
    pub fn max_backoff(mut self, cap: Duration) -> Self {
        if let Some(retry) = &mut self.retry {
            retry.max_backoff = cap;
        }
        self
    }

    /// After the retries, stop (the default).
    pub fn then_stop(mut self) -> Self {
        self.action = FinalAction::Stop;
        self
    }

    /// After the retries, skip.
    pub fn then_skip(mut self) -> Self {
        self.action = FinalAction::Skip;
        self
    }

    /// After the retries, dead-letter to `stream`.
    pub fn then_dead_letter(mut self, stream: impl Into<String>) -> Self {
        self.action = FinalAction::DeadLetter(stream.into());
        self
    }

    /// The retries, if any.
    pub fn retries(&self) -> Option<&Retry> {
        self.retry.as_ref().filter(|r| r.attempts > 0)
    }

    /// What happens once retries are used up.
    pub fn final_action(&self) -> &FinalAction {
        &self.action
    }

    /// A problem that makes the policy unusable, if any.
    pub(crate) fn problem(&self) -> Option<&'static str> {
        if matches!(&self.action, FinalAction::DeadLetter(s) if s.is_empty()) {
            return Some("the dead-letter stream is empty");
        }
        None
    }
}

impl std::fmt::Display for ErrorPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(retry) = self.retries() {
            write!(
                f,
                "retry {} x from {:?}, then ",
                retry.attempts, retry.backoff
            )?;
        }
        match &self.action {
            FinalAction::Stop => f.write_str("stop"),
            FinalAction::Skip => f.write_str("skip"),
            FinalAction::DeadLetter(stream) => write!(f, "dead-letter to {stream}"),
        }
    }
}

/// Republishes every record of the dead-letter `stream` to the topic it was
/// consumed from; see [`Application::replay_dead_letters`].
pub(crate) async fn replay(app: &Application, stream: &str, timeout: Duration) -> Result<usize> {
    let settings = app.settings();
    let topic = settings.topic(stream);
    let mut config = settings.client_config()?;
    // One group per dead-letter topic: its commits remember what was replayed.
    config.set("group.id", format!("kafkaesk-replay.{topic}"));
    config.set("enable.auto.commit", "false");
    config.set("enable.auto.offset.store", "false");
    config.set("enable.partition.eof", "true");
    set_default_setting(&mut config, settings, "auto.offset.reset", "earliest");
    let partitions = partition_count(app, &topic).await?;
    let consumer: StreamConsumer = config.create()?;
    consumer.subscribe(&[&topic])?;

    let deadline = tokio::time::Instant::now() + timeout;
    let mut topic_names = TopicNames::default();
    let mut at_end: HashSet<i32> = HashSet::new();
    let mut next_offsets: HashMap<i32, i64> = HashMap::new();
    let mut replayed = 0;
    let outcome = loop {
        let message = match tokio::time::timeout_at(deadline, consumer.recv()).await {
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
        at_end.remove(&message.partition());
        if let Err(err) = republish(app, &message).await {
            break Err(err);
        }
        next_offsets.insert(message.partition(), message.offset() + 1);
        replayed += 1;
    };

    // Commit what was republished, even when stopping early, so a second
    // replay does not publish it twice.
    if !next_offsets.is_empty() {
        let mut tpl = TopicPartitionList::new();
        for (partition, offset) in &next_offsets {
            tpl.add_partition_offset(&topic, *partition, Offset::Offset(*offset))?;
        }
        consumer.commit(&tpl, CommitMode::Sync)?;
    }
    outcome.map(|()| replayed)
}

/// Publishes a dead-lettered record back to its source topic and waits for
/// the acknowledgement. A record without a source header is left where it is.
async fn republish(app: &Application, record: &Record) -> Result<()> {
    let Some(source) = record
        .headers()
        .get(DLQ_TOPIC)
        .and_then(|topic| std::str::from_utf8(topic).ok())
    else {
        tracing::warn!(
            record = %record.position(),
            "not a kafkaesk dead letter (no `{DLQ_TOPIC}` header); left in place, not replayed"
        );
        return Ok(());
    };
    let mut headers = Headers::new();
    for header in record.headers().iter() {
        if !DLQ_HEADERS.contains(&header.key.as_str()) {
            headers.push(header.clone());
        }
    }
    RawPublish::to_topic(app, source.to_owned(), record.value().to_vec())
        .maybe_key(record.key())
        .headers(&headers)
        .wait()
        .await
        .map(|_| ())
}

async fn partition_count(app: &Application, topic: &str) -> Result<usize> {
    let missing = |reason: String| Error::Topic {
        topic: topic.to_owned(),
        reason,
    };
    let producer = app.clients().await?.producer.clone();
    let wanted = topic.to_owned();
    let metadata = tokio::task::spawn_blocking(move || {
        producer
            .client()
            .fetch_metadata(Some(&wanted), Duration::from_secs(10))
    })
    .await
    .map_err(|_| Error::Stopped)??;
    let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Err(missing("the dead-letter stream does not exist".to_owned()));
    };
    if let Some(err) = found.error() {
        return Err(missing(format!(
            "the dead-letter stream cannot be read: {}",
            rdkafka::types::RDKafkaErrorCode::from(err)
        )));
    }
    if found.partitions().is_empty() {
        return Err(missing("the dead-letter stream does not exist".to_owned()));
    }
    Ok(found.partitions().len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let policy = ErrorPolicy::retry(10, Duration::from_millis(100))
            .max_backoff(Duration::from_millis(500))
            .then_skip();
        let retry = policy.retries().unwrap();
        let delays: Vec<u128> = (1..=5).map(|n| retry.delay(n).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 500, 500]);
        assert_eq!(retry.delay(u32::MAX), Duration::from_millis(500));
        assert_eq!(policy.final_action(), &FinalAction::Skip);
    }

    #[test]
    fn policies_compose_and_display() {
        let policy =
            ErrorPolicy::retry(3, Duration::from_millis(100)).then_dead_letter("orders.dead");
        assert_eq!(
            policy.to_string(),
            "retry 3 x from 100ms, then dead-letter to orders.dead"
        );
        assert_eq!(ErrorPolicy::default(), ErrorPolicy::stop());
        assert!(ErrorPolicy::retry(0, Duration::ZERO).retries().is_none());
        assert!(ErrorPolicy::dead_letter("").problem().is_some());
    }
}
