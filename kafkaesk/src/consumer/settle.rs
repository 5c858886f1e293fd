//! Settling records: applying the error policy to failures, moving offsets
//! forward, and committing them.
//!
//! A partition's offset moves past a record only once the record is settled
//! (handled, skipped because it cannot be decoded, or skipped or
//! dead-lettered by the error policy), and never past a record that stops
//! the consumer: what follows such a record in its partition comes back.
//! Under key order a batch may end with a record unstarted (waiting for its
//! key) while later records of other keys were handled: the batch's
//! [`Holds`] keep its partition's offset before it until it settles.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::StreamExt;
use rdkafka::consumer::{Consumer, MessageStream};
use rdkafka::TopicPartitionList;

use super::rebalance::RebalanceContext;
use super::BatchConsumer;
use crate::dead_letter::{self, Failure};
use crate::error::Error;
use crate::handling::invoke::Outcome;
use crate::native::commit::commit_async;
use crate::observe::journal::{FailedAs, RecordOutcome, Settled};
use crate::record::{PendingRecord, Record};
use crate::retry_stream::{self, Move, Origin};
use crate::subscription::FinalAction;
use crate::sync::lock;

/// Per partition, the offset of its first record a batch left unstarted:
/// the partition's offset must not move past it when the batch's other
/// records settle (under key order, records of other keys behind it may have
/// run). Usually empty.
#[derive(Default)]
pub(crate) struct Holds(Vec<(Arc<str>, i32, i64)>);

impl Holds {
    /// Holds `partition` of `topic` at `offset`, unless it is held earlier.
    pub(crate) fn hold(&mut self, topic: &Arc<str>, partition: i32, offset: i64) {
        match self
            .0
            .iter_mut()
            .find(|(t, p, _)| *p == partition && t == topic)
        {
            Some((_, _, held)) => *held = (*held).min(offset),
            None => self.0.push((topic.clone(), partition, offset)),
        }
    }

    /// Whether the record at `offset` of `partition` is past its
    /// partition's hold, so must not move the partition's offset.
    #[inline]
    pub(crate) fn passes(&self, topic: &Arc<str>, partition: i32, offset: i64) -> bool {
        // Inlined for the common case, a batch that started every record.
        !self.0.is_empty() && self.of(topic, partition).is_some_and(|held| offset > held)
    }

