//! Batch consumers: one per subscription, in its own consumer group.
//!
//! Each consumer takes the records librdkafka has fetched, in batches, and
//! runs the handler on them in order, at most `concurrency` at once; a
//! handler that exceeds the subscription's `timeout` is cancelled. How a
//! batch is scheduled is in [`batch`]'s docs; how one handler runs, in
//! [`invoke`](crate::handling::invoke)'s.
//!
//! Handlers decode straight from librdkafka's buffers: a record is copied
//! into an owned [`Record`](crate::Record) only when a handler asks for it
//! (or for its [`Subscriber`](crate::Subscriber)), or when it must outlive
//! the batch (retries, dead letters).
//!
//! What users rely on (delivery guarantees, stopping, patterns, fetch
//! errors) is documented on [`Application::run`], from `docs/consuming.md`.

mod assign;
mod batch;
mod delay;

mod exactly_once;
mod fetch_errors;
mod hooks;
mod moves;
mod offsets;
mod partition_queues;
mod pause;
mod rebalance;
mod retry;
mod run;
mod settle;
mod stall;
mod start;
mod supervisor;

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::TopicPartitionList;
use tokio::time::Instant;

use crate::app::{Application, SubscriptionControl, SubscriptionMonitor};
use crate::error::{Error, Result};
use crate::handling::invoke::Outcome;
use crate::handling::subscriber::CommitOffsets;
use crate::handling::HandlerScope;
use crate::kafka::producer::Producer;
use crate::record::{PendingRecord, TopicNames};
use crate::subscription::RecordOrder;
use crate::subscription::Subscription;
use crate::sync::lock;
use assign::SelfAssignment;
use batch::{MAX_HANDLED_IN_TURN, MAX_PARALLEL_BATCH, WAITING_LOOKAHEAD};
use delay::{Delays, RetryTiers};
use fetch_errors::{FetchErrors, Seen};
use hooks::HookRunner;
use moves::Moves;
use offsets::OffsetBook;
use partition_queues::PartitionQueues;
use pause::Paused;
use rebalance::RebalanceContext;
use retry::{retries_first_run, Retries};
use settle::Holds;
use stall::StallWatch;
use start::StartPlan;

pub(crate) use run::{RunControl, RunStop};

type KafkaConsumer = StreamConsumer<RebalanceContext>;

impl CommitOffsets for KafkaConsumer {
    fn commit_sync(&self, offsets: &TopicPartitionList) -> Result<()> {
        if self.context().grouped {
            lock(&self.context().book).mark(offsets);
            Ok(self.commit(offsets, CommitMode::Sync)?)
        } else {
            Err(Error::InvalidSetting {
                name: "without_group".to_owned(),
                reason: "a subscription without a group commits nothing; its position is \
                         where it starts"
                    .to_owned(),
            })
        }
    }
}

/// Runs one subscription until the run is stopped or its handler fails.
pub(crate) async fn run_subscription(
    app: Application,
    subscription: Subscription,
    control: RunControl,
) -> Result<()> {
    let transaction = exactly_once::begin(&app, &subscription).await?;
    create_retry_streams(&app, &subscription).await?;
    let consumer = BatchConsumer::start(app, subscription, transaction)?;
    let result = consumer.run(control).await;
    consumer.abort_transaction().await;
    consumer.monitor.stopped();
    consumer.close().await;
    result
}

/// Creates the subscription's retry streams, if it has any and they do
/// not exist: it reads them from the start.
async fn create_retry_streams(app: &Application, subscription: &Subscription) -> Result<()> {
    let streams = subscription.retry_streams();
    if streams.is_empty() {
        return Ok(());
    }
    let clients = app.connection().clients().await?;
    for stream in streams {
        clients
            .topics
            .ensure(&app.settings().topic(&stream), None)
            .await?;
    }
    Ok(())
}

/// The consumer of one subscription: Python kafkaesk's `BatchConsumer`.
pub(crate) struct BatchConsumer {
    scope: HandlerScope,
    subscription: Subscription,
    consumer: Arc<KafkaConsumer>,
    book: Arc<Mutex<OffsetBook>>,
    monitor: SubscriptionMonitor,
    control: Arc<SubscriptionControl>,
    auto_commit: bool,
    /// The retry streams it reads, if its error policy has any.
    tiers: RetryTiers,
    /// Its moves to retry streams that the broker has not answered yet.
    moves: Moves,
}

