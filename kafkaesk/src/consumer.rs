//! Batch consumers: one per subscription, in its own consumer group.
//!
//! Each consumer takes the records librdkafka has fetched, in batches, and
//! runs the handler on them in order, at most `concurrency` at once; a
//! handler that exceeds the subscription's `timeout` is cancelled. Handlers
//! that finish without waiting run back to back, up to 64 records (or 20 ms)
//! between polls of the consumer, so the bookkeeping of a batch is paid once
//! for many records; waiting handlers go `concurrency` at a time. No record
//! is started after one fails, so a failure never has records of its
//! partition run ahead of it.
//!
//! Handlers decode straight from librdkafka's buffers: a record is copied
//! into an owned [`Record`] only when a handler asks for it (or for its
//! [`Subscriber`]), or when it must outlive the batch (retries, dead letters).
//!
//! # Commits and delivery guarantees
//!
//! Messages are consumed **at least once**. An offset is committed only after
//! its record was handled, or deliberately skipped because it could not be
//! decoded. With `auto_commit` (the default) handled offsets are committed
//! every `auto_commit_interval`, before partitions are revoked in a rebalance,
//! and at shutdown. Without it, handlers commit through [`Subscriber::commit`].
//!
//! By default a handler that returns an error, panics or times out stops its
//! consumer: the records of the batch before it in its partition are
//! committed, the failed record and those behind it are not, the
//! application's run returns the error, and they come back after a restart. A subscription's
//! [`ErrorPolicy`] can retry, skip or dead-letter instead; a retrying record
//! pauses only its own partition (see [`policy`]).
//!
//! # Topics and patterns
//!
//! Subscriptions are fnmatch patterns over stream names with the topic prefix
//! applied, turned into a regular-expression subscription. Matching topics
//! created later are picked up when librdkafka refreshes its metadata, every
//! `topic.metadata.refresh.interval.ms` (5 s by default here, overridable
//! through `kafka_settings`).
//!
//! New consumer groups start from the earliest offset (`auto.offset.reset`),
//! so a group sees messages published before it first joined.

use std::collections::{HashMap, HashSet, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaResult;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::app::{lock, set_default_setting, Application, ConsumerHealth, SubscriptionCounters};
use crate::error::{BoxError, Error, RecordPosition, Result};
use crate::extract::{MessageContext, Rejection};
use crate::handler::HandlerFuture;
use crate::policy::{self, ErrorPolicy, FinalAction};
use crate::publish::{Publish, RawPublish};
use crate::record::{Headers, PendingRecord, Record, RecordSource, TopicNames};
use crate::router::{Streams, Subscription};
use crate::topics::fnmatch_to_regex;

type TopicPartition = (Arc<str>, i32);

/// Most records one batch runs when its handlers finish without waiting,
/// whatever the concurrency: see [`Worker::handle_batch`].
const MAX_HANDLED_IN_TURN: usize = 64;

/// How long a batch goes on starting records past its concurrency.
const HANDLED_IN_TURN_FOR: Duration = Duration::from_millis(20);

/// Records started between two readings of the clock past the concurrency:
/// reading it costs about a fifth of a quick handler.
const RECORDS_PER_CLOCK_READING: usize = 8;

/// How a run is controlled from [`Application`]: when to stop, and how many
/// records all consumers have handled.
pub(crate) struct RunControl {
    pub(crate) stop: watch::Receiver<bool>,
    pub(crate) stop_all: Arc<watch::Sender<bool>>,
    pub(crate) consumed: Arc<AtomicUsize>,
    pub(crate) limit: Option<usize>,
}

/// Offsets shared between the consumer loop and librdkafka's rebalance callbacks.
#[derive(Default)]
struct OffsetBook {
    /// Next offset to read, per partition, for records handled or skipped.
    processed: HashMap<TopicPartition, i64>,
    /// What the broker last confirmed as committed.
    committed: HashMap<TopicPartition, i64>,
    assigned: HashSet<TopicPartition>,
    /// How many revocations happened, so the consumer loop notices one cheaply.
    revocations: u64,
    /// The revocation count at each partition's latest revocation.
    revoked_at: HashMap<TopicPartition, u64>,
}

impl OffsetBook {
    fn uncommitted(&self, only: Option<&HashSet<TopicPartition>>) -> TopicPartitionList {
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
        tpl
    }

    /// Whether the partition is assigned and was not revoked since the
    /// revocation count was `generation`.
    fn owns(&self, tp: &TopicPartition, generation: u64) -> bool {
        self.assigned.contains(tp) && self.revoked_at.get(tp).is_none_or(|&at| at <= generation)
    }

    fn confirm(&mut self, tpl: &TopicPartitionList) {
        for elem in tpl.elements() {
            if let Offset::Offset(offset) = elem.offset() {
                self.committed
                    .insert((Arc::from(elem.topic()), elem.partition()), offset);
            }
        }
    }
}

/// librdkafka context of a subscription's consumer.
pub(crate) struct ConsumerCtx {
    app: Application,
    subscription: String,
    auto_commit: bool,
    book: Arc<Mutex<OffsetBook>>,
}

impl ClientContext for ConsumerCtx {}

impl ConsumerContext for ConsumerCtx {
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
                match consumer.commit(&tpl, CommitMode::Sync) {
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
        let mut book = lock(&self.book);
        book.revocations += 1;
        let generation = book.revocations;
        for tp in &revoked {
            book.revoked_at.insert(tp.clone(), generation);
            book.processed.remove(tp);
            book.committed.remove(tp);
            book.assigned.remove(tp);
        }
        let assigned = sorted(&book.assigned);
        drop(book);
        self.app
            .update_consumer_health(&self.subscription, |h| h.assigned = assigned);
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let mut book = lock(&self.book);
                for elem in tpl.elements() {
                    book.assigned
                        .insert((Arc::from(elem.topic()), elem.partition()));
                }
                let assigned = sorted(&book.assigned);
                drop(book);
                let topics: Vec<&str> = {
                    let mut t: Vec<&str> = assigned.iter().map(|(t, _)| t.as_str()).collect();
                    t.dedup();
                    t
                };
                tracing::info!(
                    subscription = %self.subscription,
                    topics = %topics.join(","),
                    partitions = assigned.len(),
                    "partitions assigned"
                );
                self.app
                    .update_consumer_health(&self.subscription, |h| h.assigned = assigned);
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
            Err(err) => tracing::warn!(
                subscription = %self.subscription,
                error = %err,
                "offset commit failed; it is retried at the next commit"
            ),
        }
    }
}

