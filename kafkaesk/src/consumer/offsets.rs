//! The offset book of one consumer, and the librdkafka context that keeps it
//! right across rebalances.
//!
//! The book holds, per partition, the next offset to read after what was
//! handled or skipped (`processed`) and what the broker last confirmed as
//! committed. Before partitions are revoked, their processed offsets are
//! committed, and the book forgets them: their records belong to the next
//! owner. A revocation count lets background work (retries) find out
//! cheaply that its partition was revoked since it began.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, RebalanceProtocol,
};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::watch;

use super::start::StartPlan;
use crate::app::{PauseState, SubscriptionMonitor};
use crate::settings::stream_of;
use crate::sync::{lock, off_the_worker};

/// A topic (shared name) and a partition.
pub(crate) type TopicPartition = (Arc<str>, i32);

/// Offsets shared between the consumer loop and librdkafka's rebalance callbacks.
#[derive(Default)]
pub(crate) struct OffsetBook {
    /// Next offset to read, per partition, for records handled or skipped.
    pub(crate) processed: HashMap<TopicPartition, i64>,
    /// What the broker last confirmed as committed.
    committed: HashMap<TopicPartition, i64>,
    pub(crate) assigned: HashSet<TopicPartition>,
    /// How many revocations happened, so the consumer loop notices one cheaply.
    pub(crate) revocations: u64,
    /// The revocation count at each partition's latest revocation.
    revoked_at: HashMap<TopicPartition, u64>,
    /// Partitions paused by [`Application::pause`](crate::Application::pause)
    /// and its kin (not by retries).
    pub(crate) paused: HashSet<TopicPartition>,
    /// What every commit carries as metadata: a replay's mark.
    pub(crate) commit_metadata: Option<String>,
    /// The offsets of the latest commit the broker refused or never
    /// answered, per partition, so a wait for one commit learns that it
    /// failed, and not that an older one did.
    failed: HashMap<TopicPartition, i64>,
}

