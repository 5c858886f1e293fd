//! Partitions that make no progress.
//!
//! Per partition with records fetched and not settled, the watch keeps since
//! when the partition has waited on its first unsettled record. That age is
//! the `kafkaesk_consumer_oldest_unfinished_seconds` gauge, and past the
//! subscription's [`stall_timeout`](crate::Subscription::with_stall_timeout)
//! the partition is reported stuck: logged once, and the consumer unhealthy
//! until it moves.
//!
//! The watch costs a comparison per record as a batch starts (records come
//! in runs of one partition) and one look at the offset book a second; it
//! never reads the clock per record. Progress is read from the book's
//! processed offsets, which move for records handled, skipped and
//! dead-lettered alike, so a partition that moves at all, however slowly,
//! is not stuck; one that a pause holds is not either.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::offsets::{OffsetBook, TopicPartition};
use super::BatchConsumer;
use crate::app::StuckPartition;
use crate::observe::metrics::ConsumerMetrics;
use crate::record::PendingRecord;
use crate::sync::lock;
use crate::text::printable;

/// Most bytes of a stuck record's key quoted in the log.
const KEY_QUOTED: usize = 64;

/// How often the watch looks at the book: the resolution of the gauge and of
/// the stall timeout.
pub(super) const LOOK_EVERY: Duration = Duration::from_secs(1);

/// The partitions of one consumer that have records fetched and not settled.
pub(super) struct StallWatch {
    waiting: HashMap<TopicPartition, Waiting>,
    timeout: Option<Duration>,
    /// When the next look is due.
    pub(super) next_look: Instant,
}

/// A partition with records fetched and not settled.
struct Waiting {
    /// Since when the partition has made no progress.
    since: Instant,
    /// Its first record not settled.
    offset: i64,
    /// The last of its records fetched.
    last_fetched: i64,
    /// Whether it was reported stuck and has not moved since.
    reported: bool,
    /// The record whose handler runs while the partition is stuck, when
    /// known: the one it waits on, more precisely than `offset`.
    blocker: Option<i64>,
}

/// A partition found stuck by a look, to be logged.
pub(super) struct NewlyStuck {
    pub(super) topic: Arc<str>,
    pub(super) partition: i32,
    pub(super) offset: i64,
    pub(super) waited: Duration,
}

/// What a look found.
#[derive(Default)]
pub(super) struct Look {
    /// Partitions stuck since this look.
    pub(super) newly_stuck: Vec<NewlyStuck>,
    /// Partitions reported stuck before that moved, or left the consumer.
    pub(super) recovered: Vec<(Arc<str>, i32)>,
}

impl StallWatch {
    pub(super) fn new(timeout: Option<Duration>) -> Self {
        StallWatch {
            waiting: HashMap::new(),
            timeout,
            next_look: Instant::now() + LOOK_EVERY,
        }
    }

