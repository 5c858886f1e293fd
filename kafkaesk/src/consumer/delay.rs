//! Records of retry streams wait until they are due (see
//! [Retry streams](crate::ErrorPolicy#retry-streams)).
//!
//! A retry stream's records come in the order they were written, each due
//! its stream's delay after, so a partition's first record is due first.
//! When a batch holds a record not yet due, its partition is paused, and the
//! record and those behind it are held here until it is due; then the
//! partition is resumed and they run. One deadline per partition, read by
//! the consumer loop's wait: nothing sleeps or polls per record.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::TopicPartitionList;
use tokio::time::Instant;

use super::offsets::{OffsetBook, TopicPartition};
use super::BatchConsumer;
use crate::record::PendingRecord;
use crate::retry_stream;
use crate::settings::Settings;
use crate::subscription::Subscription;
use crate::sync::lock;

/// One retry stream of a subscription.
pub(super) struct Tier {
    pub(super) stream: String,
    pub(super) topic: Arc<str>,
    pub(super) delay: Duration,
}

/// The retry streams a subscription reads, in the order records go through
/// them.
#[derive(Default)]
pub(super) struct RetryTiers {
    tiers: Vec<Tier>,
}

impl RetryTiers {
    pub(super) fn new(subscription: &Subscription, settings: &Settings) -> Self {
        let delays = subscription.error_policy().retry_delays();
        let tiers = subscription
            .retry_streams()
            .into_iter()
            .zip(delays)
            .map(|(stream, delay)| Tier {
                topic: Arc::from(settings.topic(&stream)),
                stream,
                delay: *delay,
            })
            .collect();
        RetryTiers { tiers }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.tiers.is_empty()
    }

    /// The topics of the retry streams.
    pub(super) fn topics(&self) -> impl Iterator<Item = &str> {
        self.tiers.iter().map(|tier| &*tier.topic)
    }

    /// The streams of the retry streams.
    pub(super) fn streams(&self) -> impl Iterator<Item = &str> {
        self.tiers.iter().map(|tier| tier.stream.as_str())
    }

    /// Which retry stream `topic` is, if one (a few, so searched in order).
    pub(super) fn of(&self, topic: &str) -> Option<usize> {
        self.tiers.iter().position(|tier| &*tier.topic == topic)
    }

    /// Retry stream number `index`, from 0.
    pub(super) fn get(&self, index: usize) -> Option<&Tier> {
        self.tiers.get(index)
    }

    /// Where a failed record read from `topic` goes next: the first retry
    /// stream, the one after `topic`'s, or none after the last.
    pub(super) fn next_after(&self, topic: &str) -> Option<(usize, &Tier)> {
        let next = self.of(topic).map_or(0, |index| index + 1);
        self.tiers.get(next).map(|tier| (next, tier))
    }
}

/// A paused retry-stream partition and its records, held until due.
struct Waiting<'c> {
    due: Instant,
    /// The revocation count when it was paused.
    generation: u64,
    records: Vec<PendingRecord<'c>>,
}

/// The retry-stream partitions paused until their first record is due.
#[derive(Default)]
pub(super) struct Delays<'c> {
    waiting: HashMap<TopicPartition, Waiting<'c>>,
}

impl<'c> Delays<'c> {
    /// When the first held partition is due, if any.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.waiting.values().map(|waiting| waiting.due).min()
    }

    /// Forgets partitions no longer owned: their new owner reads them from
    /// the last commit. Returns them, to be resumed: librdkafka keeps a
    /// partition's pause across a revocation, so one assigned to this
    /// consumer again would never be read.
    pub(super) fn drop_unowned(&mut self, book: &OffsetBook) -> TopicPartitionList {
        let mut dropped = TopicPartitionList::new();
        self.waiting.retain(|tp, waiting| {
            let owned = book.owns(tp, waiting.generation);
            if !owned && !book.paused.contains(tp) {
                dropped.add_partition(&tp.0, tp.1);
            }
            owned
        });
        dropped
    }
}