impl OffsetBook {
    /// Processed offsets the broker has not confirmed, of every partition or
    /// of `only` those.
    pub(crate) fn uncommitted(&self, only: Option<&HashSet<TopicPartition>>) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for (tp, offset) in &self.processed {
            if only.is_some_and(|set| !set.contains(tp)) {
                continue;
            }
            if self.committed.get(tp) != Some(offset) {
                // Offsets come from librdkafka, so the partition is valid.
                let _ = tpl.add_partition_offset(&tp.0, tp.1, Offset::Offset(*offset));
            }
        }
        self.mark(&tpl);
        tpl
    }

    /// Gives the commits of `tpl` the subscription's metadata, if it has any.
    pub(crate) fn mark(&self, tpl: &TopicPartitionList) {
        if let Some(metadata) = &self.commit_metadata {
            for mut elem in tpl.elements() {
                elem.set_metadata(metadata);
            }
        }
    }

    /// Whether the partition is assigned and was not revoked since the
    /// revocation count was `generation`.
    pub(crate) fn owns(&self, tp: &TopicPartition, generation: u64) -> bool {
        self.assigned.contains(tp) && self.revoked_at.get(tp).is_none_or(|&at| at <= generation)
    }

    /// Records what the broker confirmed as committed.
    pub(crate) fn confirm(&mut self, tpl: &TopicPartitionList) {
        for elem in tpl.elements() {
            if let Offset::Offset(offset) = elem.offset() {
                self.committed
                    .insert((Arc::from(elem.topic()), elem.partition()), offset);
            }
        }
    }

    /// Records that the commit of `tpl` failed.
    pub(crate) fn commit_failed(&mut self, tpl: &TopicPartitionList) {
        for elem in tpl.elements() {
            if let Offset::Offset(offset) = elem.offset() {
                self.failed
                    .insert((Arc::from(elem.topic()), elem.partition()), offset);
            }
        }
    }

    /// Forgets the failures of `tpl`'s partitions, as `tpl` is sent again.
    pub(crate) fn forget_failures(&mut self, tpl: &TopicPartitionList) {
        for elem in tpl.elements() {
            self.failed
                .remove(&(Arc::from(elem.topic()), elem.partition()));
        }
    }

    /// Whether a commit of one of `tpl`'s offsets failed (an older commit
    /// of lower offsets failing does not count) and was not confirmed
    /// since.
    pub(crate) fn failed_to_commit(&self, tpl: &TopicPartitionList) -> bool {
        tpl.elements().iter().any(|elem| {
            let tp = (Arc::from(elem.topic()), elem.partition());
            let Offset::Offset(offset) = elem.offset() else {
                return false;
            };
            self.failed.get(&tp) == Some(&offset) && self.committed.get(&tp) != Some(&offset)
        })
    }

    /// Whether every offset of `tpl` is confirmed as committed, or belongs
    /// to a partition revoked since (its new owner commits it).
    pub(crate) fn confirmed(&self, tpl: &TopicPartitionList) -> bool {
        tpl.elements().iter().all(|elem| {
            let tp = (Arc::from(elem.topic()), elem.partition());
            !self.assigned.contains(&tp)
                || matches!(elem.offset(), Offset::Offset(o) if self.committed.get(&tp) == Some(&o))
        })
    }

    /// Moves a partition's processed offset forward to `next`, if the
    /// partition is still assigned: a record of a partition revoked meanwhile
    /// belongs to another member now.
    pub(crate) fn advance(&mut self, tp: TopicPartition, next: i64) {
        if !self.assigned.contains(&tp) {
            return;
        }
        let entry = self.processed.entry(tp).or_insert(next);
        *entry = (*entry).max(next);
    }

    fn revoke(&mut self, revoked: &HashSet<TopicPartition>) {
        self.revocations += 1;
        let generation = self.revocations;
        for tp in revoked {
            self.revoked_at.insert(tp.clone(), generation);
            self.processed.remove(tp);
            self.committed.remove(tp);
            self.assigned.remove(tp);
            self.paused.remove(tp);
        }
    }

    pub(crate) fn assigned_sorted(&self) -> Vec<(String, i32)> {
        sorted(&self.assigned)
    }

    pub(crate) fn paused_sorted(&self) -> Vec<(String, i32)> {
        sorted(&self.paused)
    }
}

fn sorted(partitions: &HashSet<TopicPartition>) -> Vec<(String, i32)> {
    let mut v: Vec<_> = partitions
        .iter()
        .map(|(t, p)| (t.to_string(), *p))
        .collect();
    v.sort();
    v
}

impl OffsetBook {}

/// A list of one partition, for pause and resume.
pub(crate) fn partition_list(tp: &TopicPartition) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&tp.0, tp.1);
    tpl
}

/// librdkafka context of a subscription's consumer: commits before a
/// revocation, and keeps the book and the subscription's health current.
pub(crate) struct RebalanceContext {
    pub(crate) subscription: Arc<str>,
    pub(crate) auto_commit: bool,
    /// Whether the consumer commits to a group (not one without a group).
    pub(crate) grouped: bool,
    pub(crate) book: Arc<Mutex<OffsetBook>>,
    pub(crate) monitor: SubscriptionMonitor,
    /// Where newly assigned partitions start, when not at the group's commits.
    pub(crate) start: Option<StartPlan>,
    pub(crate) pauses: watch::Receiver<PauseState>,
    /// The topic prefix, stripped to name the streams pauses are kept by.
    pub(crate) topic_prefix: String,
    /// Notified when partitions are assigned, so that a consumer waiting for
    /// records starts reading their queues.
    pub(crate) assignment_changed: tokio::sync::Notify,
    /// Notified when the broker answers a commit, so the last commit before
    /// closing is awaited without blocking a thread.
    pub(crate) commit_answered: tokio::sync::Notify,
}