fn sorted(set: &HashSet<TopicPartition>) -> Vec<(String, i32)> {
    let mut v: Vec<_> = set.iter().map(|(t, p)| (t.to_string(), *p)).collect();
    v.sort();
    v
}

type KafkaConsumer = StreamConsumer<ConsumerCtx>;

/// The regular expression a subscription subscribes with.
pub(crate) fn subscription_regex(prefix: &str, streams: &Streams) -> String {
    match streams {
        Streams::Pattern(pattern) => fnmatch_to_regex(prefix, pattern),
        Streams::List(list) => {
            let alternatives: Vec<String> = list
                .iter()
                .map(|s| {
                    let anchored = fnmatch_to_regex(prefix, s);
                    anchored[1..anchored.len() - 1].to_owned()
                })
                .collect();
            format!("^({})$", alternatives.join("|"))
        }
    }
}

enum Outcome {
    Handled,
    Unhandled(Rejection),
    Failed(BoxError),
    Panicked(String),
    TimedOut(Duration),
}

impl Outcome {
    fn of(result: std::result::Result<(), BoxError>) -> Outcome {
        match result {
            Ok(()) => Outcome::Handled,
            Err(err) => Outcome::Failed(err),
        }
    }

    /// The outcome as the error kafkaesk reports, `None` when handled.
    fn into_error(
        self,
        subscription: &str,
        position: impl FnOnce() -> RecordPosition,
    ) -> Option<Error> {
        // The position is built only for an error: most records are handled.
        Some(match self {
            Outcome::Handled => return None,
            Outcome::Unhandled(rejection) => Error::Unhandled {
                position: position(),
                reason: rejection.reason().to_owned(),
            },
            Outcome::Failed(source) => Error::Handler {
                subscription: subscription.to_owned(),
                position: position(),
                source,
            },
            Outcome::Panicked(message) => Error::HandlerPanic {
                subscription: subscription.to_owned(),
                position: position(),
                message,
            },
            Outcome::TimedOut(timeout) => Error::HandlerTimeout {
                subscription: subscription.to_owned(),
                position: position(),
                timeout,
            },
        })
    }

    /// Whether the handler failed: an error, a panic or a timeout.
    fn is_failure(&self) -> bool {
        matches!(
            self,
            Outcome::Failed(_) | Outcome::Panicked(_) | Outcome::TimedOut(_)
        )
    }
}

/// Runs one subscription until the run is stopped or its handler fails.
pub(crate) async fn run_subscription(
    app: Application,
    subscription: Subscription,
    control: RunControl,
) -> Result<()> {
    let worker = Worker::start(app.clone(), subscription)?;
    app.set_consumer_health(ConsumerHealth {
        subscription: worker.scope.name.to_string(),
        group: worker.subscription.group_id().to_owned(),
        running: true,
        assigned: Vec::new(),
    });
    let result = worker.run(control).await;
    app.update_consumer_health(&worker.scope.name, |h| {
        h.running = false;
        h.assigned.clear();
    });
    worker.close().await;
    result
}

