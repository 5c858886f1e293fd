//! The librdkafka context of a subscription's consumer: before partitions
//! are revoked it commits what was processed, the book forgets them and the
//! `on_revoked` hook runs; when partitions are assigned it sets where they
//! start (the start position, then the `on_assigned` hook's seeks) and keeps
//! them paused if the subscription is; and it keeps the subscription's
//! health current.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, RebalanceProtocol,
};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, TopicPartitionList};
use tokio::sync::watch;

use super::hooks::HookRunner;
use super::offsets::{OffsetBook, TopicPartition};
use super::start::StartPlan;
use crate::app::{PauseState, SubscriptionMonitor};
use crate::observe::metrics::ClientErrorMetrics;
use crate::settings::stream_of;
use crate::sync::{lock, off_the_worker};

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
    /// The subscription's rebalance hooks, if it has any.
    pub(crate) hooks: Option<HookRunner>,
    /// Where the consumer's client errors (a broker lost) are counted.
    pub(crate) client_errors: ClientErrorMetrics,
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
    fn error(&self, error: KafkaError, reason: &str) {
        self.client_errors.report(&error, reason);
    }

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
            // After the start position, so its seeks win; before the
            // assignment, so no record of these partitions is fetched, let
            // alone handled, before it returns.
            if let Some(hooks) = &self.hooks {
                hooks.assigned(consumer, tpl);
            }
            // Before the assignment starts the partitions (see
            // `partition_queues`).
            crate::native::queue::keep_apart(consumer, tpl);
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
        // After the commit above (an exactly-once subscription's batches
        // committed in their transactions before this poll), and before the
        // partitions are unassigned and go to another member.
        if let Some(hooks) = &self.hooks {
            hooks.revoked(&revoked);
        }
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
