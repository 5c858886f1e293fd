//! Pausing and resuming subscriptions at run time (Liftbridge's
//! `PauseStream`), and what an application remembers of each subscription
//! across its runs.
//!
//! A paused partition keeps its place in the group: the consumer stays a
//! member, keeps its partitions, fetches nothing from the paused ones, and
//! goes on committing what it has handled. Records it had already fetched
//! wait in memory and run, in order, once the partition is resumed. No
//! record of a paused partition starts after the pause is seen, which is
//! before the next record starts; handlers already running finish.
//!
//! Pauses hold across rebalances (a paused partition assigned again starts
//! paused) and across runs of the same application; they are not stored in
//! the broker, so a restarted process starts unpaused.
//!
//! ```no_run
//! # async fn demo(app: kafkaesk::Application) -> Result<(), kafkaesk::Error> {
//! app.pause("index")?; // every partition of the subscription named `index`
//! app.resume_partitions("index", [("orders", 0)])?; // all but orders/0 stay paused
//! assert!(!app.is_paused("index", "orders", 0)?);
//! app.resume("index")?;
//! # Ok(()) }
//! ```
//!
//! From a handler, [`Subscriber::pause`](crate::Subscriber::pause) pauses its
//! own subscription, and [`Subscriber::pause_partition`](crate::Subscriber::pause_partition)
//! the partition of the record it handles.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::Application;
use crate::error::{Error, Result};
use crate::sync::{lock, read_lock};

/// Which partitions of a subscription are paused, by stream and partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PauseState {
    /// Whether every partition is paused, those in `exceptions` aside.
    all: bool,
    /// The partitions paused when `all` is off, resumed when it is on.
    exceptions: HashSet<(String, i32)>,
}

impl PauseState {
    /// Whether `partition` of `stream` is paused.
    pub(crate) fn is_paused(&self, stream: &str, partition: i32) -> bool {
        self.all != self.exceptions.contains(&(stream.to_owned(), partition))
    }

    fn set_all(&mut self, paused: bool) {
        self.all = paused;
        self.exceptions.clear();
    }

    fn set(&mut self, stream: String, partition: i32, paused: bool) {
        if paused == self.all {
            self.exceptions.remove(&(stream, partition));
        } else {
            self.exceptions.insert((stream, partition));
        }
    }
}

/// What an application keeps for one subscription across its runs.
#[derive(Debug)]
pub(crate) struct SubscriptionControl {
    pause: watch::Sender<PauseState>,
    /// Set by each pause, cleared by the consumer once applied, so a batch
    /// stops starting records as soon as a pause is asked for.
    pause_pending: AtomicBool,
    /// Partitions this application has placed at the subscription's start
    /// position: a replay moves each at most once per application.
    placed: Mutex<HashSet<(String, i32)>>,
}

impl Default for SubscriptionControl {
    fn default() -> Self {
        SubscriptionControl {
            pause: watch::channel(PauseState::default()).0,
            pause_pending: AtomicBool::new(false),
            placed: Mutex::default(),
        }
    }
}

impl SubscriptionControl {
    /// Follows the pause state.
    pub(crate) fn pauses(&self) -> watch::Receiver<PauseState> {
        self.pause.subscribe()
    }

    /// Whether a pause was asked for and not applied yet.
    #[inline]
    pub(crate) fn pause_pending(&self) -> bool {
        self.pause_pending.load(Ordering::Relaxed)
    }

    /// Marks the pause state as applied.
    pub(crate) fn pause_applied(&self) {
        self.pause_pending.store(false, Ordering::Relaxed);
    }

    /// Of `partitions`, those not placed yet, which are from now on.
    pub(crate) fn place_once(&self, partitions: &[(String, i32)]) -> Vec<(String, i32)> {
        let mut placed = lock(&self.placed);
        partitions
            .iter()
            .filter(|tp| placed.insert((*tp).clone()))
            .cloned()
            .collect()
    }

    /// Forgets that `partitions` were placed, when placing them failed.
    pub(crate) fn unplace(&self, partitions: &[(String, i32)]) {
        let mut placed = lock(&self.placed);
        for tp in partitions {
            placed.remove(tp);
        }
    }

    fn update(&self, paused: bool, change: impl FnOnce(&mut PauseState)) {
        self.pause.send_modify(change);
        if paused {
            self.pause_pending.store(true, Ordering::Relaxed);
        }
    }
}

/// Every subscription's control, by name.
#[derive(Debug, Default)]
pub(crate) struct Controls(Mutex<HashMap<String, Arc<SubscriptionControl>>>);