struct Worker {
    scope: HandlerScope,
    subscription: Subscription,
    consumer: Arc<KafkaConsumer>,
    book: Arc<Mutex<OffsetBook>>,
    counters: Arc<SubscriptionCounters>,
    auto_commit: bool,
}

impl Worker {
    fn start(app: Application, subscription: Subscription) -> Result<Self> {
        let settings = app.settings();
        let name: Arc<str> = subscription.shared_name().clone();
        let mut config = settings.client_config()?;
        config.set("group.id", subscription.group_id());
        config.set("enable.auto.commit", "false");
        config.set("enable.auto.offset.store", "false");
        set_default_setting(&mut config, settings, "auto.offset.reset", "earliest");
        set_default_setting(
            &mut config,
            settings,
            "topic.metadata.refresh.interval.ms",
            "5000",
        );
        // Bound the prefetch so a backlog never grows the heap (per partition).
        set_default_setting(&mut config, settings, "queued.max.messages.kbytes", "16384");
        // With the prefetch full, librdkafka waits this long before fetching
        // again (1 s by default), which stalls a consumer that drains its
        // queue quickly; the check is local and cheap.
        set_default_setting(&mut config, settings, "fetch.queue.backoff.ms", "10");
        let book = Arc::new(Mutex::new(OffsetBook::default()));
        let context = ConsumerCtx {
            app: app.clone(),
            subscription: name.to_string(),
            auto_commit: settings.auto_commit,
            book: book.clone(),
        };
        let consumer: KafkaConsumer = config.create_with_context(context)?;
        let regex = subscription_regex(&settings.topic_prefix, subscription.stream_spec());
        consumer.subscribe(&[&regex])?;
        tracing::info!(
            subscription = %name,
            streams = %subscription.stream_spec(),
            group = subscription.group_id(),
            regex = %regex,
            "subscribed"
        );
        let consumer = Arc::new(consumer);
        Ok(Worker {
            counters: app.counters(&name),
            auto_commit: settings.auto_commit,
            scope: HandlerScope {
                consumer: Arc::downgrade(&consumer),
                app,
                name,
            },
            subscription,
            consumer,
            book,
        })
    }

