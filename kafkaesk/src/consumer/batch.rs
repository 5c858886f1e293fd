//! Scheduling a batch: which records start, in what order, and where their
//! handlers run.
//!
//! Records start in order, up to the subscription's `concurrency` at once;
//! under an [`order`](crate::subscription::RecordOrder), a record whose lane (key, or
//! partition) is busy waits for it, with the later records of its lane, and
//! the records behind them go around it. Handlers that finish at their
//! first poll run back to back, up to [`MAX_HANDLED_IN_TURN`] records or
//! [`HANDLED_IN_TURN_FOR`] between polls of the consumer, so the bookkeeping
//! of a batch is paid once for many records. While handlers wait, a batch
//! takes [`WAITING_LOOKAHEAD`] times the concurrency (a
//! [`parallel`](crate::Subscription::parallel) one up to
//! [`MAX_PARALLEL_BATCH`]) and starts each record as a slot frees, for up to
//! [`WAITING_BATCH_OPEN_FOR`]: a batch ends with a wait for its last
//! handlers, so the more records it runs, the rarer that wait. No record
//! starts after one fails, so a failure never has records of its partition
//! run ahead of it, and none starts once the run is stopping. Records a
//! batch did not start run first in the next one, and their partitions'
//! commits wait for them (see [`settle`](super::settle)).
//!
//! A handler that computes for long before its first `.await` would hold
//! the consumer loop (commits, the stop, the other handlers) while it runs in
//! place. When [`HEAVY_RUNS`] records in a row took [`HEAVY_HANDLER`] or more
//! each, the subscription's later handlers run on tokio's blocking threads instead
//! (see [`invoke`](crate::handling::invoke)), and the loop keeps committing while it
//! waits for them.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use tokio::time::Instant;

use super::stall::StallWatch;
use super::{BatchConsumer, RunControl};
use crate::handling::invoke::{start, Outcome, RunsOn, Started};
use crate::handling::FutureSlot;
use crate::record::PendingRecord;

/// Most records one batch runs when its handlers finish without waiting,
/// whatever the concurrency.
pub(super) const MAX_HANDLED_IN_TURN: usize = 64;

/// Most records one batch of a [`parallel`](crate::Subscription::parallel)
/// subscription takes. Its handlers run on the worker threads while the loop
/// starts the next ones; each batch ends with a wait for its last handlers,
/// which leaves threads idle, so a batch takes many records to make that
/// wait rare (at 50 µs of CPU a record, 512 against 64 gave 9 % more).
pub(super) const MAX_PARALLEL_BATCH: usize = 512;

/// A batch whose handlers wait takes this many times the concurrency, and
/// starts each record as a slot (and its lane) frees.
pub(super) const WAITING_LOOKAHEAD: usize = 4;

/// How long a batch goes on starting records past its concurrency.
const HANDLED_IN_TURN_FOR: Duration = Duration::from_millis(20);

/// How long a batch whose handlers wait goes on starting records as slots
/// free, past its concurrency: long enough that the wait for its last
/// handlers is paid rarely, short enough that the consumer's events
/// (rebalances above all) are served promptly.
const WAITING_BATCH_OPEN_FOR: Duration = Duration::from_millis(100);

/// Records started between two readings of the clock past the concurrency:
/// reading it costs about a fifth of a quick handler.
const RECORDS_PER_CLOCK_READING: usize = 8;

/// Time in a handler's first poll from which it counts as computing rather
/// than handling.
const HEAVY_HANDLER: Duration = Duration::from_millis(1);

/// Consecutive runs seen computing for [`HEAVY_HANDLER`] after which the
/// subscription's handlers run on blocking threads. One is not enough: a
/// quick handler preempted by the OS, on a busy machine, looks heavy once,
/// and moving quick handlers to blocking threads costs each record a thread
/// hand-off (ten times the CPU of running it in place).
const HEAVY_RUNS: u32 = 2;

/// What a batch's handlers gave.
pub(super) struct BatchOutcome {
    /// Per record, in batch order, its outcome, or `None` if it did not
    /// start (a failure, a stop, a pause, or the batch's time ended first);
    /// records past the end did not start either. Those left run next.
    pub(super) outcomes: Vec<Option<Outcome>>,
    /// Whether a handler had to wait.
    pub(super) waited: bool,
}

