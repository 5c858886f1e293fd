//! Applying a subscription's pauses in its consumer loop; what pausing
//! means is in [`app::control`](crate::app::control).
//!
//! librdkafka stops fetching a paused partition and, when it is resumed,
//! fetches again after the last record it gave us. The records it gave us
//! before the pause was applied are held here and run first when the
//! partition is resumed, so each partition stays in order. A partition
//! that retries is paused by its retries as well: it is resumed only when
//! neither holds it.

use std::collections::{HashMap, VecDeque};

use rdkafka::consumer::Consumer;
use rdkafka::TopicPartitionList;
use tokio::sync::watch;

use super::offsets::TopicPartition;
use super::retry::Retries;
use super::BatchConsumer;
use crate::app::PauseState;
use crate::record::PendingRecord;
use crate::sync::lock;

/// A consumer loop's view of its subscription's pauses.
pub(super) struct Paused<'c> {
    pub(super) state: watch::Receiver<PauseState>,
    /// Records of paused partitions taken before the pause was applied.
    held: HashMap<TopicPartition, Vec<PendingRecord<'c>>>,
}

impl<'c> Paused<'c> {
    pub(super) fn new(state: watch::Receiver<PauseState>) -> Self {
        Paused {
            state,
            held: HashMap::new(),
        }
    }

    /// Whether the pauses changed since they were last applied.
    pub(super) fn changed(&self) -> bool {
        self.state.has_changed().unwrap_or(false)
    }

    /// Moves records of paused partitions out of `records`.
    pub(super) fn hold_back<C>(&mut self, records: &mut C, consumer: &BatchConsumer)
    where
        C: Default + Extend<PendingRecord<'c>> + IntoIterator<Item = PendingRecord<'c>>,
    {
        let book = lock(&consumer.book);
        if book.paused.is_empty() {
            return;
        }
        let mut kept = C::default();
        for record in std::mem::take(records) {
            let tp = (record.topic().clone(), record.partition());
            if book.paused.contains(&tp) {
                self.held.entry(tp).or_default().push(record);
            } else {
                kept.extend([record]);
            }
        }
        *records = kept;
    }

    /// Forgets the records held for partitions no longer assigned: their new
    /// owner consumes them from the last commit.
    pub(super) fn drop_unassigned(&mut self, consumer: &BatchConsumer) {
        let book = lock(&consumer.book);
        self.held.retain(|tp, _| book.assigned.contains(tp));
    }
}

impl BatchConsumer {
    /// Pauses and resumes the assigned partitions as the subscription's
    /// pauses now say: records of newly paused partitions in `ready` are
    /// held, those held for resumed partitions go back to `ready`.
    pub(super) fn apply_pauses<'c>(
        &self,
        paused: &mut Paused<'c>,
        ready: &mut VecDeque<PendingRecord<'c>>,
        retries: &Retries,
    ) {
        let state = paused.state.borrow_and_update().clone();
        self.control.pause_applied();
        let settings = self.scope.app.settings();
        let mut to_pause = TopicPartitionList::new();
        let mut to_resume = TopicPartitionList::new();
        let mut resumed = Vec::new();
        {
            let mut book = lock(&self.book);
            let assigned: Vec<TopicPartition> = book.assigned.iter().cloned().collect();
            for tp in assigned {
                let stream = settings.stream(&tp.0);
                let wanted = state.is_paused(stream, tp.1);
                if wanted && book.paused.insert(tp.clone()) {
                    to_pause.add_partition(&tp.0, tp.1);
                } else if !wanted && book.paused.remove(&tp) {
                    // Retries resume their partition when they end.
                    if !retries.held.contains_key(&tp) {
                        to_resume.add_partition(&tp.0, tp.1);
                    }
                    resumed.push(tp);
                }
            }
        }
        if to_pause.count() > 0 {
            if let Err(err) = self.consumer.pause(&to_pause) {
                tracing::warn!(subscription = %self.scope.name, error = %err, "could not pause partitions");
            }
            paused.hold_back(ready, self);
        }
        if to_resume.count() > 0 {
            if let Err(err) = self.consumer.resume(&to_resume) {
                tracing::warn!(subscription = %self.scope.name, error = %err, "could not resume partitions");
            }
        }
        for tp in resumed {
            if let Some(records) = paused.held.remove(&tp) {
                ready.extend(records);
            }
        }
        self.monitor.paused(lock(&self.book).paused_sorted());
    }
}