impl BatchConsumer {
    /// Creates the consumer and subscribes it.
    fn start(
        app: Application,
        subscription: Subscription,
        transaction: Option<Producer>,
    ) -> Result<Self> {
        let started = std::time::Instant::now();
        let consumer = Self::connect(app.clone(), subscription, transaction);
        app.metrics()
            .kafka_action("sync_consumer_connect", started.elapsed(), consumer.is_ok());
        consumer
    }

    fn connect(
        app: Application,
        subscription: Subscription,
        transaction: Option<Producer>,
    ) -> Result<Self> {
        let settings = app.settings();
        let group = subscription.group();
        // An exactly-once subscription commits offsets with its transactions;
        // one without a group commits nothing.
        let auto_commit = settings.auto_commit && transaction.is_none() && group.is_some();
        let name: Arc<str> = subscription.shared_name().clone();
        // librdkafka wants a group id even for assigned partitions; a
        // groupless one never joins it nor commits to it.
        let client_group = group.map_or_else(
            || format!("kafkaesk-no-group-{name}-{}", std::process::id()),
            str::to_owned,
        );
        let per_partition_queues = subscription.order() != RecordOrder::Unordered;
        let config = settings.consumer_config(&client_group, per_partition_queues)?;
        let monitor = app.monitor(&name, group.unwrap_or(""));
        let control = app.control(&name);
        let start = StartPlan::new(&subscription, control.clone());
        let mut book = OffsetBook::default();
        book.commit_metadata = start
            .as_ref()
            .and_then(StartPlan::commit_metadata)
            .map(str::to_owned);
        let book = Arc::new(Mutex::new(book));
        let context = RebalanceContext {
            subscription: name.clone(),
            auto_commit,
            grouped: group.is_some(),
            book: book.clone(),
            monitor: monitor.clone(),
            start,
            pauses: control.pauses(),
            topic_prefix: settings.topic_prefix.clone(),
            assignment_changed: tokio::sync::Notify::new(),
            commit_answered: tokio::sync::Notify::new(),
            hooks: HookRunner::new(
                &subscription,
                &settings.topic_prefix,
                config.get("max.poll.interval.ms"),
                app.metrics().clone(),
            ),
            client_errors: app.metrics().client_errors("consumer"),
        };
        let consumer: KafkaConsumer = config.create_with_context(context)?;
        let tiers = RetryTiers::new(&subscription, settings);
        if subscription.assigns_itself() {
            tracing::info!(
                subscription = %name,
                streams = %subscription.streams(),
                group,
                partitions = ?subscription.partitions(),
                start = %subscription.start_at(),
                "subscribed, assigning partitions itself"
            );
        } else {
            let regex = subscription.streams().regex(&settings.topic_prefix);
            let mut topics = vec![regex.as_str()];
            topics.extend(tiers.topics());
            consumer.subscribe(&topics)?;
            tracing::info!(
                subscription = %name,
                streams = %subscription.streams(),
                retry_streams = ?tiers.streams().collect::<Vec<_>>(),
                group,
                regex = %regex,
                start = %subscription.start_at(),
                "subscribed"
            );
        }
        let consumer = Arc::new(consumer);
        let weak = Arc::downgrade(&consumer);
        let commits: Weak<dyn CommitOffsets> = weak;
        Ok(BatchConsumer {
            auto_commit,
            scope: HandlerScope {
                consumer: Some(commits),
                app,
                name,
                transaction,
            },
            subscription,
            consumer,
            book,
            monitor,
            control,
            tiers,
            moves: Moves::default(),
        })
    }

