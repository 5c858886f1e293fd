//! Lock helpers that survive a poisoned lock: kafkaesk's locks guard plain
//! bookkeeping that a panic elsewhere cannot leave half-written. And
//! [`off_the_worker`], for librdkafka calls that wait and cannot move to a
//! blocking thread.

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

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
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(wait)
        }
        _ => wait(),
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
}
