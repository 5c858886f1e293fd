//! Lock helpers that survive a poisoned lock: kafkaesk's locks guard plain
//! bookkeeping that a panic elsewhere cannot leave half-written. And
//! [`off_the_worker`], for librdkafka calls that wait and cannot move to a
//! blocking thread, and [`block_on_bounded`], for async code that must run
//! to completion inside such a call (rebalance hooks).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use futures::FutureExt;
use tokio::runtime::{Handle, RuntimeFlavor};

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn read_lock<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn write_lock<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

/// Runs `wait`, a librdkafka call that waits on the network, without
/// holding up the other tasks of the async worker thread it is called on.
///
/// Most such calls move to the blocking pool with `spawn_blocking`. Some
/// cannot: librdkafka calls the rebalance callback on the thread that polls
/// the consumer (a task's worker thread), and the commit before a
/// revocation and the start-position lookups must finish inside it. On a
/// multi-thread runtime's worker, `block_in_place` hands the worker's other
/// tasks (an embedded broker's among them) to another thread meanwhile.
/// Elsewhere (a current-thread runtime, a plain thread) `wait` runs as it
/// is: a current-thread runtime has no other thread to hand them to.
pub(crate) fn off_the_worker<R>(wait: impl FnOnce() -> R) -> R {
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(wait)
        }
        _ => wait(),
    }
}

/// How a future run by [`block_on_bounded`] ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Bounded<T> {
    /// It finished with this.
    Done(T),
    /// It panicked, with this message.
    Panicked(String),
    /// It did not finish within the bound, and was cancelled.
    TimedOut,
    /// It could not run: its runtime has shut down, or no thread could be
    /// started for it.
    NotRun,
}

/// Runs `future` to completion from synchronous code (librdkafka's
/// rebalance callback), waiting at most `bound`, without holding up the
/// async worker thread it is called on and without deadlocking on it.
///
/// - On a multi-thread runtime's thread, the future runs as a task of that
///   runtime while this thread waits in `block_in_place`, which hands the
///   worker's other tasks to another thread (as [`off_the_worker`] does).
/// - On a current-thread runtime's thread, that runtime cannot move while
///   this thread waits, so the future runs on a thread of its own with a
///   runtime of its own (timers and I/O work; what needs the caller's
///   runtime to move waits until the bound).
/// - On a thread with no runtime (the thread closing a consumer), it runs
///   as a task of `runtime`, the runtime the consumer was made on, or, with
///   none, on a thread of its own.
///
/// A future still running at the bound is cancelled at its next `.await`
/// (a thread of its own ends it with its runtime's timer, at the same
/// bound). A panic is caught and returned.
pub(crate) fn block_on_bounded<T: Send + 'static>(
    future: impl Future<Output = T> + Send + 'static,
    bound: Duration,
    runtime: Option<&Handle>,
) -> Bounded<T> {
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| as_task(&handle, future, bound))
        }
        // This thread is the runtime's only one, and it is held here.
        Ok(_) => on_a_thread_of_its_own(future, bound),
        Err(_) => match runtime {
            Some(handle) => as_task(handle, future, bound),
            None => on_a_thread_of_its_own(future, bound),
        },
    }
}

/// Runs `future` as a task of `runtime` and waits for it on this thread.
fn as_task<T: Send + 'static>(
    runtime: &Handle,
    future: impl Future<Output = T> + Send + 'static,
    bound: Duration,
) -> Bounded<T> {
    let (tx, rx) = sync_channel(1);
    let task = runtime.spawn(async move {
        let _ = tx.send(finished(AssertUnwindSafe(future).catch_unwind().await));
    });
    let outcome = wait(&rx, bound);
    if matches!(outcome, Bounded::TimedOut) {
        task.abort();
    }
    outcome
}

/// Runs `future` on a new thread with a current-thread runtime of its own,
/// which ends it at `bound` too, so a hang does not keep the thread.
fn on_a_thread_of_its_own<T: Send + 'static>(
    future: impl Future<Output = T> + Send + 'static,
    bound: Duration,
) -> Bounded<T> {
    let (tx, rx) = sync_channel(1);
    let spawned = std::thread::Builder::new()
        .name("kafkaesk-hook".to_owned())
        .spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            // The timer is made inside: it needs the runtime's context.
            let ran = runtime.block_on(async move {
                tokio::time::timeout(bound, AssertUnwindSafe(future).catch_unwind()).await
            });
            let _ = tx.send(ran.map_or(Bounded::TimedOut, finished));
        });
    match spawned {
        Ok(_) => wait(&rx, bound),
        Err(_) => Bounded::NotRun,
    }
}