    /// How often librdkafka looks up topics, which a self-assigning
    /// subscription follows too.
    fn metadata_refresh_interval(&self) -> Duration {
        let settings = self.scope.app.settings();
        let millis = settings
            .kafka_settings
            .get("topic.metadata.refresh.interval.ms")
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|&ms| ms > 0)
            .unwrap_or(5000);
        Duration::from_millis(millis)
    }

    /// Logs, counts and reports an error librdkafka gave in place of
    /// records (see [Fetch errors that repeat](self#fetch-errors-that-repeat)).
    fn fetch_failed(&self, errors: &mut FetchErrors, err: &KafkaError) {
        self.monitor.metrics.fetch_failed(err);
        match errors.failed(err, std::time::Instant::now()) {
            Seen::First(error) => {
                tracing::warn!(subscription = %self.scope.name, %error, "consumer error");
            }
            Seen::Again => {
                tracing::debug!(subscription = %self.scope.name, error = %err, "consumer error again");
            }
            Seen::Stalled(error) => {
                tracing::error!(
                    subscription = %self.scope.name,
                    %error,
                    "the same consumer error keeps coming: records behind it are not read; \
                     the consumer reports unhealthy until it stops"
                );
                self.monitor.stalled(Some(error));
            }
        }
    }

    /// Forgets the fetch errors that stopped coming, and reports the
    /// consumer healthy again once none stalls it.
    fn forget_quiet_errors(&self, errors: &mut FetchErrors, now: std::time::Instant) {
        let over = errors.forget_quiet(now);
        if over.is_empty() {
            return;
        }
        for error in over {
            tracing::info!(subscription = %self.scope.name, %error, "consumer error stopped coming");
        }
        if !errors.stalled() {
            self.monitor.stalled(None);
        }
    }

    /// Consumes until the run stops or a record stops the consumer, then
    /// commits what was settled.
    async fn run(&self, mut control: RunControl) -> Result<()> {
        let interval = self.scope.app.settings().auto_commit_interval;
        let mut next_commit = Instant::now() + interval;
        let concurrency = self.subscription.concurrency();
        let batch_limit = concurrency.max(if self.subscription.is_parallel() {
            MAX_PARALLEL_BATCH
        } else {
            MAX_HANDLED_IN_TURN
        });
        // Records the next batch takes: the full limit while handlers finish
        // at once (or run in parallel), a few times `concurrency` while they
        // wait (they start as slots free, lanes too), and `concurrency` after
        // a batch that could not start them all, so records do not cycle
        // through `ready`.
        let mut batch_size = batch_limit;
        let mut batch: Vec<PendingRecord<'_>> = Vec::with_capacity(batch_limit);
        let mut seen_revocations = 0;
        let mut paused = Paused::new(self.scope.app.control(&self.scope.name).pauses());
        let mut self_assignment = self
            .subscription
            .assigns_itself()
            .then(|| SelfAssignment::new(self.metadata_refresh_interval()));
        let mut topic_names = TopicNames::default();
        // One stream for the run: `recv` makes one for each message, and
        // registers and unregisters it with the consumer's wakers each time.
        let mut messages = self.consumer.stream();
        let mut partition_queues =
            PartitionQueues::new(self.consumer.clone(), self.subscription.order());
        let assignment_changed = &self.consumer.context().assignment_changed;
        let mut retries = Retries::default();
        // Records held back while their partition was retrying, or left
        // unstarted by the last batch, handled next.
        let mut ready: VecDeque<PendingRecord<'_>> = VecDeque::new();
        // Retries that ended while the loop waited, settled at its top.
        let mut ended_while_waiting = None;
        let mut fetch_errors = FetchErrors::default();
        let mut stall = StallWatch::new(self.subscription.stall_timeout());
        // Retry-stream partitions paused until their first record is due.
        let mut delays = Delays::default();

        let result = loop {
            // A partition's retries that ended: noticed here while records
            // flow, or by the wait below when idle.
            let retried = match ended_while_waiting.take() {
                Some(retried) => Some(retried),
                None if !retries.running.is_empty() => {
                    retries.running.join_next().now_or_never().flatten()
                }
                None => None,
            };
            if let Some(retried) = retried {
                let finished = self.finish_retries(retried, &mut retries, &mut ready);
                if let Err(error) = finished.await.map(|n| control.count(n)) {
                    break Err(error);
                }
            }
            if control.run_stop.is_stopping() {
                break Ok(());
            }
            if !self.tiers.is_empty() {
                if let Err(error) = self.settle_moves().await {
                    break Err(error);
                }
            }
            self.release_due(&mut delays, &mut ready);
            if paused.changed() {
                self.apply_pauses(&mut paused, &mut ready, &retries);
            }
            let now = Instant::now();
            self.forget_quiet_errors(&mut fetch_errors, now.into_std());
            if now >= next_commit {
                self.commit_handled();
                next_commit = now + interval;
            }
            if !stall.is_idle() && now >= stall.next_look {
                self.look_for_stalls(&mut stall, None);
            }
            if let Some(assignment) = self_assignment.as_mut().filter(|a| now >= a.next_look) {
                if let Err(err) = self.assign_new_partitions(assignment).await {
                    tracing::warn!(subscription = %self.scope.name, error = %err, "could not look up partitions to assign; trying again");
                }
            }
            let mut wake_at = self_assignment
                .as_ref()
                .map_or(next_commit, |a| a.next_look.min(next_commit));
            if !stall.is_idle() {
                wake_at = wake_at.min(stall.next_look);
            }
            if let Some(due) = delays.next_due() {
                wake_at = wake_at.min(due);
            }
            // `consume_for` stops at its count, so take no more than it needs.
            let wanted = control.limit.map_or(batch_size, |limit| {
                let left = limit.saturating_sub(control.consumed.load(Ordering::Relaxed));
                left.clamp(1, batch_size)
            });
            while batch.len() < wanted {
                match ready.pop_front() {
                    Some(record) => batch.push(record),
                    None => break,
                }
            }
            // The consumer's own queue, for rebalances and other events (and
            // the records of a partition whose queue could not be opened),
            // once a turn; then records from the partitions' queues.
            match messages.next().now_or_never() {
                Some(Some(Ok(message))) => {
                    let record = PendingRecord::Owned(topic_names.record(&message));
                    if batch.len() < wanted {
                        batch.push(record);
                    } else {
                        ready.push_back(record);
                    }
                }
                Some(Some(Err(err))) => self.fetch_failed(&mut fetch_errors, &err),
                Some(None) | None => {}
            }
            // After the consumer's queue: it may have just assigned partitions.
            partition_queues.follow(&lock(&self.book));
            let errors =
                partition_queues.take(&self.consumer, &mut batch, wanted, &mut topic_names);
            for err in &errors {
                self.fetch_failed(&mut fetch_errors, err);
            }
            if batch.is_empty() {
                if !errors.is_empty() {
                    // A fetch that keeps failing is not retried in a busy loop.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                tokio::select! {
                    biased;
                    _ = control.stop.changed() => {}
                    _ = paused.state.changed() => {
                        // Seen as changed again at the top, and applied there.
                        paused.state.mark_changed();
                    }
                    () = tokio::time::sleep_until(wake_at) => {}
                    Some(ended) = retries.running.join_next(), if !retries.running.is_empty() => {
                        ended_while_waiting = Some(ended);
                    }
                    message = messages.next() => match message {
                        Some(Ok(message)) => {
                            batch.push(PendingRecord::Owned(topic_names.record(&message)));
                        }
                        Some(Err(err)) => {
                            self.fetch_failed(&mut fetch_errors, &err);
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        // librdkafka's streams never end.
                        None => {}
                    },
                    () = partition_queues.readable() => {}
                    // Partitions assigned while waiting: their records come
                    // to queues `partition_queues` reads once it follows.
                    () = assignment_changed.notified() => {}
                }
                if batch.is_empty() {
                    continue;
                }
            }

            retries.hold_back(&mut batch);
            paused.hold_back(&mut batch, self);
            self.drop_revoked(
                &mut batch,
                &mut seen_revocations,
                &mut retries,
                &mut ready,
                &mut paused,
                &mut delays,
            );
            // After the revoked partitions' records are gone, so a hold
            // never outlives its partition's assignment.
            self.hold_until_due(&mut batch, &mut delays);
            if batch.is_empty() {
                continue;
            }
            if self.subscription.order() == RecordOrder::Partition {
                interleave_partitions(&mut batch);
            }

            let started = Instant::now();
            stall.fetched(&batch, started);
            let handled = self
                .handle_batch(&batch, &mut control, &mut next_commit, &mut stall)
                .await;
            self.monitor.metrics.batch_elapsed(
                batch[0].topic(),
                batch[0].partition(),
                started.elapsed(),
            );
            let Some(handled) = handled else {
                // Cancelled by a stop: nothing of this batch is committed
                // (an exactly-once one's transaction is aborted on the way out).
                batch.clear();
                break Ok(());
            };
            let waits_per_batch = handled.waited && !self.subscription.is_parallel();
            // Records the batch did not start run next, in order.
            let mut holds = Holds::default();
            let outcomes =
                set_aside_unstarted(&mut batch, handled.outcomes, &mut ready, &mut holds);
            batch_size = if waits_per_batch {
                WAITING_LOOKAHEAD * concurrency
            } else if !holds.is_empty() {
                concurrency
            } else {
                batch_limit
            };
            let outcomes = if outcomes
                .iter()
                .any(|outcome| retries_first_run(&self.subscription, outcome))
            {
                self.start_retries(&mut batch, outcomes, &mut retries, &holds)
            } else {
                outcomes
            };
            let failure = self
                .settle(
                    &batch,
                    outcomes.into_iter().map(|outcome| (outcome, 1)),
                    &holds,
                )
                .await;
            let settled = batch.len();
            batch.clear();
            if let Some(error) = failure {
                break Err(error);
            }
            if let Err(error) = self.commit_transaction().await {
                break Err(error);
            }
            control.count(settled);
        };
        if !retries.running.is_empty() {
            tracing::warn!(
                subscription = %self.scope.name,
                partitions = retries.running.len(),
                "consumer stopped while records awaited retries; they will be consumed again"
            );
            retries.running.abort_all();
        }
        stall.clear(&self.monitor.metrics);
        self.finish_moves().await;
        // Commit what was handled; a failed record and its partition's later
        // records come back.
        self.commit_before_closing(&mut messages).await;
        result
    }

    /// Removes records of partitions revoked since the last look: their new
    /// owner consumes them from the last commit, so handling them here would
    /// only handle them twice. Records held back for a revoked partition's
    /// retries, or queued after them, are dropped for the same reason.
    fn drop_revoked<'c>(
        &self,
        batch: &mut Vec<PendingRecord<'c>>,
        seen_revocations: &mut u64,
        retries: &mut Retries,
        ready: &mut VecDeque<PendingRecord<'c>>,
        paused: &mut Paused<'c>,
        delays: &mut Delays<'c>,
    ) {
        let book = lock(&self.book);
        if book.revocations == *seen_revocations {
            return;
        }
        drop(book);
        paused.drop_unassigned(self);
        let book = lock(&self.book);
        *seen_revocations = book.revocations;
        let assigned =
            |topic: &Arc<str>, partition| book.assigned.contains(&(topic.clone(), partition));
        let before = batch.len();
        batch.retain(|r| assigned(r.topic(), r.partition()));
        ready.retain(|r| assigned(r.topic(), r.partition()));
        retries
            .held
            .retain(|tp, held| book.owns(tp, held.generation));
        let dropped = delays.drop_unowned(&book);
        if dropped.count() > 0 {
            // Fails only for partitions not assigned, which is fine.
            let _ = self.consumer.resume(&dropped);
        }
        if batch.len() < before {
            tracing::info!(
                subscription = %self.scope.name,
                records = before - batch.len(),
                "records of revoked partitions left to their new owner"
            );
        }
    }

    /// Leaves the group and closes the consumer, waiting at most the
    /// `shutdown_timeout`.
    ///
    /// Closing waits for librdkafka to finish the final rebalance and for
    /// the broker to answer, so it runs on a thread of its own: not on an
    /// async worker, which would stall every task queued behind it (an
    /// embedded broker's among them), nor on tokio's blocking pool, which a
    /// runtime waits for without bound when it shuts down. A broker that has
    /// gone away leaves that thread to finish or to end with the process.
    async fn close(self) {
        let consumer = self.consumer;
        let name = self.scope.name;
        let timeout = self.scope.app.settings().shutdown_timeout;
        let (closed, done) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name(format!("kafkaesk-close-{name}"))
            .spawn(move || {
                consumer.unsubscribe();
                drop(consumer);
                let _ = closed.send(());
            });
        let outcome = match spawned {
            Ok(_) => tokio::time::timeout(timeout, done).await,
            Err(err) => {
                tracing::warn!(subscription = %name, error = %err, "could not start a thread to close the consumer");
                return;
            }
        };
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(_)) => tracing::warn!(subscription = %name, "consumer did not close cleanly"),
            Err(_) => tracing::warn!(
                subscription = %name,
                timeout = ?timeout,
                "consumer did not leave its group within the shutdown timeout; \
                 the broker hands its partitions over once the session times out"
            ),
        }
    }
}

