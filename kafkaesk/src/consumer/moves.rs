//! Moves to retry streams in flight (see
//! [Retry streams](crate::ErrorPolicy#retry-streams)).
//!
//! Waiting for the broker's acknowledgement of each move on the consumer
//! loop stopped the partition for a produce round trip per failed record,
//! most of it the producer's `linger.ms` over a batch of one (bench
//! `retry-path`). So the write runs as a task of its own, and the record's
//! offset *fences* its partition in the offset book: the records behind it
//! are handled, but nothing from it on is committed until the broker took
//! the move. The loop settles moves the broker answered at the top of each
//! turn: acknowledged, the fence is lifted; refused for good (too large),
//! the error policy's final action applies; failed otherwise, the consumer
//! stops with the record uncommitted, so it comes back.
//!
//! An exactly-once subscription's moves are in its transactions, so they
//! are written in place, before the transaction commits.

use std::sync::Mutex;

use tokio::task::JoinSet;
use tokio::time::Instant;

use super::BatchConsumer;
use crate::dead_letter::fails_for_good;
use crate::error::{Error, Result};
use crate::observe::journal::Settled;
use crate::record::Record;
use crate::retry_stream::{self, Move, Origin};
use crate::sync::lock;

/// A move the broker answered.
pub(super) struct Moved {
    record: Record,
    origin: Origin,
    /// The retry stream, from 0.
    tier: usize,
    /// Why the record failed.
    error: Error,
    runs: u32,
    written: Result<()>,
}

/// The moves of one consumer in flight.
#[derive(Default)]
pub(super) struct Moves {
    tasks: Mutex<JoinSet<Moved>>,
}

impl BatchConsumer {
    /// Writes `record` to retry stream `tier` in a task of its own, and
    /// fences its partition until the broker answers.
    pub(super) fn move_in_background(
        &self,
        record: Record,
        origin: Origin,
        tier: usize,
        error: Error,
        runs: u32,
    ) {
        let Some(target) = self.tiers.get(tier) else {
            return;
        };
        let (stream, delay) = (target.stream.clone(), target.delay);
        lock(&self.book).fence(
            (record.shared_topic().clone(), record.partition()),
            record.offset(),
        );
        let app = self.scope.app.clone();
        let subscription = self.scope.name.clone();
        lock(&self.moves.tasks).spawn(async move {
            let moved = Move {
                origin: &origin,
                attempt: tier + 1,
                delay,
                error: &error,
                subscription: &subscription,
            };
            let written = retry_stream::write(app.publisher(), &stream, &record, moved).await;
            Moved {
                record,
                origin,
                tier,
                error,
                runs,
                written,
            }
        });
    }

    /// Settles the moves the broker answered since the last call. An error
    /// stops the consumer: a move that failed and may pass later leaves its
    /// record uncommitted.
    pub(super) async fn settle_moves(&self) -> Result<()> {
        loop {
            let done = lock(&self.moves.tasks).try_join_next();
            let Some(done) = done else {
                return Ok(());
            };
            // Tasks are aborted only at the end of the run, and the write
            // does not panic; if it did, its record stays uncommitted.
            let moved = done.map_err(|_| Error::Stopped)?;
            self.settle_move(moved).await?;
        }
    }

    async fn settle_move(&self, moved: Moved) -> Result<()> {
        let Moved {
            record,
            origin,
            tier,
            error,
            runs,
            written,
        } = moved;
        match written {
            Ok(()) => self.count_move(&record, tier, &error, runs),
            Err(write_error) if fails_for_good(&write_error) => {
                tracing::error!(
                    subscription = %self.scope.name,
                    error = %error,
                    record = %record.position(),
                    retry_stream_error = %write_error,
                    "handler failed and the record cannot be written to its retry stream; \
                     the error policy's final action applies"
                );
                let (stops, settled) = self.final_action(&record, &origin, error, runs).await;
                if let Some(journal) = &self.monitor.journal {
                    journal.settled(Settled {
                        subscription: self.scope.name.to_string(),
                        stream: self.scope.app.settings().stream(record.topic()).to_owned(),
                        partition: record.partition(),
                        offset: record.offset(),
                        outcome: settled,
                    });
                }
                if let Some(error) = stops {
                    return Err(error);
                }
            }
            Err(write_error) => {
                tracing::error!(
                    subscription = %self.scope.name,
                    error = %error,
                    record = %record.position(),
                    retry_stream_error = %write_error,
                    "handler failed and the retry stream write failed; stopping consumer"
                );
                return Err(error);
            }
        }
        self.lift_fence(&record);
        Ok(())
    }

    /// Lets the partition's commit pass `record`: its move is settled.
    fn lift_fence(&self, record: &Record) {
        let tp = (record.shared_topic().clone(), record.partition());
        lock(&self.book).unfence(&tp, record.offset());
    }

    /// Waits, at most the shutdown timeout, for the moves still in flight
    /// when the run ends, and lifts the fences of those acknowledged; the
    /// records of the others are consumed again.
    pub(super) async fn finish_moves(&self) {
        let mut tasks = std::mem::take(&mut *lock(&self.moves.tasks));
        if tasks.is_empty() {
            return;
        }
        let deadline = Instant::now() + self.scope.app.settings().shutdown_timeout;
        while let Ok(Some(done)) = tokio::time::timeout_at(deadline, tasks.join_next()).await {
            let Ok(moved) = done else {
                continue;
            };
            if moved.written.is_ok() {
                self.count_move(&moved.record, moved.tier, &moved.error, moved.runs);
                self.lift_fence(&moved.record);
            }
        }
        if !tasks.is_empty() {
            tracing::warn!(
                subscription = %self.scope.name,
                moves = tasks.len(),
                "consumer stopped before the broker took every move to a retry stream; \
                 their records will be consumed again"
            );
            tasks.abort_all();
        }
    }
}
