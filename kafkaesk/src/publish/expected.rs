//! Expected offsets: optimistic concurrency on one partition of a stream,
//! documented in `docs/expected_offset.md` (shown on `Publish::expected_offset`).

use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use super::send::{enqueue, Enqueued, Outgoing};
use super::PublishHandle;
use crate::error::{Error, Result};
use crate::kafka::clients::Clients;
use crate::kafka::partition_end;
use crate::kafka::producer::Producer;
use crate::kafka::tail;
use crate::observe::metrics::PublishSeries;
use crate::record::Record;
use crate::settings::Settings;

/// How many times a write starts over after it was fenced by another writer.
const ATTEMPTS: u32 = 10;

/// How long a transactional call or the partition's read may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The transactional id every writer of `partition` of `topic` shares.
pub(crate) fn writer_id(topic: &str, partition: i32) -> String {
    format!("kafkaesk-expect-{topic}-{partition}")
}

/// What one attempt gave.
enum Attempt {
    Written(PublishHandle),
    /// The partition's last message is at this offset, not the expected one.
    Elsewhere(i64),
    /// Another writer fenced this one; register again and start over.
    Fenced(KafkaError),
}

/// Writes `message` to `partition` if the partition's last message is at
/// `expected`.
pub(super) async fn write(
    clients: &Clients,
    settings: &Settings,
    series: &PublishSeries,
    message: &mut Outgoing,
    (partition, expected): (i32, i64),
    started: Instant,
) -> Result<PublishHandle> {
    let topic = series.topic();
    let id = writer_id(topic, partition);
    let writer = clients.partition_writer(&id);
    let mut registered = writer.lock().await;
    let mut attempt = 1;
    loop {
        let producer = match registered.as_ref() {
            Some(producer) => producer.clone(),
            None => {
                let producer = clients.transactional_producer_with_id(&id).await?;
                *registered = Some(producer.clone());
                producer
            }
        };
        message.via = Some(producer.clone());
        let target = Target {
            clients,
            settings,
            series,
            producer: &producer,
            partition,
            expected,
        };
        match target.try_write(message, started).await? {
            Attempt::Written(handle) => return Ok(handle),
            Attempt::Elsewhere(actual) => {
                return Err(Error::ExpectedOffset {
                    topic: topic.to_string(),
                    partition,
                    expected,
                    actual,
                })
            }
            Attempt::Fenced(source) => {
                *registered = None;
                if attempt >= ATTEMPTS {
                    return Err(Error::transaction("expected-offset write", source));
                }
                // Before registering again, which would fence the writer
                // that fenced this one before it can commit, give that
                // writer time to finish: a window that doubles with each
                // attempt, at a random point in it, so writers that fence
                // each other in step drift apart.
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
            }
        }
    }
}

/// The wait after the `attempt`th fence: a random point in the second half
/// of a window of 50 ms that doubles with each attempt, up to 1.6 s.
fn backoff(attempt: u32) -> Duration {
    let window = 50_000u64 << attempt.saturating_sub(1).min(5);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    Duration::from_micros(window / 2 + u64::from(nanos) % (window / 2))
}

/// One write attempt's surroundings.
struct Target<'a> {
    clients: &'a Clients,
    settings: &'a Settings,
    series: &'a PublishSeries,
    producer: &'a Producer,
    partition: i32,
    expected: i64,
}