    async fn run(&self, mut control: RunControl) -> Result<()> {
        let interval = self.scope.app.settings().auto_commit_interval;
        let mut next_commit = Instant::now() + interval;
        let concurrency = self.subscription.concurrency_limit();
        let batch_limit = concurrency.max(MAX_HANDLED_IN_TURN);
        // Records the next batch takes: the full limit while handlers finish
        // at once, `concurrency` after a batch that could not start them all,
        // so waiting handlers do not cycle records through `ready`.
        let mut batch_size = batch_limit;
        let mut batch: Vec<PendingRecord<'_>> = Vec::with_capacity(batch_limit);
        let mut seen_revocations = 0;
        let mut topic_names = TopicNames::default();
        let mut retries = Retries::default();
        // Records held back while their partition was retrying, or left
        // unstarted by the last batch, handled next.
        let mut ready: VecDeque<PendingRecord<'_>> = VecDeque::new();
        // Retries that ended while the loop waited, settled at its top.
        let mut ended_while_waiting = None;

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
                if let Err(error) = finished.await.map(|n| self.count(&control, n)) {
                    break Err(error);
                }
            }
            if *control.stop.borrow() {
                break Ok(());
            }
            let now = Instant::now();
            if now >= next_commit {
                self.commit(CommitMode::Async);
                next_commit = now + interval;
            }
            if ready.is_empty() {
                // While records are waiting, take one without setting up the
                // wait below: stop and commits are checked above.
                let message = match self.consumer.recv().now_or_never() {
                    Some(message) => message,
                    None => tokio::select! {
                        biased;
                        _ = control.stop.changed() => continue,
                        () = tokio::time::sleep_until(next_commit) => continue,
                        Some(ended) = retries.running.join_next(), if !retries.running.is_empty() => {
                            ended_while_waiting = Some(ended);
                            continue;
                        }
                        message = self.consumer.recv() => message,
                    },
                };
                match message {
                    Ok(message) => batch.push(topic_names.pending(message)),
                    Err(err) => {
                        tracing::warn!(subscription = %self.scope.name, error = %err, "consumer error");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                }
            }
            // `consume_for` stops at its count, so take no more than it needs.
            let wanted = control.limit.map_or(batch_size, |limit| {
                let left = limit.saturating_sub(control.consumed.load(Ordering::Relaxed));
                left.clamp(1, batch_size)
            });
            while batch.len() < wanted {
                if let Some(record) = ready.pop_front() {
                    batch.push(record);
                    continue;
                }
                match self.consumer.recv().now_or_never() {
                    Some(Ok(message)) => batch.push(topic_names.pending(message)),
                    Some(Err(err)) => {
                        tracing::warn!(subscription = %self.scope.name, error = %err, "consumer error");
                        break;
                    }
                    None => break,
                }
            }

            retries.hold_back(&mut batch);
            self.drop_revoked(&mut batch, &mut seen_revocations, &mut retries, &mut ready);
            if batch.is_empty() {
                continue;
            }

            let Some((outcomes, waited)) = self.handle_batch(&batch, &mut control.stop).await
            else {
                // Cancelled by a stop: nothing of this batch is committed.
                batch.clear();
                break Ok(());
            };
            batch_size = if waited || outcomes.len() < batch.len() {
                concurrency
            } else {
                batch_limit
            };
            // Records the batch did not start run next, in order.
            for record in batch.drain(outcomes.len()..).rev() {
                ready.push_front(record);
            }
            let policy = self.subscription.error_policy();
            let outcomes = if outcomes.iter().any(|o| retry_delay(policy, o, 1).is_some()) {
                self.start_retries(&mut batch, outcomes, &mut retries)
            } else {
                outcomes
            };
            let failure = self
                .settle(&batch, outcomes.into_iter().map(|outcome| (outcome, 1)))
                .await;
            let settled = batch.len();
            batch.clear();
            if let Some(error) = failure {
                break Err(error);
            }
            self.count(&control, settled);
        };
        if !retries.running.is_empty() {
            tracing::warn!(
                subscription = %self.scope.name,
                partitions = retries.running.len(),
                "consumer stopped while records awaited retries; they will be consumed again"
            );
            retries.running.abort_all();
        }
        // Commit what was handled; a failed record and its partition's later
        // records come back.
        self.commit(CommitMode::Sync);
        result
    }

    /// Counts `settled` records toward the run's limit, and stops the run once
    /// it is reached.
    fn count(&self, control: &RunControl, settled: usize) {
        let total = control.consumed.fetch_add(settled, Ordering::SeqCst) + settled;
        if control.limit.is_some_and(|limit| total >= limit) {
            control.stop_all.send_replace(true);
        }
    }

    /// Removes records of partitions revoked since the last look: their new
    /// owner consumes them from the last commit, so handling them here would
    /// only handle them twice. Records held back for a revoked partition's
    /// retries, or queued after them, are dropped for the same reason.
    fn drop_revoked(
        &self,
        batch: &mut Vec<PendingRecord<'_>>,
        seen_revocations: &mut u64,
        retries: &mut Retries,
        ready: &mut VecDeque<PendingRecord<'_>>,
    ) {
        let book = lock(&self.book);
        if book.revocations == *seen_revocations {
            return;
        }
        *seen_revocations = book.revocations;
        let assigned =
            |topic: &Arc<str>, partition| book.assigned.contains(&(topic.clone(), partition));
        let before = batch.len();
        batch.retain(|r| assigned(r.topic(), r.partition()));
        ready.retain(|r| assigned(r.topic(), r.partition()));
        retries
            .held
            .retain(|tp, held| book.owns(tp, held.generation));
        if batch.len() < before {
            tracing::info!(
                subscription = %self.scope.name,
                records = before - batch.len(),
                "records of revoked partitions left to their new owner"
            );
        }
    }

    /// Runs the handler on the batch's records in order, up to the
    /// subscription's `concurrency` at once, and returns the outcomes of
    /// those it started; the others are left for the next batch.
    ///
    /// Records past the first `concurrency` are started only while every
    /// handler so far finished at its first poll, for at most
    /// [`HANDLED_IN_TURN_FOR`]: that runs quick handlers back to back without
    /// the consumer's bookkeeping between each, yet waiting handlers still go
    /// `concurrency` at a time between polls of the consumer. Nothing is
    /// started after a failure, so a failed record's partition does not run
    /// ahead of it. Also says whether a handler had to wait. Returns `None`
    /// if a stop cancelled the batch after the shutdown timeout.
    async fn handle_batch(
        &self,
        batch: &[PendingRecord<'_>],
        stop: &mut watch::Receiver<bool>,
    ) -> Option<(Vec<Outcome>, bool)> {
        let concurrency = self.subscription.concurrency_limit();
        let work = async {
            let mut outcomes: Vec<Outcome> = Vec::with_capacity(batch.len());
            let mut running = FuturesUnordered::new();
            let mut in_flight = 0;
            let mut waited = false;
            let mut failed = false;
            let mut in_turn_until = None;
            loop {
                std::future::poll_fn(|cx| {
                    // Borrowed mutably so the wait needs `running` to be Send
                    // only; `push` takes `&self`, which would need Sync.
                    let running = &mut running;
                    while let Some(record) = batch.get(outcomes.len()) {
                        let index = outcomes.len();
                        if failed || in_flight >= concurrency {
                            break;
                        }
                        if index >= concurrency {
                            if waited {
                                break;
                            }
                            if (index - concurrency) % RECORDS_PER_CLOCK_READING == 0 {
                                let now = std::time::Instant::now();
                                let until = *in_turn_until.get_or_insert(now + HANDLED_IN_TURN_FOR);
                                if now >= until {
                                    break;
                                }
                            }
                        }
                        match self.start_handler(record, cx) {
                            Started::Finished(outcome) => {
                                failed |= outcome.is_failure();
                                outcomes.push(outcome);
                            }
                            Started::Running(future) => {
                                waited = true;
                                in_flight += 1;
                                // A placeholder, replaced once the handler is done.
                                outcomes.push(Outcome::Handled);
                                running.push(async move {
                                    (index, await_handler(&self.subscription, future).await)
                                });
                            }
                        }
                    }
                    Poll::Ready(())
                })
                .await;
                let Some((index, outcome)) = running.next().await else {
                    break;
                };
                in_flight -= 1;
                failed |= outcome.is_failure();
                outcomes[index] = outcome;
            }
            (outcomes, waited)
        };
        let grace = self.scope.app.settings().shutdown_timeout;
        let cancel_after_stop = async {
            let _ = stop.wait_for(|stopped| *stopped).await;
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            handled = work => Some(handled),
            () = cancel_after_stop => {
                tracing::warn!(
                    subscription = %self.scope.name,
                    records = batch.len(),
                    "in-flight handlers cancelled at shutdown; their records will be consumed again"
                );
                None
            }
        }
    }

    /// Starts the handler on `record`: see [`start`].
    fn start_handler(&self, record: &PendingRecord<'_>, cx: &mut Context<'_>) -> Started {
        start(&self.scope, &self.subscription, record.source(), cx)
    }

    /// Takes the records of every partition with a record to retry out of
    /// the batch, pauses those partitions and retries in the background, so
    /// the other partitions go on. Returns the outcomes of the records left.
    fn start_retries(
        &self,
        batch: &mut Vec<PendingRecord<'_>>,
        outcomes: Vec<Outcome>,
        retries: &mut Retries,
    ) -> Vec<Outcome> {
        let policy = self.subscription.error_policy();
        let retrying: HashSet<TopicPartition> = batch
            .iter()
            .zip(&outcomes)
            .filter(|(_, outcome)| retry_delay(policy, outcome, 1).is_some())
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
                    counters: self.counters.clone(),
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
    async fn finish_retries(
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
                    ready.extend(held.records.into_iter().map(PendingRecord::Owned));
                }
            }
        }
        if !retries.held.contains_key(tp) {
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
        match self.settle(&records, outcomes.into_iter()).await {
            Some(error) => Err(error),
            None => Ok(records.len()),
        }
    }

    /// Applies the error policy to failed records, then records the offsets
    /// of the batch's records, each partition up to its first record that
    /// stops the consumer. Returns the first such failure.
    async fn settle(
        &self,
        batch: &[PendingRecord<'_>],
        outcomes: impl Iterator<Item = (Outcome, u32)>,
    ) -> Option<Error> {
        let mut failure = None;
        // Per partition: the next offset to read, and whether a record that
        // stops the consumer was met (what follows it comes back).
        let mut next: Vec<(&Arc<str>, i32, Option<i64>, bool)> = Vec::new();
        // Counted once per batch: the counter is shared with health checks.
        let mut handled = 0;
        for (record, (outcome, runs)) in batch.iter().zip(outcomes) {
            let stopping = match outcome {
                Outcome::Handled => {
                    handled += 1;
                    None
                }
                outcome => self.settle_record(record, outcome, runs).await,
            };
            let (topic, partition) = (record.topic(), record.partition());
            let index = match next
                .iter()
                .position(|(t, p, ..)| *p == partition && *t == topic)
            {
                Some(index) => index,
                None => {
                    next.push((topic, partition, None, false));
                    next.len() - 1
                }
            };
            let (_, _, offset, stopped) = &mut next[index];
            match stopping {
                Some(error) => {
                    *stopped = true;
                    failure.get_or_insert(error);
                }
                None if !*stopped => *offset = Some(record.offset() + 1),
                None => {}
            }
        }
        if handled > 0 {
            self.counters.handled.fetch_add(handled, Ordering::Relaxed);
        }
        // One next offset per partition, so the book is locked once per batch.
        let mut book = lock(&self.book);
        for (topic, partition, offset, _) in next {
            let Some(offset) = offset else { continue };
            let tp = (topic.clone(), partition);
            // A record from a partition revoked meanwhile belongs to another member now.
            if !book.assigned.contains(&tp) {
                continue;
            }
            let entry = book.processed.entry(tp).or_insert(offset);
            *entry = (*entry).max(offset);
        }
        failure
    }

    /// Counts one unhandled or failed record and applies the error policy to a
    /// failure. Returns the error if the record stops the consumer.
    async fn settle_record(
        &self,
        record: &PendingRecord<'_>,
        outcome: Outcome,
        runs: u32,
    ) -> Option<Error> {
        let error = match outcome.into_error(&self.scope.name, || record.position()) {
            // Handled records are counted by `settle`, once per batch.
            None => return None,
            Some(err @ Error::Unhandled { .. }) => {
                self.counters.unhandled.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    subscription = %self.scope.name,
                    topic = %record.topic(),
                    partition = record.partition(),
                    offset = record.offset(),
                    "{err}; skipped"
                );
                return None;
            }
            Some(err) => err,
        };
        self.counters.failed.fetch_add(1, Ordering::Relaxed);
        match self.subscription.error_policy().final_action() {
            FinalAction::Skip => {
                self.counters.skipped.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    subscription = %self.scope.name,
                    error = %error,
                    attempts = runs,
                    "handler failed; record skipped by the error policy"
                );
            }
            FinalAction::DeadLetter(stream) => {
                match self.dead_letter(stream, record, &error, runs).await {
                    Ok(()) => {
                        self.counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(
                            subscription = %self.scope.name,
                            error = %error,
                            attempts = runs,
                            dead_letter = %stream,
                            "handler failed; record dead-lettered"
                        );
                    }
                    Err(dlq_error) => {
                        tracing::error!(
                            subscription = %self.scope.name,
                            error = %error,
                            dead_letter = %stream,
                            dead_letter_error = %dlq_error,
                            "handler failed and the dead-letter write failed; stopping consumer"
                        );
                        return Some(error);
                    }
                }
            }
            FinalAction::Stop => {
                tracing::error!(subscription = %self.scope.name, error = %error, "handler failed; stopping consumer");
                return Some(error);
            }
        }
        None
    }

    /// Publishes the original record, untouched, to the dead-letter stream and
    /// waits for the broker's acknowledgement.
    async fn dead_letter(
        &self,
        stream: &str,
        record: &PendingRecord<'_>,
        error: &Error,
        runs: u32,
    ) -> Result<()> {
        let record = record.to_record();
        let failure = Headers::new()
            .with(policy::DLQ_ERROR, error.to_string())
            .with(policy::DLQ_TOPIC, record.topic())
            .with(policy::DLQ_PARTITION, record.partition().to_string())
            .with(policy::DLQ_OFFSET, record.offset().to_string())
            .with(policy::DLQ_ATTEMPTS, runs.to_string())
            .with(policy::DLQ_SUBSCRIPTION, &*self.scope.name)
            .with(policy::DLQ_GROUP, self.subscription.group_id());
        self.scope
            .app
            .raw_publish(stream, record.value().to_vec())
            .maybe_key(record.key())
            .headers(record.headers())
            .headers(&failure)
            .await?
            .await
            .map(|_| ())
    }

    fn commit(&self, mode: CommitMode) {
        if !self.auto_commit {
            return;
        }
        let tpl = lock(&self.book).uncommitted(None);
        if tpl.count() == 0 {
            return;
        }
        match self.consumer.commit(&tpl, mode) {
            Ok(()) if matches!(mode, CommitMode::Sync) => lock(&self.book).confirm(&tpl),
            Ok(()) => {}
            Err(err) => {
                tracing::warn!(subscription = %self.scope.name, error = %err, "offset commit failed")
            }
        }
    }

    /// Leaves the group and closes the consumer, off the async threads: closing
    /// waits for librdkafka to finish the final rebalance.
    async fn close(self) {
        let consumer = self.consumer;
        let name = self.scope.name;
        let closed = tokio::task::spawn_blocking(move || {
            consumer.unsubscribe();
            drop(consumer);
        })
        .await;
        if closed.is_err() {
            tracing::warn!(subscription = %name, "consumer did not close cleanly");
        }
    }
}