fn finished<T>(result: std::thread::Result<T>) -> Bounded<T> {
    match result {
        Ok(value) => Bounded::Done(value),
        Err(panic) => Bounded::Panicked(crate::text::panic_message(&*panic)),
    }
}

fn wait<T>(rx: &Receiver<Bounded<T>>, bound: Duration) -> Bounded<T> {
    match rx.recv_timeout(bound) {
        Ok(outcome) => outcome,
        Err(RecvTimeoutError::Timeout) => Bounded::TimedOut,
        // The task was dropped unrun (its runtime shut down), or the thread
        // could not build its runtime.
        Err(RecvTimeoutError::Disconnected) => Bounded::NotRun,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_wait_on_the_only_worker_does_not_hold_up_its_other_tasks() {
        let (tx, rx) = std::sync::mpsc::channel();
        // Spawned on the one worker: it can only run if the wait below
        // gives the worker up.
        let answer = tokio::spawn(async move { tx.send(42).ok() });
        let got = off_the_worker(|| rx.recv_timeout(std::time::Duration::from_secs(10)));
        assert_eq!(got, Ok(42));
        answer.await.unwrap();
    }

    #[tokio::test(flavor = "current_thread")]
    async fn on_a_current_thread_runtime_the_wait_runs_as_it_is() {
        assert_eq!(off_the_worker(|| 7), 7);
    }

    /// A future that needs its runtime's timer, and another task of it.
    async fn needs_the_runtime() -> u32 {
        let other = tokio::spawn(async { 40 });
        tokio::time::sleep(Duration::from_millis(5)).await;
        other.await.unwrap_or(0) + 2
    }

    const BOUND: Duration = Duration::from_secs(20);
    const SHORT: Duration = Duration::from_millis(200);

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn on_the_only_worker_a_future_runs_to_completion_as_a_task() {
        assert_eq!(
            block_on_bounded(needs_the_runtime(), BOUND, None),
            Bounded::Done(42)
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn on_a_current_thread_runtime_a_future_runs_on_a_thread_of_its_own() {
        assert_eq!(
            block_on_bounded(needs_the_runtime(), BOUND, None),
            Bounded::Done(42)
        );
    }

    #[test]
    fn on_a_plain_thread_a_future_runs_on_the_runtime_given() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let handle = runtime.handle().clone();
        let got =
            std::thread::spawn(move || block_on_bounded(needs_the_runtime(), BOUND, Some(&handle)))
                .join()
                .unwrap();
        assert_eq!(got, Bounded::Done(42));
        assert_eq!(
            block_on_bounded(needs_the_runtime(), BOUND, None),
            Bounded::Done(42)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_future_that_hangs_is_cut_and_cancelled() {
        let dropped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        struct OnDrop(std::sync::Arc<std::sync::atomic::AtomicBool>);
        impl Drop for OnDrop {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let guard = OnDrop(dropped.clone());
        let hang = async move {
            let _guard = guard;
            std::future::pending::<()>().await;
        };
        assert_eq!(block_on_bounded(hang, SHORT, None), Bounded::TimedOut);
        // Cancelled at its await: the task is aborted and drops its state.
        let deadline = std::time::Instant::now() + BOUND;
        while !dropped.load(std::sync::atomic::Ordering::SeqCst) {
            assert!(
                std::time::Instant::now() < deadline,
                "the cut future was not dropped"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn on_a_current_thread_runtime_a_hang_is_cut_too() {
        let hang = std::future::pending::<()>();
        assert_eq!(block_on_bounded(hang, SHORT, None), Bounded::TimedOut);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_panic_is_caught() {
        let outcome = block_on_bounded(
            async {
                if true {
                    panic!("hook broke");
                }
            },
            BOUND,
            None,
        );
        assert_eq!(outcome, Bounded::<()>::Panicked("hook broke".to_owned()));
    }

    #[test]
    fn a_runtime_that_shut_down_runs_nothing() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let handle = runtime.handle().clone();
        drop(runtime);
        assert_eq!(
            block_on_bounded(async { 1 }, BOUND, Some(&handle)),
            Bounded::NotRun
        );
    }
}