impl Target<'_> {
    /// Steps 2 to 4 of the module docs, in one transaction.
    async fn try_write(&self, message: &Outgoing, started: Instant) -> Result<Attempt> {
        if let Err(err) = self.producer.begin_transaction() {
            return self.failed("begin", err);
        }
        let mut handle = match enqueue(
            self.clients,
            self.series,
            message,
            Some(self.partition),
            started,
        ) {
            Enqueued::Queued(handle) => handle,
            Enqueued::QueueFull => {
                let full = Error::Delivery {
                    topic: self.series.topic().to_string(),
                    source: KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull),
                };
                return self.abort_after(full).await;
            }
            Enqueued::Failed(err) => return self.abort_after(err).await,
        };
        let delivery = match (&mut handle).await {
            Ok(delivery) => delivery,
            Err(Error::Delivery { source, .. }) if is_fenced(&source) => {
                return Ok(Attempt::Fenced(source))
            }
            // A fenced producer purges what it had queued: the delivery
            // fails with `PurgeQueue`, and the abort tells of the fence.
            Err(err) => return self.abort_after(err).await,
        };
        let actual = last_committed_before(
            self.settings,
            self.series.topic(),
            self.partition,
            delivery.offset,
        )
        .await?;
        if actual != self.expected {
            return match self.abort().await? {
                Ok(()) => Ok(Attempt::Elsewhere(actual)),
                Err(source) => self.failed("abort", source),
            };
        }
        let producer = self.producer.clone();
        let committed =
            tokio::task::spawn_blocking(move || producer.commit_transaction(CALL_TIMEOUT))
                .await
                .map_err(|_| Error::Stopped)?;
        match committed {
            Ok(()) => Ok(Attempt::Written(handle.finished(delivery))),
            Err(err) => self.failed("commit", err),
        }
    }

    /// A failed transactional call: a fence starts over, anything else
    /// aborts and is reported.
    fn failed(&self, action: &'static str, source: KafkaError) -> Result<Attempt> {
        if is_fenced(&source) {
            return Ok(Attempt::Fenced(source));
        }
        Err(Error::transaction(action, source))
    }

    /// Aborts the attempt; librdkafka's answer, or `Err` when the abort could
    /// not run.
    async fn abort(&self) -> Result<std::result::Result<(), KafkaError>> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || producer.abort_transaction(CALL_TIMEOUT))
            .await
            .map_err(|_| Error::Stopped)
    }

    /// Aborts after `err` and reports it, unless the abort finds this
    /// writer fenced: then the attempt starts over.
    async fn abort_after(&self, err: Error) -> Result<Attempt> {
        match self.abort().await? {
            Ok(()) => Err(err),
            Err(source) => self.failed("abort", source),
        }
    }
}

/// Whether `err` says a newer producer with the same transactional id took
/// over (or the transaction must be abandoned for it).
fn is_fenced(err: &KafkaError) -> bool {
    if let KafkaError::Transaction(err) = err {
        if err.is_fatal() || err.txn_requires_abort() {
            return true;
        }
    }
    matches!(
        err.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::Fenced
                | RDKafkaErrorCode::ProducerFenced
                | RDKafkaErrorCode::InvalidProducerEpoch
                | RDKafkaErrorCode::TransactionCoordinatorFenced
        )
    )
}

/// The offset of the last committed message of `partition` before offset
/// `before` (-1 when there is none), read as a read-committed consumer.
async fn last_committed_before(
    settings: &Settings,
    topic: &str,
    partition: i32,
    before: i64,
) -> Result<i64> {
    let config = settings.committed_reader_config("kafkaesk-expected-offset")?;
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer = partition_end::reader(&config)?;
        let (low, _) = consumer.fetch_watermarks(&topic, partition, CALL_TIMEOUT)?;
        let newest = tail::newest_below(&consumer, &topic, partition, (low, before), 1, None)?;
        Ok(newest.first().map_or(-1, Record::offset))
    })
    .await
    .map_err(|_| Error::Stopped)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fences_start_over_and_other_failures_do_not() {
        for code in [
            RDKafkaErrorCode::Fenced,
            RDKafkaErrorCode::ProducerFenced,
            RDKafkaErrorCode::InvalidProducerEpoch,
        ] {
            assert!(is_fenced(&KafkaError::MessageProduction(code)), "{code:?}");
        }
        assert!(!is_fenced(&KafkaError::MessageProduction(
            RDKafkaErrorCode::MessageSizeTooLarge
        )));
        assert!(!is_fenced(&KafkaError::Canceled));
    }

    #[test]
    fn the_wait_after_a_fence_doubles_and_stays_bounded() {
        for attempt in 1..=ATTEMPTS {
            let window = Duration::from_millis(50 << (attempt - 1).min(5));
            let wait = backoff(attempt);
            assert!(wait >= window / 2 && wait < window, "{attempt}: {wait:?}");
        }
        assert!(backoff(ATTEMPTS) < Duration::from_millis(1600));
    }

    #[test]
    fn every_writer_of_a_partition_shares_one_id() {
        assert_eq!(
            writer_id("dev.accounts", 3),
            "kafkaesk-expect-dev.accounts-3"
        );
        assert_ne!(writer_id("a", 1), writer_id("a", 2));
    }
}