impl RebalanceContext {
    /// Pauses those of `partitions`, newly assigned, that the subscription's
    /// pauses cover, and records them in the book.
    pub(crate) fn pause_assigned<C: ConsumerContext>(
        &self,
        consumer: &impl Consumer<C>,
        partitions: &[TopicPartition],
    ) {
        let state = self.pauses.borrow().clone();
        let mut tpl = TopicPartitionList::new();
        let mut paused = Vec::new();
        for tp in partitions {
            let stream = stream_of(&self.topic_prefix, &tp.0);
            if state.is_paused(stream, tp.1) {
                tpl.add_partition(&tp.0, tp.1);
                paused.push(tp.clone());
            }
        }
        if paused.is_empty() {
            return;
        }
        match consumer.pause(&tpl) {
            Ok(()) => {
                let mut book = lock(&self.book);
                book.paused.extend(paused);
                self.monitor.paused(book.paused_sorted());
            }
            Err(err) => tracing::warn!(
                subscription = %self.subscription,
                error = %err,
                "could not pause newly assigned partitions"
            ),
        }
    }
}

impl ClientContext for RebalanceContext {
    /// Sets the lag of each assigned partition from librdkafka's statistics,
    /// which come every `statistics.interval.ms`.
    fn stats(&self, statistics: Statistics) {
        let book = lock(&self.book);
        for (topic, partition) in &book.assigned {
            let stats = statistics
                .topics
                .get(&**topic)
                .and_then(|t| t.partitions.get(partition));
            // -1 until the group has a committed offset and the partition a
            // known end.
            if let Some(stats) = stats.filter(|s| s.consumer_lag >= 0) {
                self.monitor
                    .metrics
                    .lag(topic, *partition, stats.consumer_lag);
            }
        }
    }
}