    /// Where `partition` of `topic` is held, if it is.
    pub(crate) fn of(&self, topic: &Arc<str>, partition: i32) -> Option<i64> {
        self.0
            .iter()
            .find(|(t, p, _)| *p == partition && t == topic)
            .map(|&(_, _, offset)| offset)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The next offset to commit for each partition of a run of settled
/// records, in the order they were settled: one past the partition's last
/// record before its first record that stops the consumer or is held.
#[derive(Default)]
pub(crate) struct NextOffsets<'a> {
    /// Per partition: the next offset, and whether a stopping or held record
    /// was met.
    partitions: Vec<(&'a Arc<str>, i32, Option<i64>, bool)>,
    /// The partition of the last record: records come in runs.
    last: usize,
}

impl<'a> NextOffsets<'a> {
    /// Adds a settled record; `stops` when it stops the consumer, or comes
    /// after a record that did not settle.
    // Always: `settle` is generic, and the hint alone left this a call per
    // record (17 of its 52 instructions were the call's).
    #[inline(always)]
    pub(crate) fn settled(
        &mut self,
        topic: &'a Arc<str>,
        partition: i32,
        offset: i64,
        stops: bool,
    ) {
        // Records of one consumer share their topic names, so the pointers
        // match first; the text is compared only for names made elsewhere.
        let matches = |(t, p, ..): &(&Arc<str>, i32, Option<i64>, bool)| {
            *p == partition && (Arc::ptr_eq(t, topic) || *t == topic)
        };
        let index = match self.partitions.get(self.last) {
            Some(last) if matches(last) => self.last,
            // Linear: a batch spans few partitions.
            _ => match self.partitions.iter().position(matches) {
                Some(index) => index,
                None => {
                    self.partitions.push((topic, partition, None, false));
                    self.partitions.len() - 1
                }
            },
        };
        self.last = index;
        let (_, _, next, stopped) = &mut self.partitions[index];
        if stops {
            *stopped = true;
        } else if !*stopped {
            // The highest: a record librdkafka delivered again after a
            // pause (it resumes at its own idea of the position) may come
            // after a later one, and must not move the commit back.
            let past = offset.saturating_add(1);
            *next = Some(next.map_or(past, |next| next.max(past)));
        }
    }

    /// Each partition with an offset to move to.
    pub(crate) fn into_offsets(self) -> impl Iterator<Item = (&'a Arc<str>, i32, i64)> {
        self.partitions
            .into_iter()
            .filter_map(|(topic, partition, next, _)| next.map(|next| (topic, partition, next)))
    }
}

impl BatchConsumer {
    /// Applies the error policy to failed records, then records the offsets
    /// of the batch's records, each partition up to its first record that
    /// stops the consumer or its hold. Returns the first such failure.
    pub(super) async fn settle(
        &self,
        batch: &[PendingRecord<'_>],
        outcomes: impl Iterator<Item = (Outcome, u32)>,
        holds: &Holds,
    ) -> Option<Error> {
        let mut failure = None;
        let mut next = NextOffsets::default();
        // Counted once per batch: the counter is shared with health checks.
        let mut handled = 0;
        // Labels of the records, recorded once every failure was settled:
        // the recorder holds the metrics' lock, which must not be held
        // across the dead-letter writes.
        let mut labels = Vec::with_capacity(batch.len());
        // Journaled once the counters are: whoever waits on the journal
        // reads them next.
        let mut journaled = Vec::new();
        for (record, (outcome, runs)) in batch.iter().zip(outcomes) {
            // Read once: each read of a fetched record calls into rdkafka.
            let source = record.source();
            let (topic, partition, offset) =
                (source.shared_topic(), source.partition(), source.offset());
            labels.push((outcome.metric_label(), partition, offset));
            let (stops, settled) = match outcome {
                Outcome::Handled => {
                    handled += 1;
                    (false, RecordOutcome::Handled { attempts: runs })
                }
                outcome => match self.settle_failure(record, outcome, runs).await {
                    (Some(error), settled) => {
                        failure.get_or_insert(error);
                        (true, settled)
                    }
                    (None, settled) => (false, settled),
                },
            };
            if self.monitor.journal.is_some() {
                journaled.push(Settled {
                    subscription: self.scope.name.to_string(),
                    stream: self.scope.app.settings().stream(topic).to_owned(),
                    partition,
                    offset,
                    outcome: settled,
                });
            }
            let held = holds.passes(topic, partition, offset);
            next.settled(topic, partition, offset, stops || held);
        }
        let mut recorder = self.monitor.metrics.batch();
        for (record, (label, partition, offset)) in batch.iter().zip(labels) {
            let source = record.source();
            recorder.record(
                source.shared_topic(),
                partition,
                offset,
                source.timestamp(),
                label,
            );
        }
        drop(recorder);
        if handled > 0 {
            self.monitor
                .counters
                .handled
                .fetch_add(handled, Ordering::Relaxed);
        }
        // The book is locked once per batch.
        let mut book = lock(&self.book);
        for (topic, partition, offset) in next.into_offsets() {
            book.advance((topic.clone(), partition), offset);
        }
        drop(book);
        if let Some(journal) = &self.monitor.journal {
            for settled in journaled {
                journal.settled(settled);
            }
        }
        failure
    }

    /// Counts one unhandled or failed record and applies the error policy to a
    /// failure. Returns the error if the record stops the consumer, and how
    /// the record was settled.
    async fn settle_failure(
        &self,
        record: &PendingRecord<'_>,
        outcome: Outcome,
        runs: u32,
    ) -> (Option<Error>, RecordOutcome) {
        let counters = &self.monitor.counters;
        let error = match outcome.into_error(&self.scope.name, || record.position()) {
            None => return (None, RecordOutcome::Handled { attempts: runs }),
            Some(err @ Error::Unhandled { .. }) => {
                let settled = RecordOutcome::failed(&err, runs, FailedAs::Unhandled);
                counters.unhandled.fetch_add(1, Ordering::Relaxed);
                self.monitor.metrics.skipped("unhandled");
                tracing::warn!(
                    subscription = %self.scope.name,
                    topic = %record.topic(),
                    partition = record.partition(),
                    offset = record.offset(),
                    "{err}; skipped"
                );
                return (None, settled);
            }
            Some(err) => err,
        };
        counters.failed.fetch_add(1, Ordering::Relaxed);
        let record = record.to_record();
        let origin = self.origin(&record);
        let error = match self.retry_later(&record, &origin, error, runs).await {
            Ok(moved) => return moved,
            Err(error) => error,
        };
        self.final_action(&record, &origin, error, runs).await
    }

    /// Applies the error policy's final action (skip, dead-letter or stop)
    /// to a failed record. Returns the error if the record stops the
    /// consumer, and how the record was settled.
    pub(super) async fn final_action(
        &self,
        record: &Record,
        origin: &Origin,
        error: Error,
        runs: u32,
    ) -> (Option<Error>, RecordOutcome) {
        let counters = &self.monitor.counters;
        match self.subscription.error_policy().final_action() {
            FinalAction::Skip => {
                counters.skipped.fetch_add(1, Ordering::Relaxed);
                self.monitor.metrics.skipped("error_policy");
                tracing::error!(
                    subscription = %self.scope.name,
                    error = %error,
                    attempts = runs,
                    "handler failed; record skipped by the error policy"
                );
                (None, RecordOutcome::failed(&error, runs, FailedAs::Skipped))
            }
            FinalAction::DeadLetter(stream) => {
                let failure = Failure {
                    error: &error,
                    attempts: runs,
                    subscription: &self.scope.name,
                    group: self.subscription.group(),
                };
                // A retried record's dead letter names where it was first
                // consumed, where a replay returns it.
                let record = origin.record(record);
                match dead_letter::write(self.scope.publisher(), stream, &record, failure).await {
                    Ok(()) => {
                        counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
                        self.monitor.metrics.dead_lettered(stream);
                        tracing::error!(
                            subscription = %self.scope.name,
                            error = %error,
                            attempts = runs,
                            dead_letter = %stream,
                            "handler failed; record dead-lettered"
                        );
                        let settled =
                            RecordOutcome::failed(&error, runs, FailedAs::DeadLettered(stream));
                        (None, settled)
                    }
                    // It would not fit on a retry either: stopping would
                    // restart into this record forever (see the
                    // dead_letter module docs).
                    Err(dlq_error @ Error::MessageTooLarge { .. }) => {
                        counters.skipped.fetch_add(1, Ordering::Relaxed);
                        self.monitor.metrics.skipped("dead_letter_too_large");
                        tracing::error!(
                            subscription = %self.scope.name,
                            error = %error,
                            attempts = runs,
                            record = %record.position(),
                            dead_letter = %stream,
                            dead_letter_error = %dlq_error,
                            "handler failed and the record is too large to dead-letter; \
                             skipped (it stays in its source topic)"
                        );
                        (None, RecordOutcome::failed(&error, runs, FailedAs::Skipped))
                    }
                    Err(dlq_error) => {
                        tracing::error!(
                            subscription = %self.scope.name,
                            error = %error,
                            dead_letter = %stream,
                            dead_letter_error = %dlq_error,
                            "handler failed and the dead-letter write failed; stopping consumer"
                        );
                        let settled = RecordOutcome::failed(&error, runs, FailedAs::Stopped);
                        (Some(error), settled)
                    }
                }
            }
            FinalAction::Stop => {
                tracing::error!(subscription = %self.scope.name, error = %error, "handler failed; stopping consumer");
                let settled = RecordOutcome::failed(&error, runs, FailedAs::Stopped);
                (Some(error), settled)
            }
        }
    }

    /// Where `record` was first consumed: its own position, or for a record
    /// of a retry stream, the origin its headers name if the subscription
    /// could have consumed it.
    fn origin(&self, record: &Record) -> Origin {
        if self.tiers.of(record.topic()).is_some() {
            let prefix = &self.scope.app.settings().topic_prefix;
            Origin::of(record, self.subscription.streams(), prefix)
        } else {
            Origin::here(record)
        }
    }

    /// Moves a failed record to its next retry stream, if it has one left.
    /// Gives the error back when it has none, or when the record cannot be
    /// written to it for good (too large, say): the final action applies
    /// then.
    async fn retry_later(
        &self,
        record: &Record,
        origin: &Origin,
        error: Error,
        runs: u32,
    ) -> std::result::Result<(Option<Error>, RecordOutcome), Error> {
        let Some((index, tier)) = self.tiers.next_after(record.topic()) else {
            return Err(error);
        };
        let settled = RecordOutcome::failed(&error, runs, FailedAs::RetriedLater(&tier.stream));
        // The partition goes on while the broker takes the move; an
        // exactly-once one's move must be in the transaction it commits next.
        if self.scope.transaction.is_none() {
            self.move_in_background(record.clone(), origin.clone(), index, error, runs);
            return Ok((None, settled));
        }
        let moved = Move {
            origin,
            attempt: index + 1,
            delay: tier.delay,
            error: &error,
            subscription: &self.scope.name,
        };
        match retry_stream::write(self.scope.publisher(), &tier.stream, record, moved).await {
            Ok(()) => {
                self.count_move(record, index, &error, runs);
                Ok((None, settled))
            }
            Err(write_error) if dead_letter::fails_for_good(&write_error) => {
                tracing::error!(
                    subscription = %self.scope.name,
                    error = %error,
                    record = %record.position(),
                    retry_stream = %tier.stream,
                    retry_stream_error = %write_error,
                    "handler failed and the record cannot be written to its retry stream; \
                     the error policy's final action applies"
                );
                Err(error)
            }
            Err(write_error) => {
                tracing::error!(
                    subscription = %self.scope.name,
                    error = %error,
                    retry_stream = %tier.stream,
                    retry_stream_error = %write_error,
                    "handler failed and the retry stream write failed; stopping consumer"
                );
                let settled = RecordOutcome::failed(&error, runs, FailedAs::Stopped);
                Ok((Some(error), settled))
            }
        }
    }

    /// Counts and logs a record the broker took into retry stream `tier`.
    pub(super) fn count_move(&self, record: &Record, tier: usize, error: &Error, runs: u32) {
        let Some(tier) = self.tiers.get(tier) else {
            return;
        };
        self.monitor
            .counters
            .retried_later
            .fetch_add(1, Ordering::Relaxed);
        self.monitor.metrics.retried_later(&tier.stream);
        tracing::warn!(
            subscription = %self.scope.name,
            error = %error,
            attempts = runs,
            record = %record.position(),
            retry_stream = %tier.stream,
            "handler failed; record moved to a retry stream, due in {:?}",
            tier.delay
        );
    }

    /// Asks the broker to commit the processed offsets it has not
    /// confirmed, when `auto_commit` is on, and returns them; the answer
    /// comes to the context's `commit_callback`.
    pub(super) fn commit_handled(&self) -> Option<TopicPartitionList> {
        if !self.auto_commit {
            return None;
        }
        let tpl = lock(&self.book).uncommitted(None);
        if tpl.count() == 0 {
            return None;
        }
        match commit_async(&*self.consumer, &tpl) {
            Ok(()) => Some(tpl),
            Err(err) => {
                tracing::warn!(subscription = %self.scope.name, error = %err, "offset commit failed");
                None
            }
        }
    }

    /// Commits what was settled, once the consumer has stopped, and waits
    /// for the broker's answer at most the `shutdown_timeout`.
    ///
    /// librdkafka's synchronous commit would block the thread without a
    /// bound, so the commit is asynchronous and its answer is served by
    /// polling the consumer (see [`commit`](super::commit)): records fetched
    /// meanwhile are left unhandled and uncommitted, for the next run.
    pub(super) async fn commit_before_closing(
        &self,
        messages: &mut MessageStream<'_, RebalanceContext>,
    ) {
        let Some(pending) = self.commit_handled() else {
            return;
        };
        // An earlier failure of these offsets is not this commit's: its
        // answer comes through the queue, which is polled below.
        lock(&self.book).forget_failures(&pending);
        let timeout = self.scope.app.settings().shutdown_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let answered = &self.consumer.context().commit_answered;
        loop {
            {
                let book = lock(&self.book);
                if book.confirmed(&pending) {
                    return;
                }
                if book.failed_to_commit(&pending) {
                    drop(book);
                    tracing::warn!(
                        subscription = %self.scope.name,
                        offsets = %offsets_text(&pending),
                        "the last commit failed; records handled since the previous commit will be consumed again"
                    );
                    return;
                }
            }
            tokio::select! {
                () = answered.notified() => {}
                // Drives the consumer's queue, where the answer arrives.
                _ = messages.next() => {}
                () = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(
                        subscription = %self.scope.name,
                        offsets = %offsets_text(&pending),
                        timeout = ?timeout,
                        "the broker did not confirm the last commit within the shutdown timeout; \
                         records handled since the previous commit will be consumed again"
                    );
                    return;
                }
            }
        }
    }
}

/// `topic[partition]@offset, ...`, for logs.
fn offsets_text(tpl: &TopicPartitionList) -> String {
    tpl.elements()
        .iter()
        .map(|elem| format!("{}[{}]@{:?}", elem.topic(), elem.partition(), elem.offset()))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offsets(records: &[(&Arc<str>, i32, i64, bool)]) -> Vec<(String, i32, i64)> {
        let mut next = NextOffsets::default();
        for &(topic, partition, offset, stops) in records {
            next.settled(topic, partition, offset, stops);
        }
        next.into_offsets()
            .map(|(t, p, o)| (t.to_string(), p, o))
            .collect()
    }

    #[test]
    fn a_record_at_the_last_offset_does_not_overflow() {
        let a: Arc<str> = "a".into();
        assert_eq!(
            offsets(&[(&a, 0, i64::MAX, false)]),
            [("a".into(), 0, i64::MAX)]
        );
    }

    #[test]
    fn each_partition_moves_past_its_last_settled_record() {
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        let next = offsets(&[
            (&a, 0, 4, false),
            (&a, 1, 9, false),
            (&a, 0, 5, false),
            (&b, 0, 2, false),
        ]);
        assert_eq!(
            next,
            [("a".into(), 0, 6), ("a".into(), 1, 10), ("b".into(), 0, 3)]
        );
    }

    #[test]
    fn a_record_delivered_again_after_a_later_one_does_not_move_the_commit_back() {
        let a: Arc<str> = "a".into();
        let next = offsets(&[(&a, 0, 3, false), (&a, 0, 2, false)]);
        assert_eq!(next, [("a".into(), 0, 4)]);
    }

    #[test]
    fn a_stopping_record_holds_its_partition_but_not_the_others() {
        let a: Arc<str> = "a".into();
        let next = offsets(&[
            (&a, 0, 4, false),
            (&a, 0, 5, true),
            (&a, 1, 7, false),
            (&a, 0, 6, false),
        ]);
        assert_eq!(next, [("a".into(), 0, 5), ("a".into(), 1, 8)]);
        let first_stops = offsets(&[(&a, 0, 4, true), (&a, 0, 5, false)]);
        assert!(
            first_stops.is_empty(),
            "nothing of partition 0 is committed"
        );
    }

    #[test]
    fn a_hold_keeps_the_earliest_unstarted_record_of_each_partition() {
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        let mut holds = Holds::default();
        assert!(holds.is_empty());
        holds.hold(&a, 0, 11);
        holds.hold(&a, 0, 9);
        holds.hold(&a, 0, 14);
        assert_eq!(holds.of(&a, 0), Some(9));
        assert_eq!(holds.of(&a, 1), None);
        assert_eq!(holds.of(&b, 0), None);
        assert!(!holds.passes(&a, 0, 8), "before the hold");
        assert!(holds.passes(&a, 0, 10), "handled past the unstarted record");
        assert!(!holds.passes(&a, 1, 10), "another partition");
    }
}
