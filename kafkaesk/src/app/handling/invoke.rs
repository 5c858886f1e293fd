//! Running a handler once on a record: decoding, the call, its timeout, and
//! panics, turned into an [`Outcome`].
//!
//! The consumer starts a handler by polling it once, in place: most
//! handlers finish there, and running them without a task of their own is
//! what makes quick handlers cheap. That first poll happens in memory kept
//! from one record to the next ([`FutureSlot`]), so a handler that finishes
//! at once costs no allocation either. A handler still running after it is
//! awaited as a future ([`Started::Running`]). A subscription whose
//! handlers were seen to compute for long before their first `.await` has
//! them run on tokio's blocking threads instead ([`RunsOn::Blocking`]),
//! each driven there by the runtime's handle: they compute without holding
//! an async worker, while the consumer loop goes on committing and reacting
//! to a stop, and the subscription's other handlers go on.
//!
//! A subscription's `timeout` covers the whole run, from the call on: the
//! deadline is set before the handler starts. A handler that computes
//! without awaiting cannot be interrupted (no async code can), but once it
//! awaits past its deadline it is cancelled and the run is
//! [`Outcome::TimedOut`].

use std::panic::AssertUnwindSafe;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::FutureExt;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

use crate::app::Application;
use crate::error::{BoxError, Error, RecordPosition, Result};
use crate::handling::HandlerScope;
use crate::handling::{FirstPoll, FutureSlot, HandlerFuture};
use crate::handling::{MessageContext, Rejection};
use crate::observe::propagation;
use crate::record::{Record, RecordSource};
use crate::subscription::Subscription;
use crate::text::panic_message;

/// How one run of a handler on a record ended.
pub(crate) enum Outcome {
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
    pub(crate) fn into_error(
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

    /// The `error` label of `kafkaesk_consumed_messages_total`, as Python
    /// kafkaesk writes it where it can (see [`metrics`](crate::observe::metrics)).
    pub(crate) fn metric_label(&self) -> &'static str {
        match self {
            Outcome::Handled => crate::observe::metrics::NO_ERROR,
            Outcome::Unhandled(_) => "UnhandledMessage",
            Outcome::Failed(_) => crate::observe::metrics::GENERAL_ERROR,
            Outcome::Panicked(_) => "panic",
            Outcome::TimedOut(_) => "pending",
        }
    }

    /// Whether the handler failed: an error, a panic or a timeout.
    #[inline]
    pub(crate) fn is_failure(&self) -> bool {
        matches!(
            self,
            Outcome::Failed(_) | Outcome::Panicked(_) | Outcome::TimedOut(_)
        )
    }
}

/// Where a handler's future runs after the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunsOn {
    /// Polled in place, first by the caller: for handlers that finish quickly
    /// or wait.
    Inline,
    /// Run at once on a blocking thread of the runtime: for handlers that
    /// compute for long before their first `.await`.
    Blocking,
    /// Run at once as a task of its own on the runtime's worker threads: for
    /// a [`parallel`](crate::Subscription::parallel) subscription, whose
    /// handlers compute briefly and should use every core.
    Spawned,
}

/// When a run times out.
#[derive(Clone, Copy)]
struct Deadline {
    at: Instant,
    timeout: Duration,
}

impl Deadline {
    fn of(subscription: &Subscription) -> Option<Deadline> {
        subscription.handler_deadline().map(|timeout| Deadline {
            at: Instant::now() + timeout,
            timeout,
        })
    }
}

/// A handler past its start.
pub(crate) enum Started {
    /// It finished at its first poll, or was never called.
    Finished(Outcome),
    /// It is still running; await [`Running::outcome`].
    Running(Running),
}

/// A handler that did not finish at its first poll.
pub(crate) struct Running {
    work: Work,
    deadline: Option<Deadline>,
}

enum Work {
    Inline(HandlerFuture),
    /// On a thread of its own: a blocking thread, or a worker thread as a
    /// task. Computing code cannot be interrupted: a run given up (timeout,
    /// shutdown) goes on there until the handler returns, and its result is
    /// dropped.
    Task(JoinHandle<std::result::Result<(), BoxError>>),
}

impl Running {
    /// Awaits the handler, with panics caught and the deadline applied.
    pub(crate) async fn outcome(self) -> Outcome {
        let Running { work, deadline } = self;
        let run = async move {
            match work {
                Work::Inline(future) => AssertUnwindSafe(future).catch_unwind().await.map_or_else(
                    |payload| Outcome::Panicked(panic_message(&*payload)),
                    Outcome::of,
                ),
                Work::Task(task) => match task.await {
                    Ok(result) => Outcome::of(result),
                    Err(err) if err.is_panic() => {
                        Outcome::Panicked(panic_message(&*err.into_panic()))
                    }
                    Err(_) => Outcome::Failed("the handler's task was cancelled".into()),
                },
            }
        };
        match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline.at, run)
                .await
                .unwrap_or(Outcome::TimedOut(deadline.timeout)),
            None => run.await,
        }
    }
}

