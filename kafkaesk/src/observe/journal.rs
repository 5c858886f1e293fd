//! What happened to each record, as it happens: every record a subscription
//! settled and how, and every message the application's producers queued and
//! the broker stored. The [test harness](crate::testing) keeps one per
//! application and waits on it; applications without one pay a branch per
//! batch.
//!
//! A record is *settled* for a subscription once its consumer is done with
//! it: handled, skipped because it could not be decoded, skipped or
//! dead-lettered by the error policy after any retries, or failed in a way
//! that stopped the consumer. A record being retried is not settled yet.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::error::Error;
use crate::sync::lock;

/// One record settled by one subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    /// The subscription that settled it.
    pub subscription: String,
    /// The stream, without the topic prefix.
    pub stream: String,
    /// The partition.
    pub partition: i32,
    /// The record's offset.
    pub offset: i64,
    /// How it was settled.
    pub outcome: RecordOutcome,
}

/// How a subscription settled one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOutcome {
    /// The handler returned successfully, on its `attempts`-th run.
    Handled {
        /// Handler runs, retries included.
        attempts: u32,
    },
    /// The record could not be decoded for the handler and was skipped.
    Unhandled {
        /// Why it could not be decoded.
        error: String,
    },
    /// The handler failed every attempt and the error policy skipped it.
    Skipped {
        /// The last attempt's error, in the handler's words.
        error: String,
        /// Handler runs, retries included.
        attempts: u32,
    },
    /// The handler failed every attempt and the record went to a dead-letter stream.
    DeadLettered {
        /// The last attempt's error, in the handler's words.
        error: String,
        /// Handler runs, retries included.
        attempts: u32,
        /// The dead-letter stream.
        stream: String,
    },
    /// The handler failed and the record went to a retry stream, to run
    /// again once due (see [Retry streams](crate::ErrorPolicy#retry-streams)):
    /// a later settlement, of the record read from that stream, follows.
    RetriedLater {
        /// The last attempt's error, in the handler's words.
        error: String,
        /// Handler runs, in-place retries included.
        attempts: u32,
        /// The retry stream.
        stream: String,
    },
    /// The handler failed every attempt and its consumer stopped (the
    /// default policy, or a dead-letter write that failed): the record comes
    /// back when the application runs again.
    Stopped {
        /// The last attempt's error, in the handler's words.
        error: String,
        /// Handler runs, retries included.
        attempts: u32,
    },
}

impl RecordOutcome {
    /// The outcome of a failed handler (or record) under the error policy,
    /// from the error its consumer reports.
    pub(crate) fn failed(error: &Error, attempts: u32, action: FailedAs<'_>) -> Self {
        let error = match error {
            Error::Handler { source, .. } => source.to_string(),
            Error::HandlerPanic { message, .. } => message.clone(),
            Error::HandlerTimeout { timeout, .. } => format!("timed out after {timeout:?}"),
            Error::Unhandled { reason, .. } => reason.clone(),
            other => other.to_string(),
        };
        match action {
            FailedAs::Unhandled => RecordOutcome::Unhandled { error },
            FailedAs::Skipped => RecordOutcome::Skipped { error, attempts },
            FailedAs::DeadLettered(stream) => RecordOutcome::DeadLettered {
                error,
                attempts,
                stream: stream.to_owned(),
            },
            FailedAs::RetriedLater(stream) => RecordOutcome::RetriedLater {
                error,
                attempts,
                stream: stream.to_owned(),
            },
            FailedAs::Stopped => RecordOutcome::Stopped { error, attempts },
        }
    }

    /// Whether the handler succeeded.
    pub fn is_handled(&self) -> bool {
        matches!(self, RecordOutcome::Handled { .. })
    }

    /// How many times the handler ran (0 for a record that could not be decoded).
    pub fn attempts(&self) -> u32 {
        match self {
            RecordOutcome::Unhandled { .. } => 0,
            RecordOutcome::Handled { attempts }
            | RecordOutcome::Skipped { attempts, .. }
            | RecordOutcome::DeadLettered { attempts, .. }
            | RecordOutcome::RetriedLater { attempts, .. }
            | RecordOutcome::Stopped { attempts, .. } => *attempts,
        }
    }