impl BatchConsumer {
    /// Runs the handler on the batch's records in order (see the module
    /// docs), committing when `next_commit` comes while it waits, and
    /// looking for partitions stuck in it when `stall` is due. Returns
    /// `None` if a stop cancelled the batch after the shutdown timeout.
    pub(super) async fn handle_batch(
        &self,
        batch: &[PendingRecord<'_>],
        control: &mut RunControl,
        next_commit: &mut Instant,
        stall: &mut StallWatch,
    ) -> Option<BatchOutcome> {
        let concurrency = self.subscription.concurrency();
        let order = self.subscription.order();
        let run_stop = &control.run_stop;
        let work = async {
            // Per record looked at, in batch order: its outcome (a placeholder
            // while it runs), or `None` while it has not started.
            let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(batch.len());
            let mut running = FuturesUnordered::new();
            // The lanes of the handlers running (see `ordering`).
            let mut busy_lanes: HashSet<u64> = HashSet::new();
            // Records passed over because their lane was busy, in batch
            // order, with their lanes: each starts once its lane is free and
            // no record of the lane before it waits.
            let mut deferred: Vec<(usize, u64)> = Vec::new();
            // The lanes of deferred records, gathered anew at each scan.
            let mut lanes_waiting: HashSet<u64> = HashSet::new();
            let mut in_flight = 0;
            let mut waited = false;
            let mut failed = false;
            let mut in_turn_until = None;
            // Handlers that finish at once reuse one future's memory.
            let mut slot = FutureSlot::default();
            // The batch indexes of the handlers running, for a stall report.
            let mut running_records: Vec<usize> = Vec::new();
            // One timer for the batch's stall looks, moved on after each.
            let look = tokio::time::sleep_until(stall.next_look);
            tokio::pin!(look);
            loop {
                std::future::poll_fn(|cx| {
                    // Borrowed mutably so the wait needs `running` to be Send
                    // only; `push` takes `&self`, which would need Sync.
                    let running = &mut running;
                    let mut placement = self.placement();
                    let poll_began = std::time::Instant::now();
                    let mut started_here = 0u32;
                    // Records are timed one by one while handlers look heavy.
                    let mut record_began = poll_began;
                    // Deferred records are looked at first, then the batch's
                    // next ones.
                    let mut scan = 0;
                    lanes_waiting.clear();
                    loop {
                        // A pause asked for is applied before the next record
                        // starts: those left run once their partition resumes.
                        if failed
                            || in_flight >= concurrency
                            || run_stop.is_stopping()
                            || self.control.pause_pending()
                        {
                            break;
                        }
                        let (index, lane) = if let Some(&(index, lane)) = deferred.get(scan) {
                            (index, Some(lane))
                        } else {
                            let index = outcomes.len();
                            let Some(record) = batch.get(index) else {
                                break;
                            };
                            // Past its concurrency, a batch starts records as
                            // slots free, for a while: the batch ends with a
                            // wait for its last handlers, which leaves slots
                            // idle, so the longer it goes on the rarer that
                            // wait is.
                            if index >= concurrency
                                && (index - concurrency) % RECORDS_PER_CLOCK_READING == 0
                            {
                                let now = std::time::Instant::now();
                                let open_for = if waited {
                                    WAITING_BATCH_OPEN_FOR
                                } else {
                                    HANDLED_IN_TURN_FOR
                                };
                                if now >= *in_turn_until.get_or_insert(now + open_for) {
                                    break;
                                }
                            }
                            outcomes.push(None);
                            (index, order.lane(record.source()))
                        };
                        // A record waits for the running record of its lane,
                        // and for the waiting ones before it: each lane starts
                        // in order, while the other lanes go around it.
                        if let Some(lane) = lane {
                            if busy_lanes.contains(&lane) || lanes_waiting.contains(&lane) {
                                lanes_waiting.insert(lane);
                                if scan == deferred.len() {
                                    deferred.push((index, lane));
                                }
                                scan += 1;
                                continue;
                            }
                            if scan < deferred.len() {
                                deferred.remove(scan);
                            }
                        }
                        let record = &batch[index];
                        let timed = placement == RunsOn::Inline
                            && (started_here == 0 || self.looks_heavy());
                        if timed && started_here > 0 {
                            record_began = std::time::Instant::now();
                        }
                        started_here += 1;
                        match start(
                            &self.scope,
                            &self.subscription,
                            record.source(),
                            placement,
                            cx,
                            &mut slot,
                        ) {
                            Started::Finished(outcome) => {
                                failed |= outcome.is_failure();
                                outcomes[index] = Some(outcome);
                            }
                            Started::Running(handler) => {
                                waited = true;
                                in_flight += 1;
                                // A placeholder, replaced once the handler is done.
                                outcomes[index] = Some(Outcome::Handled);
                                busy_lanes.extend(lane);
                                running_records.push(index);
                                running.push(async move { (index, lane, handler.outcome().await) });
                            }
                        }
                        // The first record of a poll, and each one after a
                        // heavy one, says at once whether handlers compute:
                        // the next one must not run in place.
                        if timed {
                            let next = self.note_inline_time(record_began.elapsed());
                            if next != placement {
                                // The records handled in place settle before
                                // the rest go to blocking threads: a batch's
                                // records settle together.
                                placement = next;
                                break;
                            }
                        }
                    }
                    if placement == RunsOn::Inline && started_here > 1 {
                        self.note_inline_time(poll_began.elapsed() / started_here);
                    }
                    Poll::Ready(())
                })
                .await;
                let next = loop {
                    tokio::select! {
                        biased;
                        next = running.next() => break next,
                        // A handler that never returns holds the batch, and
                        // the records of every partition in it, here.
                        () = &mut look => {
                            self.look_for_stalls(stall, Some((batch, &running_records)));
                            look.as_mut().reset(stall.next_look);
                        }
                    }
                };
                let Some((index, lane, outcome)) = next else {
                    break;
                };
                if let Some(at) = running_records.iter().position(|&i| i == index) {
                    running_records.swap_remove(at);
                }
                in_flight -= 1;
                if let Some(lane) = lane {
                    busy_lanes.remove(&lane);
                }
                failed |= outcome.is_failure();
                outcomes[index] = Some(outcome);
            }
            BatchOutcome { outcomes, waited }
        };
        let grace = self.scope.app.settings().shutdown_timeout;
        let interval = self.scope.app.settings().auto_commit_interval;
        let stop = &mut control.stop;
        let cancel_after_stop = async {
            let _ = stop.wait_for(|stopped| *stopped).await;
            tokio::time::sleep(grace).await;
        };
        tokio::pin!(work, cancel_after_stop);
        loop {
            tokio::select! {
                biased;
                handled = &mut work => return Some(handled),
                () = &mut cancel_after_stop => {
                    tracing::warn!(
                        subscription = %self.scope.name,
                        records = batch.len(),
                        "in-flight handlers cancelled at shutdown; their records will be consumed again"
                    );
                    return None;
                }
                // Handlers that wait long must not hold back the commits of
                // what was settled before them.
                () = tokio::time::sleep_until(*next_commit) => {
                    self.commit_handled();
                    *next_commit = Instant::now() + interval;
                }
            }
        }
    }

    /// Whether the last handler run in place computed for long.
    #[inline]
    fn looks_heavy(&self) -> bool {
        self.monitor.counters.heavy_runs.load(Ordering::Relaxed) > 0
    }

    /// Where this subscription's handlers run.
    fn placement(&self) -> RunsOn {
        if self.subscription.is_parallel() {
            RunsOn::Spawned
        } else if self.monitor.counters.spawn_handlers.load(Ordering::Relaxed) {
            RunsOn::Blocking
        } else {
            RunsOn::Inline
        }
    }

    /// Notes how long a record held the consumer loop, moves the
    /// subscription's handlers off the loop when that is long, and says where
    /// handlers run from now on.
    fn note_inline_time(&self, per_record: Duration) -> RunsOn {
        let counters = &self.monitor.counters;
        let streak = heavy_streak(counters.heavy_runs.load(Ordering::Relaxed), per_record);
        counters.heavy_runs.store(streak, Ordering::Relaxed);
        if streak < HEAVY_RUNS {
            return RunsOn::Inline;
        }
        if !self
            .monitor
            .counters
            .spawn_handlers
            .swap(true, Ordering::Relaxed)
        {
            tracing::info!(
                subscription = %self.scope.name,
                "handlers compute for {per_record:?} before they first wait; they now run on \
                 blocking threads so the consumer and the other handlers go on meanwhile (wrap \
                 CPU-bound work in tokio::task::spawn_blocking to keep them in place)"
            );
        }
        RunsOn::Blocking
    }
}

/// Heavy runs in a row after a run in place that took `took`, `streak`
/// before it.
fn heavy_streak(streak: u32, took: Duration) -> u32 {
    if took < HEAVY_HANDLER {
        0
    } else {
        streak.saturating_add(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_slow_run_of_a_quick_handler_does_not_make_it_heavy() {
        let quick = Duration::from_micros(2);
        let preempted = Duration::from_millis(4);
        let runs = [quick, preempted, quick, quick, preempted, quick];
        let mut streak = 0;
        for took in runs {
            streak = heavy_streak(streak, took);
            assert!(streak < HEAVY_RUNS, "{runs:?}");
        }
        let computing = [Duration::from_millis(3); HEAVY_RUNS as usize];
        let streak = computing
            .iter()
            .fold(0, |streak, &took| heavy_streak(streak, took));
        assert_eq!(streak, HEAVY_RUNS);
    }
}