/// Moves the records of `batch` that did not start to the front of `ready`,
/// in order, and holds each of their partitions' offsets before the first of
/// them: records of other keys after it may have been handled, but the
/// partition's commits must not pass it. Returns the outcomes of the records
/// left in `batch`.
fn set_aside_unstarted<'c>(
    batch: &mut Vec<PendingRecord<'c>>,
    outcomes: Vec<Option<Outcome>>,
    ready: &mut VecDeque<PendingRecord<'c>>,
    holds: &mut Holds,
) -> Vec<Outcome> {
    if outcomes.len() == batch.len() && outcomes.iter().all(Option::is_some) {
        return outcomes.into_iter().flatten().collect();
    }
    let mut started = Vec::with_capacity(batch.len());
    let mut started_outcomes = Vec::with_capacity(outcomes.len());
    let mut unstarted = Vec::new();
    let mut outcomes = outcomes.into_iter();
    for record in batch.drain(..) {
        match outcomes.next().flatten() {
            Some(outcome) => {
                started.push(record);
                started_outcomes.push(outcome);
            }
            None => {
                holds.hold(record.topic(), record.partition(), record.offset());
                unstarted.push(record);
            }
        }
    }
    *batch = started;
    for record in unstarted.into_iter().rev() {
        ready.push_front(record);
    }
    started_outcomes
}