    /// How many times the handler was retried: its runs after the first.
    pub fn retries(&self) -> u32 {
        self.attempts().saturating_sub(1)
    }

    /// The last error, in the handler's words, unless it was handled.
    pub fn error(&self) -> Option<&str> {
        match self {
            RecordOutcome::Handled { .. } => None,
            RecordOutcome::Unhandled { error }
            | RecordOutcome::Skipped { error, .. }
            | RecordOutcome::DeadLettered { error, .. }
            | RecordOutcome::RetriedLater { error, .. }
            | RecordOutcome::Stopped { error, .. } => Some(error),
        }
    }

    /// The dead-letter stream it went to, if it was dead-lettered.
    pub fn dead_letter_stream(&self) -> Option<&str> {
        match self {
            RecordOutcome::DeadLettered { stream, .. } => Some(stream),
            _ => None,
        }
    }
}

/// What the error policy made of a failed record.
pub(crate) enum FailedAs<'a> {
    Unhandled,
    Skipped,
    DeadLettered(&'a str),
    RetriedLater(&'a str),
    Stopped,
}

/// A stored message: full topic name, partition, offset.
pub(crate) type Stored = (String, i32, i64);

/// The journal of one application; see the [module docs](self).
pub(crate) struct Journal {
    state: Mutex<JournalState>,
    /// Bumped on every entry, so waiters wake on changes instead of polling.
    changes: watch::Sender<u64>,
}

#[derive(Default)]
pub(crate) struct JournalState {
    /// Every settlement, in the order they happened.
    pub(crate) settled: Vec<Settled>,
    /// `(subscription, stream, partition, offset)` of every settlement.
    pub(crate) index: HashSet<(String, String, i32, i64)>,
    /// Every message the producers stored, in the order reported.
    pub(crate) stored: Vec<Stored>,
    /// Messages queued whose delivery report has not come yet.
    pub(crate) in_flight: u64,
    /// Why the application's consumers stopped, once they did.
    pub(crate) run_ended: Option<String>,
}

impl Default for Journal {
    fn default() -> Self {
        Journal {
            state: Mutex::default(),
            changes: watch::channel(0).0,
        }
    }
}

impl Journal {
    fn change(&self, apply: impl FnOnce(&mut JournalState)) {
        apply(&mut lock(&self.state));
        self.changes.send_modify(|version| *version += 1);
    }

    /// A consumer settled a record.
    pub(crate) fn settled(&self, settled: Settled) {
        self.change(|state| {
            state.index.insert((
                settled.subscription.clone(),
                settled.stream.clone(),
                settled.partition,
                settled.offset,
            ));
            state.settled.push(settled);
        });
    }

    /// A producer is about to queue a message. Counted before it is queued:
    /// its report may come before `send` returns.
    pub(crate) fn sending(&self) {
        self.change(|state| state.in_flight += 1);
    }

    /// A message counted by [`sending`](Self::sending) was not queued, or
    /// was not delivered.
    pub(crate) fn not_sent(&self) {
        self.change(|state| state.in_flight = state.in_flight.saturating_sub(1));
    }

    /// The broker stored a message counted by [`sending`](Self::sending).
    pub(crate) fn stored(&self, topic: &str, partition: i32, offset: i64) {
        self.change(|state| {
            state.in_flight = state.in_flight.saturating_sub(1);
            state.stored.push((topic.to_owned(), partition, offset));
        });
    }

    /// The application's consumers stopped, with their run's result.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub(crate) fn run_ended(&self, result: &crate::Result<()>) {
        let why = match result {
            Ok(()) => "the application stopped".to_owned(),
            Err(err) => format!("the application stopped: {err}"),
        };
        self.change(|state| {
            state.run_ended.get_or_insert(why);
        });
    }

    /// Reads the journal.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub(crate) fn read<R>(&self, read: impl FnOnce(&JournalState) -> R) -> R {
        read(&lock(&self.state))
    }

    /// Wakes on every entry from now on.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub(crate) fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

/// The journal, if the application keeps one.
pub(crate) type MaybeJournal = Option<Arc<Journal>>;