impl BatchConsumer {
    /// Moves records of retry streams that are not due yet, and those behind
    /// them in their partitions, out of `batch`, and pauses their partitions.
    /// Runs after `drop_revoked`, which drops the holds of revoked partitions.
    pub(super) fn hold_until_due<'c>(
        &self,
        batch: &mut Vec<PendingRecord<'c>>,
        delays: &mut Delays<'c>,
    ) {
        if self.tiers.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut to_pause = TopicPartitionList::new();
        let book = lock(&self.book);
        let generation = book.revocations;
        let mut kept = Vec::with_capacity(batch.len());
        for record in batch.drain(..) {
            let tp = (record.topic().clone(), record.partition());
            if let Some(waiting) = delays.waiting.get_mut(&tp) {
                let offset = record.offset();
                let first = waiting
                    .records
                    .first()
                    .map_or(i64::MAX, PendingRecord::offset);
                let last = waiting
                    .records
                    .last()
                    .map_or(i64::MIN, PendingRecord::offset);
                if offset < first {
                    // Taken before the hold, and due then: a record a batch
                    // did not start, back from `ready`. It runs.
                    kept.push(record);
                } else if offset > last {
                    // Fetched before the pause took effect, or after someone
                    // resumed it: paused again, so it does not read on.
                    if to_pause.find_partition(&tp.0, tp.1).is_none() {
                        to_pause.add_partition(&tp.0, tp.1);
                    }
                    waiting.records.push(record);
                }
                // Else it is held already.
                continue;
            }
            let Some(tier) = self.tiers.of(record.topic()) else {
                kept.push(record);
                continue;
            };
            // Settled already, so given again (librdkafka resumes a paused
            // partition at the position it last gave): dropped, lest an
            // exactly-once subscription write its output twice. A record a
            // batch did not start holds the book below it, so it is never
            // taken for one.
            if book
                .processed
                .get(&tp)
                .is_some_and(|&next| record.offset() < next)
            {
                continue;
            }
            let wait = retry_stream::wait_for(record.source(), self.tiers.tiers[tier].delay);
            if wait.is_zero() {
                kept.push(record);
                continue;
            }
            to_pause.add_partition(&tp.0, tp.1);
            delays.waiting.insert(
                tp,
                Waiting {
                    due: now + wait,
                    generation,
                    records: vec![record],
                },
            );
        }
        *batch = kept;
        drop(book);
        if to_pause.count() > 0 {
            if let Err(err) = self.consumer.pause(&to_pause) {
                tracing::warn!(subscription = %self.scope.name, error = %err, "could not pause a retry stream's partition");
            }
        }
    }

    /// Resumes the held partitions that are due, and puts their records in
    /// `ready`.
    pub(super) fn release_due<'c>(
        &self,
        delays: &mut Delays<'c>,
        ready: &mut VecDeque<PendingRecord<'c>>,
    ) {
        let now = Instant::now();
        if delays.next_due().is_none_or(|due| due > now) {
            return;
        }
        let due: Vec<TopicPartition> = delays
            .waiting
            .iter()
            .filter(|(_, waiting)| waiting.due <= now)
            .map(|(tp, _)| tp.clone())
            .collect();
        let mut to_resume = TopicPartitionList::new();
        let book = lock(&self.book);
        for tp in due {
            let Some(waiting) = delays.waiting.remove(&tp) else {
                continue;
            };
            // A pause of the application's keeps it paused; its records are
            // held by that pause once they reach a batch.
            if !book.paused.contains(&tp) {
                to_resume.add_partition(&tp.0, tp.1);
            }
            // Revoked since (and maybe assigned again): its records are read
            // again from the last commit, by whoever owns it now.
            if book.owns(&tp, waiting.generation) {
                ready.extend(waiting.records);
            }
        }
        drop(book);
        if to_resume.count() > 0 {
            if let Err(err) = self.consumer.resume(&to_resume) {
                tracing::warn!(subscription = %self.scope.name, error = %err, "could not resume a retry stream's partition");
            }
        }
    }
}