/// Reorders `batch` so its partitions take turns, each keeping its own
/// order. Records held back, or left by the last batch, come in runs of one
/// partition; under partition ordering each record of a run after the first
/// would wait for its turn while the batch looked past it for another
/// partition's.
fn interleave_partitions(batch: &mut Vec<PendingRecord<'_>>) {
    let mut runs: Vec<VecDeque<PendingRecord<'_>>> = Vec::new();
    for record in batch.drain(..) {
        match runs.iter_mut().find(|run| {
            run.front()
                .is_some_and(|r| r.partition() == record.partition() && r.topic() == record.topic())
        }) {
            Some(run) => run.push_back(record),
            None => runs.push(VecDeque::from([record])),
        }
    }
    while !runs.is_empty() {
        runs.retain_mut(|run| match run.pop_front() {
            Some(record) => {
                batch.push(record);
                true
            }
            None => false,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Headers;

    fn record(partition: i32, offset: i64) -> PendingRecord<'static> {
        let record = crate::Record::new("t", partition, offset, None, None, Headers::new(), None);
        PendingRecord::Owned(record)
    }

    fn positions<'a>(
        records: impl IntoIterator<Item = &'a PendingRecord<'static>>,
    ) -> Vec<(i32, i64)> {
        records
            .into_iter()
            .map(|r| (r.partition(), r.offset()))
            .collect()
    }

    #[test]
    fn unstarted_records_run_next_in_order_and_hold_their_partitions() {
        let mut batch = vec![
            record(0, 1),
            record(0, 2),
            record(1, 5),
            record(0, 3),
            record(1, 6),
        ];
        // 2 waited for its key; 6 lies past where the batch stopped starting.
        let outcomes = vec![
            Some(Outcome::Handled),
            None,
            Some(Outcome::Handled),
            Some(Outcome::Handled),
        ];
        let mut ready = VecDeque::from([record(0, 4)]);
        let mut holds = Holds::default();
        let left = set_aside_unstarted(&mut batch, outcomes, &mut ready, &mut holds);
        assert_eq!(left.len(), 3);
        assert_eq!(positions(&batch), [(0, 1), (1, 5), (0, 3)]);
        assert_eq!(positions(&ready), [(0, 2), (1, 6), (0, 4)]);
        let topic: Arc<str> = "t".into();
        assert_eq!(holds.of(&topic, 0), Some(2));
        assert_eq!(holds.of(&topic, 1), Some(6));
        assert!(holds.passes(&topic, 0, 3), "3 ran, but 2 did not");
    }

    #[test]
    fn a_batch_that_started_every_record_holds_nothing() {
        let mut batch = vec![record(0, 1), record(1, 5)];
        let outcomes = vec![Some(Outcome::Handled), Some(Outcome::Handled)];
        let mut ready = VecDeque::new();
        let mut holds = Holds::default();
        let left = set_aside_unstarted(&mut batch, outcomes, &mut ready, &mut holds);
        assert_eq!(left.len(), 2);
        assert_eq!(batch.len(), 2);
        assert!(ready.is_empty() && holds.is_empty());
    }
}
