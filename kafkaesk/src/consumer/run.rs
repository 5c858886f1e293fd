//! Stopping a run of consumers: a run stops when its limit of records is
//! reached, when one of its subscriptions fails, at a deadline, or when the
//! application stops; each consumer holds a [`RunControl`] to hear it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::watch;

#[cfg(doc)]
use crate::Application;

/// How a run controls its consumers: when to stop, and how many records all
/// of them have settled.
pub(crate) struct RunControl {
    pub(super) stop: watch::Receiver<bool>,
    pub(super) run_stop: Arc<RunStop>,
    pub(super) consumed: Arc<AtomicUsize>,
    pub(super) limit: Option<usize>,
}

/// The stop of one run of consumers: its own (a limit reached, a failure,
/// a deadline), or the application's.
pub(crate) struct RunStop {
    flag: AtomicBool,
    /// [`Application::stop`] sets it at once, before the run hears of it.
    app_flag: Arc<AtomicBool>,
    notify: watch::Sender<bool>,
}

impl RunStop {
    pub(crate) fn new(app_flag: Arc<AtomicBool>) -> Arc<Self> {
        Arc::new(RunStop {
            flag: AtomicBool::new(false),
            app_flag,
            notify: watch::channel(false).0,
        })
    }

    /// Stops every consumer of the run.
    pub(crate) fn stop(&self) {
        self.flag.store(true, Ordering::Relaxed);
        self.notify.send_replace(true);
    }

    /// Whether the run is stopping: read before each record starts.
    #[inline]
    pub(crate) fn is_stopping(&self) -> bool {
        self.flag.load(Ordering::Relaxed) || self.app_flag.load(Ordering::Relaxed)
    }

    /// The control of one consumer in the run.
    pub(crate) fn control(
        self: &Arc<Self>,
        consumed: Arc<AtomicUsize>,
        limit: Option<usize>,
    ) -> RunControl {
        RunControl {
            stop: self.notify.subscribe(),
            run_stop: self.clone(),
            consumed,
            limit,
        }
    }
}

impl RunControl {
    /// Counts `settled` records toward the run's limit, and stops the run once
    /// it is reached.
    pub(super) fn count(&self, settled: usize) {
        let total = self.consumed.fetch_add(settled, Ordering::SeqCst) + settled;
        if self.limit.is_some_and(|limit| total >= limit) {
            self.run_stop.stop();
        }
    }
}