impl Started {
    /// The outcome of the run, awaiting the handler if it is still running.
    pub(crate) async fn outcome(self) -> Outcome {
        match self {
            Started::Finished(outcome) => outcome,
            Started::Running(running) => running.outcome().await,
        }
    }
}

/// Decodes the record for the subscription's handler and starts it: polls it
/// once in place (in `slot`'s memory, see [`FutureSlot`]), or spawns it,
/// with panics caught.
pub(crate) fn start(
    scope: &HandlerScope,
    subscription: &Subscription,
    record: RecordSource<'_>,
    placement: RunsOn,
    cx: &mut Context<'_>,
    slot: &mut FutureSlot,
) -> Started {
    let deadline = Deadline::of(subscription);
    let handler = subscription.handler();
    let span = propagation::consume_span(&scope.name, record);
    std::panic::catch_unwind(AssertUnwindSafe(|| {
        let entered = span.enter();
        let ctx = MessageContext::new(record, scope);
        let work = match placement {
            RunsOn::Inline => match handler.poll_once(ctx, cx, slot) {
                Err(rejection) => return Started::Finished(Outcome::Unhandled(rejection)),
                Ok(FirstPoll::Ready(result)) => return Started::Finished(Outcome::of(result)),
                Ok(FirstPoll::Pending(future)) if span.is_disabled() => Work::Inline(future),
                // Later polls run in the span too.
                Ok(FirstPoll::Pending(future)) => {
                    Work::Inline(Box::pin(future.instrument(span.clone())))
                }
            },
            RunsOn::Blocking | RunsOn::Spawned => {
                let future = match handler.call(ctx) {
                    Err(rejection) => return Started::Finished(Outcome::Unhandled(rejection)),
                    Ok(future) => future.instrument(span.clone()),
                };
                drop(entered);
                if placement == RunsOn::Blocking {
                    let runtime = tokio::runtime::Handle::current();
                    Work::Task(tokio::task::spawn_blocking(move || {
                        runtime.block_on(future)
                    }))
                } else {
                    Work::Task(tokio::spawn(future))
                }
            }
        };
        Started::Running(Running { work, deadline })
    }))
    .unwrap_or_else(|payload| Started::Finished(Outcome::Panicked(panic_message(&*payload))))
}

/// Decodes `record` for the subscription's handler and runs it once: panics
/// caught, the timeout applied.
pub(crate) async fn run_once(
    scope: &HandlerScope,
    subscription: &Subscription,
    record: &Record,
) -> Outcome {
    let mut first = true;
    let started = std::future::poll_fn(|cx| {
        if std::mem::take(&mut first) {
            Poll::Ready(start(
                scope,
                subscription,
                RecordSource::Owned(record),
                RunsOn::Inline,
                cx,
                &mut FutureSlot::default(),
            ))
        } else {
            Poll::Pending
        }
    })
    .await;
    started.outcome().await
}

impl Subscription {
    /// Decodes `record` and runs the handler on it once, as a consumer would,
    /// without a broker: for tests, fuzzing and benchmarks of handlers.
    ///
    /// Returns `Ok(())` when the handler succeeded, [`Error::Unhandled`] when
    /// the record cannot be decoded into what the handler takes, and
    /// [`Error::Handler`], [`Error::HandlerPanic`] or [`Error::HandlerTimeout`]
    /// when it failed. No error policy applies and nothing is committed;
    /// [`Subscriber::commit`](crate::Subscriber::commit) returns
    /// [`Error::Stopped`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use kafkaesk::{Application, Headers, Record, Subscription};
    ///
    /// #[kafkaesk::schema("Content")]
    /// #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    /// pub struct Content { pub foo: String }
    ///
    /// async fn index(data: Content) {}
    ///
    /// let app = Application::builder().build().unwrap();
    /// let sub = Subscription::new("content", index);
    /// let good = Record::new("content", 0, 0, None, Some(br#"{"schema":"Content:1","data":{"foo":"x"}}"#.to_vec()), Headers::new(), None);
    /// assert!(sub.handle_record(&app, good).await.is_ok());
    /// let bad = Record::new("content", 0, 1, None, Some(b"not json".to_vec()), Headers::new(), None);
    /// assert!(matches!(sub.handle_record(&app, bad).await, Err(kafkaesk::Error::Unhandled { .. })));
    /// # }
    /// ```
    pub async fn handle_record(&self, app: &Application, record: Record) -> Result<()> {
        let scope = HandlerScope::detached(app.clone(), self.shared_name().clone());
        run_once(&scope, self, &record)
            .await
            .into_error(&scope.name, || record.position())
            .map_or(Ok(()), Err)
    }
}
