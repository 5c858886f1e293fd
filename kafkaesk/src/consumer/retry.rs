//! Retries in the background: a failed record's partition is paused and
//! retried off the consumer loop, while the other partitions go on.
//!
//! The records of the partition that were fetched meanwhile are held, and
//! run once the retries end, so each partition stays in order and nothing
//! past the failed record is committed before it is settled. If the
//! partition is revoked during the retries, they are abandoned: the new owner
//! consumes the record again from the last commit.

use std::collections::{HashMap, HashSet, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use rdkafka::consumer::Consumer;
use tokio::task::JoinSet;

use super::offsets::{partition_list, OffsetBook, TopicPartition};
use super::settle::Holds;
use super::BatchConsumer;
use crate::app::SubscriptionMonitor;
use crate::error::{Error, RecordPosition, Result};
use crate::handling::invoke::{run_once, Outcome};
use crate::handling::HandlerScope;
use crate::record::{PendingRecord, Record};
use crate::subscription::Subscription;
use crate::sync::lock;
use crate::text::panic_message;

/// Whether the error policy retries a record whose handler ended with
/// `outcome` on its first run.
#[inline]
pub(super) fn retries_first_run(subscription: &Subscription, outcome: &Outcome) -> bool {
    outcome.is_failure() && subscription.error_policy().retry_after(1).is_some()
}

/// The partitions whose failed records are being retried in the background.
#[derive(Default)]
pub(super) struct Retries {
    /// Per retrying partition, its records fetched meanwhile, handled once
    /// the retries end so the partition stays in order.
    pub(super) held: HashMap<TopicPartition, Held>,
    pub(super) running: JoinSet<Retried>,
}

pub(super) struct Held {
    /// The revocation count when the retries began.
    pub(super) generation: u64,
    records: Vec<Record>,
}

impl Retries {
    /// Moves the batch's records of retrying partitions aside.
    pub(super) fn hold_back(&mut self, batch: &mut Vec<PendingRecord<'_>>) {
        if self.held.is_empty() {
            return;
        }
        let mut kept = Vec::with_capacity(batch.len());
        for record in batch.drain(..) {
            let tp = (record.topic().clone(), record.partition());
            match self.held.get_mut(&tp) {
                Some(held) => held.records.push(record.into_record()),
                None => kept.push(record),
            }
        }
        *batch = kept;
    }
}

/// A partition's records of one batch, with their outcomes after retries.
pub(super) struct Retried {
    tp: TopicPartition,
    generation: u64,
    /// Where the partition's offset is held: the batch left a record of it
    /// unstarted, held back with the partition's later ones.
    hold: Option<i64>,
    records: Vec<Record>,
    /// The outcomes, or what panicked while retrying.
    outcomes: std::result::Result<Vec<(Outcome, u32)>, String>,
}

/// Retries the failed records of one partition, off the consumer loop.
struct RetryRun {
    scope: HandlerScope,
    subscription: Subscription,
    book: Arc<Mutex<OffsetBook>>,
    monitor: SubscriptionMonitor,
    tp: TopicPartition,
    generation: u64,
    hold: Option<i64>,
}

impl RetryRun {
    /// Retries every failed record among `records` (all of one partition, in
    /// offset order) as the error policy says, all at once.
    async fn run(self, records: Vec<Record>, outcomes: Vec<Outcome>) -> Retried {
        let retries = records
            .iter()
            .zip(outcomes)
            .map(|(record, outcome)| self.retry(record, outcome));
        // Handler panics are caught in `run_once`; this catches the rest (a
        // panicking `Display` of a handler's error, say) so the partition is
        // still settled.
        let outcomes = AssertUnwindSafe(futures::future::join_all(retries))
            .catch_unwind()
            .await
            .map_err(|payload| panic_message(&*payload));
        Retried {
            tp: self.tp.clone(),
            generation: self.generation,
            hold: self.hold,
            records,
            outcomes,
        }
    }

    /// Runs the handler again on `record` until it succeeds, the attempts
    /// are used up, or the partition is revoked. Returns the last outcome and
    /// how many times the handler ran.
    async fn retry(&self, record: &Record, mut outcome: Outcome) -> (Outcome, u32) {
        let policy = self.subscription.error_policy();
        let mut runs = 1;
        while outcome.is_failure() {
            let Some(delay) = policy.retry_after(runs) else {
                break;
            };
            self.monitor
                .counters
                .retried
                .fetch_add(1, Ordering::Relaxed);
            self.monitor.metrics.retried();
            if let Some(error) = outcome.into_error(&self.scope.name, || record.position()) {
                tracing::warn!(
                    subscription = %self.scope.name,
                    attempt = runs,
                    error = %error,
                    "handler failed; retrying in {delay:?}"
                );
            }
            tokio::time::sleep(delay).await;
            if !lock(&self.book).owns(&self.tp, self.generation) {
                // The new owner handles the record; the result is discarded.
                return (Outcome::Handled, runs);
            }
            runs += 1;
            outcome = run_once(&self.scope, &self.subscription, record).await;
        }
        (outcome, runs)
    }
}

impl BatchConsumer {
    /// Takes the records of every partition with a record to retry out of
    /// the batch, pauses those partitions and retries in the background, so
    /// the other partitions go on. Returns the outcomes of the records left.
    pub(super) fn start_retries(
        &self,
        batch: &mut Vec<PendingRecord<'_>>,
        outcomes: Vec<Outcome>,
        retries: &mut Retries,
        holds: &Holds,
    ) -> Vec<Outcome> {
        let retrying: HashSet<TopicPartition> = batch
            .iter()
            .zip(&outcomes)
            .filter(|(_, outcome)| retries_first_run(&self.subscription, outcome))
            .map(|(record, _)| (record.topic().clone(), record.partition()))
            .collect();
        let generation = lock(&self.book).revocations;
        let mut partitions: HashMap<TopicPartition, (Vec<Record>, Vec<Outcome>)> = HashMap::new();
        let mut kept = Vec::with_capacity(batch.len());
        let mut kept_outcomes = Vec::with_capacity(batch.len());
        for (record, outcome) in batch.drain(..).zip(outcomes) {
            let tp = (record.topic().clone(), record.partition());
            if retrying.contains(&tp) {
                let (records, outcomes) = partitions.entry(tp).or_default();
                records.push(record.into_record());
                outcomes.push(outcome);
            } else {
                kept.push(record);
                kept_outcomes.push(outcome);
            }
        }
        *batch = kept;
        for (tp, (records, outcomes)) in partitions {
            // Paused, the partition's later records stay with the broker
            // rather than pile up here; those already fetched are held back.
            if let Err(err) = self.consumer.pause(&partition_list(&tp)) {
                tracing::warn!(
                    subscription = %self.scope.name,
                    topic = %tp.0,
                    partition = tp.1,
                    error = %err,
                    "could not pause a retrying partition; its new records wait in memory"
                );
            }
            retries.held.insert(
                tp.clone(),
                Held {
                    generation,
                    records: Vec::new(),
                },
            );
            retries.running.spawn(
                RetryRun {
                    scope: self.scope.clone(),
                    subscription: self.subscription.clone(),
                    book: self.book.clone(),
                    monitor: self.monitor.clone(),
                    hold: holds.of(&tp.0, tp.1),
                    tp,
                    generation,
                }
                .run(records, outcomes),
            );
        }
        kept_outcomes
    }

    /// Settles a partition whose retries ended, resumes it, and queues the
    /// records held back meanwhile. Returns how many records were settled.
    pub(super) async fn finish_retries(
        &self,
        retried: std::result::Result<Retried, tokio::task::JoinError>,
        retries: &mut Retries,
        ready: &mut VecDeque<PendingRecord<'_>>,
    ) -> Result<usize> {
        // Retry tasks catch panics and are cancelled only when the consumer
        // stops, so there is nothing to settle after an error here.
        let retried = retried.map_err(|_| Error::Stopped)?;
        let tp = &retried.tp;
        let owned = lock(&self.book).owns(tp, retried.generation);
        let ours = retries
            .held
            .get(tp)
            .is_some_and(|held| held.generation == retried.generation);
        if ours {
            if let Some(held) = retries.held.remove(tp) {
                if owned {
                    // Ahead of the partition's records still in `ready`:
                    // those were fetched after every record held.
                    for record in held.records.into_iter().rev() {
                        ready.push_front(PendingRecord::Owned(record));
                    }
                }
            }
        }
        // A partition paused by the application stays paused.
        if !retries.held.contains_key(tp) && !lock(&self.book).paused.contains(tp) {
            // Fails only if the partition is no longer assigned, which is fine.
            let _ = self.consumer.resume(&partition_list(tp));
        }
        if !owned {
            tracing::info!(
                subscription = %self.scope.name,
                topic = %tp.0,
                partition = tp.1,
                "partition revoked while retrying; its records are left to their new owner"
            );
            return Ok(0);
        }
        let outcomes = match retried.outcomes {
            Ok(outcomes) => outcomes,
            Err(message) => {
                return Err(Error::HandlerPanic {
                    subscription: self.scope.name.to_string(),
                    position: retried
                        .records
                        .first()
                        .map(Record::position)
                        .unwrap_or_else(|| RecordPosition {
                            topic: tp.0.to_string(),
                            partition: tp.1,
                            offset: -1,
                        }),
                    message,
                })
            }
        };
        let records: Vec<PendingRecord<'_>> = retried
            .records
            .into_iter()
            .map(PendingRecord::Owned)
            .collect();
        let mut holds = Holds::default();
        if let Some(offset) = retried.hold {
            holds.hold(&tp.0, tp.1, offset);
        }
        match self.settle(&records, outcomes.into_iter(), &holds).await {
            Some(error) => Err(error),
            None => Ok(records.len()),
        }
    }
}
