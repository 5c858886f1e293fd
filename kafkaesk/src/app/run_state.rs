//! Whether the application is running, and the stop asked of its runs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::sync::lock;

/// Runs in progress (a [`run`](crate::Application::run) from before its
/// initialization to after its finalization, or a `consume_*` call) and
/// whether they were asked to stop.
///
/// A stop asked while a run is in progress holds until every run in
/// progress has ended, however early it came: a SIGTERM during start-up
/// stops the run that is starting. A stop asked while nothing runs
/// is not kept for a later run.
pub(crate) struct RunState {
    active: Mutex<usize>,
    stop: watch::Sender<bool>,
    /// The same stop, for consumers to read before each record: set at once
    /// by [`stop`](Self::stop), so no record starts after it returns.
    stopping: Arc<AtomicBool>,
}

impl Default for RunState {
    fn default() -> Self {
        RunState {
            active: Mutex::new(0),
            stop: watch::channel(false).0,
            stopping: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl RunState {
    /// Marks a run as in progress until the guard is dropped.
    pub(crate) fn begin(&self) -> RunGuard<'_> {
        *lock(&self.active) += 1;
        RunGuard { state: self }
    }

    /// Marks a run as in progress until [`leave`](Self::leave), for a run
    /// whose end is not a scope: a stop asked from then on reaches it, even
    /// before its consumers start.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub(crate) fn enter(&self) {
        *lock(&self.active) += 1;
    }

    /// Ends a run; the last one to end clears the stop.
    pub(crate) fn leave(&self) {
        let mut active = lock(&self.active);
        *active -= 1;
        if *active == 0 {
            self.stopping.store(false, Ordering::Relaxed);
            self.stop.send_replace(false);
        }
    }

    /// Asks the runs in progress to stop.
    pub(crate) fn stop(&self) {
        let active = lock(&self.active);
        if *active > 0 {
            self.stopping.store(true, Ordering::Relaxed);
            self.stop.send_replace(true);
        }
    }

    /// Whether a run is in progress.
    pub(crate) fn is_running(&self) -> bool {
        *lock(&self.active) > 0
    }

    /// Whether the runs in progress were asked to stop.
    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// The stop as a flag, shared with consumers.
    pub(crate) fn stopping_flag(&self) -> Arc<AtomicBool> {
        self.stopping.clone()
    }

    /// Notified when a stop is asked.
    pub(crate) fn subscribe(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }
}

/// A run in progress; the last one to end clears the stop.
pub(crate) struct RunGuard<'a> {
    state: &'a RunState,
}

impl Drop for RunGuard<'_> {
    fn drop(&mut self) {
        self.state.leave();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_during_a_run_holds_until_the_run_ends_and_not_after() {
        let state = RunState::default();
        state.stop();
        assert!(!state.is_stopping(), "nothing ran: the stop is not kept");
        let run = state.begin();
        state.stop();
        let nested = state.begin();
        assert!(state.is_stopping());
        drop(nested);
        assert!(state.is_stopping(), "the outer run has not ended");
        drop(run);
        assert!(!state.is_stopping() && !state.is_running());
    }
}