impl Controls {
    pub(crate) fn get(&self, subscription: &str) -> Arc<SubscriptionControl> {
        lock(&self.0)
            .entry(subscription.to_owned())
            .or_default()
            .clone()
    }
}

impl Application {
    /// The control of the subscription named `subscription`, which must be
    /// one of the application's.
    fn known_control(&self, subscription: &str) -> Result<Arc<SubscriptionControl>> {
        let router = read_lock(&self.inner().router);
        let names: Vec<&str> = router.subscriptions().iter().map(|s| s.name()).collect();
        if !names.contains(&subscription) {
            return Err(Error::UnknownSubscription {
                name: subscription.to_owned(),
                known: names.join(", "),
            });
        }
        Ok(self.control(subscription))
    }

    /// Pauses every partition of the subscription named `subscription`,
    /// now and as they are assigned; see [`control`](self). Fails with
    /// [`Error::UnknownSubscription`] for a name the application does not have.
    pub fn pause(&self, subscription: &str) -> Result<()> {
        let control = self.known_control(subscription)?;
        control.update(true, |state| state.set_all(true));
        tracing::info!(subscription, "subscription paused");
        Ok(())
    }

    /// Resumes every partition of the subscription.
    pub fn resume(&self, subscription: &str) -> Result<()> {
        let control = self.known_control(subscription)?;
        control.update(false, |state| state.set_all(false));
        tracing::info!(subscription, "subscription resumed");
        Ok(())
    }

    /// Pauses these partitions, as `(stream, partition)`, of the subscription.
    ///
    /// ```no_run
    /// # fn demo(app: kafkaesk::Application) -> Result<(), kafkaesk::Error> {
    /// app.pause_partitions("index", [("orders", 0), ("orders", 3)])?;
    /// # Ok(()) }
    /// ```
    pub fn pause_partitions<S: Into<String>>(
        &self,
        subscription: &str,
        partitions: impl IntoIterator<Item = (S, i32)>,
    ) -> Result<()> {
        self.set_partitions(subscription, partitions, true)
    }

    /// Resumes these partitions, as `(stream, partition)`, of the subscription.
    pub fn resume_partitions<S: Into<String>>(
        &self,
        subscription: &str,
        partitions: impl IntoIterator<Item = (S, i32)>,
    ) -> Result<()> {
        self.set_partitions(subscription, partitions, false)
    }

    fn set_partitions<S: Into<String>>(
        &self,
        subscription: &str,
        partitions: impl IntoIterator<Item = (S, i32)>,
        paused: bool,
    ) -> Result<()> {
        let control = self.known_control(subscription)?;
        let partitions: Vec<(String, i32)> = partitions
            .into_iter()
            .map(|(stream, partition)| (stream.into(), partition))
            .collect();
        tracing::info!(
            subscription,
            partitions = ?partitions,
            "{}",
            if paused { "partitions paused" } else { "partitions resumed" }
        );
        control.update(paused, |state| {
            for (stream, partition) in partitions {
                state.set(stream, partition, paused);
            }
        });
        Ok(())
    }

    /// Whether `partition` of `stream` is paused in the subscription.
    pub fn is_paused(&self, subscription: &str, stream: &str, partition: i32) -> Result<bool> {
        let control = self.known_control(subscription)?;
        let paused = control.pause.borrow().is_paused(stream, partition);
        Ok(paused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pausing_all_then_resuming_some_leaves_the_rest_paused() {
        let mut state = PauseState::default();
        assert!(!state.is_paused("s", 0));
        state.set("s".into(), 1, true);
        assert!(state.is_paused("s", 1) && !state.is_paused("s", 0));
        state.set_all(true);
        state.set("s".into(), 0, false);
        assert!(!state.is_paused("s", 0));
        assert!(state.is_paused("s", 1) && state.is_paused("t", 9));
        state.set("s".into(), 0, true);
        assert_eq!(
            state,
            PauseState {
                all: true,
                exceptions: HashSet::new()
            }
        );
        state.set_all(false);
        assert_eq!(state, PauseState::default());
    }

    #[test]
    fn a_partition_is_placed_once() {
        let control = SubscriptionControl::default();
        let tps = [("s".to_owned(), 0), ("s".to_owned(), 1)];
        assert_eq!(control.place_once(&tps[..1]), tps[..1].to_vec());
        assert_eq!(control.place_once(&tps), tps[1..].to_vec());
        control.unplace(&tps[..1]);
        assert_eq!(control.place_once(&tps), tps[..1].to_vec());
    }
}