    /// Whether no partition waits: the consumer need not wake up to look.
    pub(super) fn is_idle(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Notes the records a batch is about to run.
    pub(super) fn fetched(&mut self, batch: &[PendingRecord<'_>], now: Instant) {
        // (topic, partition, first offset, last offset) of the current run.
        let mut run: Option<(&Arc<str>, i32, i64, i64)> = None;
        for record in batch {
            let (topic, partition, offset) = (record.topic(), record.partition(), record.offset());
            match &mut run {
                Some((t, p, first, last)) if *p == partition && *t == topic => {
                    *first = (*first).min(offset);
                    *last = (*last).max(offset);
                }
                _ => {
                    if let Some(ended) = run.replace((topic, partition, offset, offset)) {
                        self.note(ended, now);
                    }
                }
            }
        }
        if let Some(ended) = run {
            self.note(ended, now);
        }
    }

    fn note(&mut self, (topic, partition, first, last): (&Arc<str>, i32, i64, i64), now: Instant) {
        let key = (topic.clone(), partition);
        match self.waiting.get_mut(&key) {
            Some(waiting) => {
                waiting.offset = waiting.offset.min(first);
                waiting.last_fetched = waiting.last_fetched.max(last);
            }
            None => {
                self.waiting.insert(
                    key,
                    Waiting {
                        since: now,
                        offset: first,
                        last_fetched: last,
                        reported: false,
                        blocker: None,
                    },
                );
            }
        }
    }

    /// Reads the progress of each waiting partition from `book`, and sets
    /// their gauges.
    pub(super) fn look(
        &mut self,
        book: &OffsetBook,
        metrics: &ConsumerMetrics,
        now: Instant,
    ) -> Look {
        self.next_look = now + LOOK_EVERY;
        let mut look = Look::default();
        let timeout = self.timeout;
        self.waiting.retain(|tp, waiting| {
            if !book.assigned.contains(tp) {
                // Revoked: its records are its new owner's.
                metrics.forget_oldest_unfinished(&tp.0, tp.1);
                if waiting.reported {
                    look.recovered.push(tp.clone());
                }
                return false;
            }
            if let Some(&processed) = book.processed.get(tp) {
                if processed > waiting.offset {
                    if waiting.reported {
                        look.recovered.push(tp.clone());
                    }
                    if processed > waiting.last_fetched {
                        metrics.oldest_unfinished(&tp.0, tp.1, Duration::ZERO);
                        return false;
                    }
                    waiting.offset = processed;
                    waiting.since = now;
                    waiting.reported = false;
                    waiting.blocker = None;
                }
            }
            // A pause holds it on purpose.
            if book.paused.contains(tp) {
                waiting.since = now;
            }
            let waited = now.saturating_duration_since(waiting.since);
            metrics.oldest_unfinished(&tp.0, tp.1, waited);
            if timeout.is_some_and(|timeout| waited >= timeout) && !waiting.reported {
                waiting.reported = true;
                look.newly_stuck.push(NewlyStuck {
                    topic: tp.0.clone(),
                    partition: tp.1,
                    offset: waiting.offset,
                    waited,
                });
            }
            true
        });
        look
    }

    /// The partitions reported stuck, for the consumer's health.
    pub(super) fn stuck(&self, now: Instant) -> Vec<StuckPartition> {
        let mut stuck: Vec<StuckPartition> = self
            .waiting
            .iter()
            .filter(|(_, waiting)| waiting.reported)
            .map(|(tp, waiting)| StuckPartition {
                topic: tp.0.to_string(),
                partition: tp.1,
                offset: waiting.blocker.unwrap_or(waiting.offset),
                for_time: now.saturating_duration_since(waiting.since),
            })
            .collect();
        stuck.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        stuck
    }

    /// Names the record whose handler runs while `tp` is stuck.
    pub(super) fn blame(&mut self, tp: &TopicPartition, offset: i64) {
        if let Some(waiting) = self.waiting.get_mut(tp) {
            waiting.blocker = Some(offset);
        }
    }

    /// Forgets every partition, and their gauges: the consumer stops.
    pub(super) fn clear(&mut self, metrics: &ConsumerMetrics) {
        for tp in self.waiting.keys() {
            metrics.forget_oldest_unfinished(&tp.0, tp.1);
        }
        self.waiting.clear();
    }
}

impl BatchConsumer {
    /// Looks at the partitions `watch` follows: logs those stuck since the
    /// last look and those that moved again, and keeps the consumer's
    /// health current. Given the batch running and the indexes of its
    /// records whose handlers run, a stuck partition is reported with the
    /// first of its records in a handler, and that record's key.
    pub(super) fn look_for_stalls(
        &self,
        watch: &mut StallWatch,
        running: Option<(&[PendingRecord<'_>], &[usize])>,
    ) {
        let now = Instant::now();
        let mut look = watch.look(&lock(&self.book), &self.monitor.metrics, now);
        for stuck in &mut look.newly_stuck {
            let in_handler = running.and_then(|(batch, indexes)| {
                indexes
                    .iter()
                    .filter_map(|&i| batch.get(i))
                    .filter(|r| r.partition() == stuck.partition && *r.topic() == stuck.topic)
                    .min_by_key(|r| r.offset())
            });
            if let Some(record) = in_handler {
                stuck.offset = record.offset();
                watch.blame(&(stuck.topic.clone(), stuck.partition), stuck.offset);
            }
            let key = in_handler.and_then(|r| r.source().key()).map(|key| {
                let quoted = &key[..key.len().min(KEY_QUOTED)];
                printable(&String::from_utf8_lossy(quoted)).into_owned()
            });
            tracing::error!(
                subscription = %self.scope.name,
                topic = %printable(&stuck.topic),
                partition = stuck.partition,
                offset = stuck.offset,
                key = key.as_deref().unwrap_or(""),
                waited_secs = stuck.waited.as_secs(),
                "partition stuck: no record of it settled for {} s, and it waits on offset {} \
                 (a handler that does not return, or records waiting behind one); the consumer \
                 reports unhealthy until the partition moves",
                stuck.waited.as_secs(),
                stuck.offset,
            );
        }
        for (topic, partition) in &look.recovered {
            tracing::info!(
                subscription = %self.scope.name,
                topic = %printable(topic),
                partition,
                "partition no longer stuck"
            );
        }
        let stuck = watch.stuck(now);
        let changed = !look.newly_stuck.is_empty() || !look.recovered.is_empty();
        if changed || !stuck.is_empty() {
            self.monitor.stuck(stuck);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::metrics::Metrics;
    use crate::record::{Headers, PendingRecord};

    fn record(topic: &str, partition: i32, offset: i64) -> PendingRecord<'static> {
        let record = crate::Record::new(topic, partition, offset, None, None, Headers::new(), None);
        PendingRecord::Owned(record)
    }

    fn book(assigned: &[(&str, i32)]) -> OffsetBook {
        let mut book = OffsetBook::default();
        for (topic, partition) in assigned {
            book.assigned.insert((Arc::from(*topic), *partition));
        }
        book
    }

    fn gauge(metrics: &Metrics, partition: &str) -> Option<f64> {
        let text = metrics.encode();
        text.lines()
            .find(|line| {
                line.starts_with("kafkaesk_consumer_oldest_unfinished_seconds")
                    && line.contains(&format!("partition=\"{partition}\""))
            })
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse().ok())
    }

    #[test]
    fn a_partition_that_does_not_move_is_reported_once() {
        let metrics = Metrics::new();
        let consumer = metrics.consumer("s", "g");
        let mut watch = StallWatch::new(Some(Duration::from_secs(5)));
        let mut book = book(&[("t", 0), ("t", 1)]);
        let start = Instant::now();
        watch.fetched(
            &[record("t", 0, 10), record("t", 0, 11), record("t", 1, 3)],
            start,
        );

        let look = watch.look(&book, &consumer, start + Duration::from_secs(4));
        assert!(look.newly_stuck.is_empty());
        assert_eq!(gauge(&metrics, "0"), Some(4.0));

        // Partition 1 settles everything; partition 0 waits on.
        book.advance(("t".into(), 1), 4);
        let look = watch.look(&book, &consumer, start + Duration::from_secs(5));
        assert_eq!(look.newly_stuck.len(), 1);
        assert_eq!(
            (look.newly_stuck[0].partition, look.newly_stuck[0].offset),
            (0, 10)
        );
        assert_eq!(gauge(&metrics, "1"), Some(0.0));
        assert_eq!(watch.stuck(start + Duration::from_secs(5)).len(), 1);

        let look = watch.look(&book, &consumer, start + Duration::from_secs(9));
        assert!(look.newly_stuck.is_empty(), "reported once");
        assert_eq!(gauge(&metrics, "0"), Some(9.0));

        // It moves by one record: progress, so the clock starts again.
        book.advance(("t".into(), 0), 11);
        let look = watch.look(&book, &consumer, start + Duration::from_secs(10));
        assert_eq!(look.recovered, vec![(Arc::from("t"), 0)]);
        assert!(watch.stuck(start + Duration::from_secs(10)).is_empty());
        assert_eq!(gauge(&metrics, "0"), Some(0.0));
        assert!(!watch.is_idle());

        book.advance(("t".into(), 0), 12);
        watch.look(&book, &consumer, start + Duration::from_secs(11));
        assert!(watch.is_idle());
    }

    #[test]
    fn paused_and_revoked_partitions_are_not_stuck() {
        let metrics = Metrics::new();
        let consumer = metrics.consumer("s", "g");
        let mut watch = StallWatch::new(Some(Duration::from_secs(1)));
        let mut book = book(&[("t", 0), ("t", 1)]);
        book.paused.insert(("t".into(), 0));
        let start = Instant::now();
        watch.fetched(&[record("t", 0, 0), record("t", 1, 0)], start);
        book.revoke(&[("t".into(), 1)].into_iter().collect());

        let look = watch.look(&book, &consumer, start + Duration::from_secs(30));
        assert!(look.newly_stuck.is_empty());
        assert_eq!(gauge(&metrics, "0"), Some(0.0));
        assert_eq!(
            gauge(&metrics, "1"),
            None,
            "a revoked partition's series is gone"
        );
    }

    #[test]
    fn without_a_timeout_only_the_gauge_moves() {
        let metrics = Metrics::new();
        let consumer = metrics.consumer("s", "g");
        let mut watch = StallWatch::new(None);
        let book = book(&[("t", 0)]);
        let start = Instant::now();
        watch.fetched(&[record("t", 0, 0)], start);
        let look = watch.look(&book, &consumer, start + Duration::from_secs(3600));
        assert!(look.newly_stuck.is_empty());
        assert_eq!(gauge(&metrics, "0"), Some(3600.0));
    }
}