impl ConsumerContext for RebalanceContext {
    /// rust-rdkafka's rebalance, with the start position placed in the
    /// assignment before it is assigned: librdkafka starts each partition
    /// at the offset its assignment carries.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let assigning = err == RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS;
        if assigning {
            if let Some(start) = &self.start {
                off_the_worker(|| start.place(consumer, tpl));
            }
            // Before the assignment starts the partitions (see
            // `partition_queues`).
            super::partition_queues::keep_apart(consumer, tpl);
        }
        let rebalance = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => Rebalance::Assign(tpl),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => Rebalance::Revoke(tpl),
            other => Rebalance::Error(KafkaError::Rebalance(other.into())),
        };
        self.pre_rebalance(consumer, &rebalance);
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let done = match (assigning, cooperative) {
            (true, true) => consumer.incremental_assign(tpl),
            (true, false) => consumer.assign(tpl),
            (false, true) => consumer.incremental_unassign(tpl),
            (false, false) => consumer.unassign(),
        };
        if let Err(err) = done {
            tracing::warn!(subscription = %self.subscription, error = %err, "rebalance failed");
        }
        self.post_rebalance(consumer, &rebalance);
    }

    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(revoked) = rebalance else {
            return;
        };
        let revoked: HashSet<TopicPartition> = revoked
            .elements()
            .iter()
            .map(|e| (Arc::from(e.topic()), e.partition()))
            .collect();
        if self.auto_commit {
            // The lock is released while committing: librdkafka may call
            // `commit_callback` on this thread.
            let tpl = lock(&self.book).uncommitted(Some(&revoked));
            if tpl.count() > 0 {
                match off_the_worker(|| consumer.commit(&tpl, CommitMode::Sync)) {
                    Ok(()) => lock(&self.book).confirm(&tpl),
                    Err(err) => tracing::warn!(
                        subscription = %self.subscription,
                        error = %err,
                        "could not commit before partitions were revoked; \
                         their records since the last commit will be consumed again"
                    ),
                }
            }
        }
        for (topic, partition) in &revoked {
            self.monitor
                .metrics
                .rebalanced(topic, *partition, "revoked");
        }
        let mut book = lock(&self.book);
        book.revoke(&revoked);
        let assigned = book.assigned_sorted();
        drop(book);
        tracing::info!(
            subscription = %self.subscription,
            revoked = revoked.len(),
            partitions = assigned.len(),
            "partitions revoked"
        );
        self.monitor.assigned(assigned);
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let partitions: Vec<TopicPartition> = tpl
                    .elements()
                    .iter()
                    .map(|e| (Arc::from(e.topic()), e.partition()))
                    .collect();
                self.pause_assigned(consumer, &partitions);
                let mut book = lock(&self.book);
                for tp in partitions {
                    self.monitor.metrics.rebalanced(&tp.0, tp.1, "assigned");
                    book.assigned.insert(tp);
                }
                let assigned = book.assigned_sorted();
                drop(book);
                let mut topics: Vec<&str> = assigned.iter().map(|(t, _)| t.as_str()).collect();
                topics.dedup();
                tracing::info!(
                    subscription = %self.subscription,
                    topics = %topics.join(","),
                    partitions = assigned.len(),
                    "partitions assigned"
                );
                self.monitor.assigned(assigned);
                self.assignment_changed.notify_one();
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(err) => tracing::warn!(
                subscription = %self.subscription,
                error = %err,
                "rebalance failed"
            ),
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => lock(&self.book).confirm(offsets),
            Err(err) => {
                lock(&self.book).commit_failed(offsets);
                tracing::warn!(
                    subscription = %self.subscription,
                    error = %err,
                    "offset commit failed; it is retried at the next commit"
                );
            }
        }
        self.commit_answered.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_revoked_since_a_generation_is_no_longer_owned() {
        let tp: TopicPartition = ("t".into(), 0);
        let mut book = OffsetBook::default();
        book.assigned.insert(tp.clone());
        assert!(book.owns(&tp, 0));
        book.revoke(&HashSet::from([tp.clone()]));
        book.assigned.insert(tp.clone());
        assert!(
            !book.owns(&tp, 0),
            "revoked after retries began at generation 0"
        );
        assert!(
            book.owns(&tp, 1),
            "assigned again before generation 1 began"
        );
        book.assigned.remove(&tp);
        assert!(!book.owns(&tp, 1));
    }

    #[test]
    fn a_failed_commit_counts_for_its_own_offsets_only() {
        let mut book = OffsetBook::default();
        book.assigned.insert(("t".into(), 0));
        book.advance(("t".into(), 0), 5);
        let older = book.uncommitted(None);
        book.advance(("t".into(), 0), 9);
        let last = book.uncommitted(None);
        // The older, periodic commit fails: the last one may still land.
        book.commit_failed(&older);
        assert!(!book.failed_to_commit(&last));
        book.commit_failed(&last);
        assert!(book.failed_to_commit(&last));
        // Sent again and confirmed: no longer failed.
        book.confirm(&last);
        assert!(!book.failed_to_commit(&last));
    }

    #[test]
    fn only_changed_offsets_are_committed() {
        let mut book = OffsetBook::default();
        book.assigned.insert(("t".into(), 0));
        book.assigned.insert(("t".into(), 1));
        book.advance(("t".into(), 0), 5);
        book.advance(("t".into(), 1), 7);
        book.committed.insert(("t".into(), 1), 7);
        let tpl = book.uncommitted(None);
        assert_eq!(tpl.count(), 1);
        assert!(!book.confirmed(&tpl));
        book.confirm(&tpl);
        assert!(book.confirmed(&tpl));
        assert_eq!(book.uncommitted(None).count(), 0);
    }

    #[test]
    fn offsets_never_go_back_and_skip_unassigned_partitions() {
        let mut book = OffsetBook::default();
        book.assigned.insert(("t".into(), 0));
        book.advance(("t".into(), 0), 9);
        book.advance(("t".into(), 0), 4);
        book.advance(("t".into(), 1), 3);
        assert_eq!(book.processed.get(&("t".into(), 0)), Some(&9));
        assert!(!book.processed.contains_key(&("t".into(), 1)));
    }
}