/// How long to wait before running the handler again after its `runs`-th
/// run ended with `outcome`, or `None` if it is not run again.
fn retry_delay(policy: &ErrorPolicy, outcome: &Outcome, runs: u32) -> Option<Duration> {
    if !outcome.is_failure() {
        return None;
    }
    let retry = policy.retries()?;
    (runs <= retry.attempts).then(|| retry.delay(runs))
}

fn partition_list(tp: &TopicPartition) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&tp.0, tp.1);
    tpl
}

/// The partitions whose failed records are being retried in the background.
#[derive(Default)]
struct Retries {
    /// Per retrying partition, its records fetched meanwhile, handled once
    /// the retries end so the partition stays in order.
    held: HashMap<TopicPartition, Held>,
    running: JoinSet<Retried>,
}

struct Held {
    /// The revocation count when the retries began.
    generation: u64,
    records: Vec<Record>,
}

impl Retries {
    /// Moves the batch's records of retrying partitions aside.
    fn hold_back(&mut self, batch: &mut Vec<PendingRecord<'_>>) {
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
struct Retried {
    tp: TopicPartition,
    generation: u64,
    records: Vec<Record>,
    /// The outcomes, or what panicked while retrying.
    outcomes: std::result::Result<Vec<(Outcome, u32)>, String>,
}

/// Retries the failed records of one partition, off the consumer loop.
struct RetryRun {
    scope: HandlerScope,
    subscription: Subscription,
    book: Arc<Mutex<OffsetBook>>,
    counters: Arc<SubscriptionCounters>,
    tp: TopicPartition,
    generation: u64,
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
            .map_err(|payload| panic_message(&payload));
        Retried {
            tp: self.tp.clone(),
            generation: self.generation,
            records,
            outcomes,
        }
    }

    /// Runs the handler again on `record` until it succeeds, the attempts
    /// are used up, or the partition is revoked. Returns the last outcome and
    /// how many times the handler ran.
    async fn retry(&self, record: &Record, mut outcome: Outcome) -> (Outcome, u32) {
        let mut runs = 1;
        while let Some(delay) = retry_delay(self.subscription.error_policy(), &outcome, runs) {
            self.counters.retried.fetch_add(1, Ordering::Relaxed);
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

/// The first run of a handler on a record, up to its first await.
enum Started {
    Finished(Outcome),
    Running(HandlerFuture),
}

impl Started {
    /// The outcome of the run, awaiting the handler if it is still running.
    async fn outcome(self, subscription: &Subscription) -> Outcome {
        match self {
            Started::Finished(outcome) => outcome,
            Started::Running(future) => await_handler(subscription, future).await,
        }
    }
}

/// Decodes the record for the subscription's handler and polls the handler
/// once, with panics caught.
fn start(
    scope: &HandlerScope,
    subscription: &Subscription,
    record: RecordSource<'_>,
    cx: &mut Context<'_>,
) -> Started {
    let handler = subscription.handler();
    std::panic::catch_unwind(AssertUnwindSafe(|| {
        match handler.call(MessageContext::new(record, scope)) {
            Err(rejection) => Started::Finished(Outcome::Unhandled(rejection)),
            Ok(mut future) => match future.as_mut().poll(cx) {
                Poll::Ready(result) => Started::Finished(Outcome::of(result)),
                Poll::Pending => Started::Running(future),
            },
        }
    }))
    .unwrap_or_else(|payload| Started::Finished(Outcome::Panicked(panic_message(&payload))))
}

/// Awaits a handler that did not finish at its first poll, with panics caught
/// and the subscription's timeout applied.
async fn await_handler(subscription: &Subscription, future: HandlerFuture) -> Outcome {
    let run = AssertUnwindSafe(future)
        .catch_unwind()
        .map(|result| match result {
            Ok(result) => Outcome::of(result),
            Err(payload) => Outcome::Panicked(panic_message(&payload)),
        });
    match subscription.handler_timeout() {
        Some(timeout) => tokio::time::timeout(timeout, run)
            .await
            .unwrap_or(Outcome::TimedOut(timeout)),
        None => run.await,
    }
}

/// Decodes `record` for the subscription's handler and runs it once: panics
/// caught, the timeout applied.
async fn run_once(scope: &HandlerScope, subscription: &Subscription, record: &Record) -> Outcome {
    let mut first = true;
    let started = std::future::poll_fn(|cx| {
        if std::mem::take(&mut first) {
            Poll::Ready(start(scope, subscription, RecordSource::Owned(record), cx))
        } else {
            Poll::Pending
        }
    })
    .await;
    started.outcome(subscription).await
}

/// [`Subscription::handle_record`]: one run of the handler, without a consumer.
pub(crate) async fn handle_detached(
    app: &Application,
    subscription: &Subscription,
    record: Record,
) -> Result<()> {
    let scope = HandlerScope {
        app: app.clone(),
        name: subscription.shared_name().clone(),
        consumer: Weak::new(),
    };
    let outcome = run_once(&scope, subscription, &record).await;
    outcome
        .into_error(&scope.name, || record.position())
        .map_or(Ok(()), Err)
}

/// What a handler's context draws on besides the record: the application,
/// the subscription's name and its consumer.
#[derive(Clone)]
pub(crate) struct HandlerScope {
    app: Application,
    name: Arc<str>,
    consumer: Weak<KafkaConsumer>,
}

impl HandlerScope {
    pub(crate) fn app(&self) -> &Application {
        &self.app
    }

    /// The subscriber a handler sees for `record`.
    pub(crate) fn subscriber(&self, record: Record) -> Subscriber {
        Subscriber {
            app: self.app.clone(),
            record,
            subscription: self.name.clone(),
            consumer: self.consumer.clone(),
        }
    }
}

fn panic_message(payload: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// The consumer handling the current record, as a handler sees it.
///
/// Publish from a handler with [`publish`](Self::publish) to carry the
/// consumed record's headers along, forward records with
/// [`forward`](Self::forward), and commit by hand with [`commit`](Self::commit)
/// when `auto_commit` is off.
#[derive(Clone)]
pub struct Subscriber {
    app: Application,
    record: Record,
    subscription: Arc<str>,
    consumer: Weak<KafkaConsumer>,
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("subscription", &self.subscription)
            .field("record", &self.record.position())
            .finish_non_exhaustive()
    }
}

impl Subscriber {
    /// The application.
    pub fn app(&self) -> &Application {
        &self.app
    }

    /// The record being handled.
    pub fn record(&self) -> &Record {
        &self.record
    }

    /// The stream the record came from: its topic without the application's prefix.
    pub fn stream(&self) -> &str {
        let topic = self.record.topic();
        topic
            .strip_prefix(self.app.settings().topic_prefix.as_str())
            .unwrap_or(topic)
    }

    /// The subscription's name.
    pub fn subscription(&self) -> &str {
        &self.subscription
    }

    /// Publishes new data carrying the consumed record's headers.
    pub fn publish<'a, T>(&'a self, stream: &'a str, data: &'a T) -> Publish<'a, T>
    where
        T: Serialize + schemars::JsonSchema + Sync + 'static,
    {
        self.app
            .publish(stream, data)
            .headers(self.record.headers())
    }

    /// Republishes `record` to `stream` untouched: same value and key, its
    /// headers plus `extra`.
    pub fn forward<'a>(
        &'a self,
        stream: &'a str,
        record: &Record,
        extra: &Headers,
    ) -> RawPublish<'a> {
        self.app
            .raw_publish(stream, record.value().to_vec())
            .maybe_key(record.key())
            .headers(record.headers())
            .headers(extra)
    }

    /// Commits the current record's offset (the next offset to read is the one after it).
    ///
    /// For applications with `auto_commit` off. With concurrency above 1,
    /// commit only once every earlier record of the partition is handled.
    pub async fn commit(&self) -> Result<()> {
        let consumer = self.consumer.upgrade().ok_or(Error::Stopped)?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(
            self.record.topic(),
            self.record.partition(),
            Offset::Offset(self.record.offset() + 1),
        )?;
        tokio::task::spawn_blocking(move || consumer.commit(&tpl, CommitMode::Sync))
            .await
            .map_err(|_| Error::Stopped)?
            .map_err(Error::Kafka)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_lists_become_one_anchored_alternation() {
        let re = subscription_regex("p.", &Streams::List(vec!["a.b".into(), "c".into()]));
        assert_eq!(re, r"^(p\.a\.b|p\.c)$");
        let re = regex::Regex::new(&re).unwrap();
        assert!(re.is_match("p.a.b") && re.is_match("p.c"));
        assert!(!re.is_match("p.axb") && !re.is_match("p.cd"));
    }

    #[test]
    fn a_partition_revoked_since_a_generation_is_no_longer_owned() {
        let tp: TopicPartition = ("t".into(), 0);
        let mut book = OffsetBook::default();
        book.assigned.insert(tp.clone());
        assert!(book.owns(&tp, 0));
        // Revoked (generation 1), then assigned again.
        book.revocations = 1;
        book.revoked_at.insert(tp.clone(), 1);
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
    fn only_changed_offsets_are_committed() {
        let mut book = OffsetBook::default();
        book.processed.insert(("t".into(), 0), 5);
        book.processed.insert(("t".into(), 1), 7);
        book.committed.insert(("t".into(), 1), 7);
        let tpl = book.uncommitted(None);
        assert_eq!(tpl.count(), 1);
        book.confirm(&tpl);
        assert_eq!(book.uncommitted(None).count(), 0);
    }
}
