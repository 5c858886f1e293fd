//! What an application knows about its subscriptions while they run: their
//! counters and the state of their consumers.
//!
//! Each consumer gets a [`SubscriptionMonitor`] for its subscription and
//! writes through it; [`Application::stats`](crate::Application::stats) and
//! [`Application::health_check`](crate::Application::health_check) read the
//! application's [`Monitor`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::observe::journal::MaybeJournal;
use crate::observe::metrics::{ConsumerMetrics, Metrics};
use crate::sync::lock;

/// Counters of one subscription, shared with its consumer.
#[derive(Debug, Default)]
pub(crate) struct SubscriptionCounters {
    pub(crate) handled: AtomicU64,
    pub(crate) unhandled: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) retried: AtomicU64,
    pub(crate) skipped: AtomicU64,
    pub(crate) dead_lettered: AtomicU64,
    pub(crate) retried_later: AtomicU64,
    /// Whether the subscription's handlers were seen to compute for long
    /// before their first `.await`, so later runs keep them off the
    /// consumer's task too.
    pub(crate) spawn_handlers: AtomicBool,
    /// Handler runs in a row, in place, that computed for long.
    pub(crate) heavy_runs: AtomicU32,
}

impl SubscriptionCounters {
    fn snapshot(&self) -> SubscriptionStats {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SubscriptionStats {
            handled: read(&self.handled),
            unhandled: read(&self.unhandled),
            failed: read(&self.failed),
            retried: read(&self.retried),
            skipped: read(&self.skipped),
            dead_lettered: read(&self.dead_lettered),
            retried_later: read(&self.retried_later),
        }
    }
}

/// What one subscription has done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscriptionStats {
    /// Records handed to the handler that returned successfully.
    pub handled: u64,
    /// Records that could not be decoded and were skipped.
    pub unhandled: u64,
    /// Records whose handler failed, panicked or timed out, after any retries.
    pub failed: u64,
    /// Retries of failed handlers (see [`ErrorPolicy`](crate::ErrorPolicy)).
    pub retried: u64,
    /// Failed records skipped and committed by the error policy.
    pub skipped: u64,
    /// Failed records published to a dead-letter stream and committed.
    pub dead_lettered: u64,
    /// Failed records moved to a retry stream and committed, to run again
    /// once due (see [Retry streams](crate::ErrorPolicy#retry-streams)).
    pub retried_later: u64,
}

/// The state of one subscription's consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerHealth {
    /// Subscription name.
    pub subscription: String,
    /// Consumer group.
    pub group: String,
    /// Whether the consumer loop is running.
    pub running: bool,
    /// Partitions currently assigned, as `(topic, partition)`.
    pub assigned: Vec<(String, i32)>,
    /// Of those, the ones paused by [`Application::pause`](crate::Application::pause)
    /// and its kin.
    pub paused: Vec<(String, i32)>,
    /// The error librdkafka has reported in place of records for 10 s, if
    /// one has (a batch it cannot read): records behind it are not read,
    /// and the consumer counts as unhealthy until the error stops (see
    /// [Fetch errors that repeat](crate::Application::run)).
    pub stalled: Option<String>,
    /// Partitions that have made no progress for the subscription's
    /// [`stall_timeout`](crate::Subscription::with_stall_timeout) or longer:
    /// a handler that does not return, or records waiting behind one. The
    /// consumer counts as unhealthy while any is listed.
    pub stuck: Vec<StuckPartition>,
}

/// A partition that has made no progress for its subscription's
/// [`stall_timeout`](crate::Subscription::with_stall_timeout) or longer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StuckPartition {
    /// The topic, with the application's prefix.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset of its oldest record fetched and not settled.
    pub offset: i64,
    /// How long it has made no progress, as of the consumer's last look
    /// (once a second).
    pub for_time: std::time::Duration,
}

impl ConsumerHealth {
    /// Whether the consumer runs, reads, and moves on every partition.
    pub fn is_healthy(&self) -> bool {
        self.running && self.stalled.is_none() && self.stuck.is_empty()
    }
}

/// The result of [`Application::health_check`](crate::Application::health_check).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// Whether the producer reached a broker just now.
    pub producer: bool,
    /// Every consumer started by the current run.
    pub consumers: Vec<ConsumerHealth>,
}

impl Health {
    /// True when the producer is usable and every consumer is running,
    /// stalled or not: what a liveness probe asks. A consumer stuck behind
    /// a batch it cannot read is not helped by a restart, which would only
    /// move every partition of its group in a rebalance.
    pub fn is_live(&self) -> bool {
        self.producer && self.consumers.iter().all(|c| c.running)
    }

    /// True when the producer is usable and every consumer is running and
    /// reading.
    pub fn is_healthy(&self) -> bool {
        self.producer && self.consumers.iter().all(ConsumerHealth::is_healthy)
    }
}

/// Every subscription's counters and consumer state, by subscription name,
/// and the metrics they are also recorded into.
pub(crate) struct Monitor {
    counters: Mutex<HashMap<String, Arc<SubscriptionCounters>>>,
    consumers: Arc<Mutex<HashMap<String, ConsumerHealth>>>,
    metrics: Metrics,
    journal: MaybeJournal,
}

impl Monitor {
    pub(crate) fn new(metrics: Metrics, journal: MaybeJournal) -> Self {
        Monitor {
            counters: Mutex::default(),
            consumers: Arc::default(),
            metrics,
            journal,
        }
    }

    /// The handle a consumer of `subscription` in `group` writes through; its
    /// consumer counts as running until [`SubscriptionMonitor::stopped`].
    pub(crate) fn subscription(&self, subscription: &str, group: &str) -> SubscriptionMonitor {
        let counters = lock(&self.counters)
            .entry(subscription.to_owned())
            .or_default()
            .clone();
        lock(&self.consumers).insert(
            subscription.to_owned(),
            ConsumerHealth {
                subscription: subscription.to_owned(),
                group: group.to_owned(),
                running: true,
                assigned: Vec::new(),
                paused: Vec::new(),
                stalled: None,
                stuck: Vec::new(),
            },
        );
        let metrics = self.metrics.consumer(subscription, group);
        metrics.health(true);
        SubscriptionMonitor {
            name: subscription.to_owned(),
            counters,
            consumers: self.consumers.clone(),
            metrics,
            journal: self.journal.clone(),
        }
    }

    pub(crate) fn stats(&self) -> HashMap<String, SubscriptionStats> {
        lock(&self.counters)
            .iter()
            .map(|(name, c)| (name.clone(), c.snapshot()))
            .collect()
    }

    pub(crate) fn consumers(&self) -> Vec<ConsumerHealth> {
        lock(&self.consumers).values().cloned().collect()
    }

    /// Whether any consumer was started.
    pub(crate) fn has_consumers(&self) -> bool {
        !lock(&self.consumers).is_empty()
    }
}

/// One subscription's counters and consumer state, as its consumer writes them.
#[derive(Clone)]
pub(crate) struct SubscriptionMonitor {
    name: String,
    pub(crate) counters: Arc<SubscriptionCounters>,
    consumers: Arc<Mutex<HashMap<String, ConsumerHealth>>>,
    pub(crate) metrics: ConsumerMetrics,
    /// Where each settled record is written, when the application keeps a journal.
    pub(crate) journal: MaybeJournal,
}

impl SubscriptionMonitor {
    /// Records the partitions now assigned.
    pub(crate) fn assigned(&self, assigned: Vec<(String, i32)>) {
        if let Some(health) = lock(&self.consumers).get_mut(&self.name) {
            health.assigned = assigned;
        }
    }

    /// Records the partitions now paused.
    pub(crate) fn paused(&self, paused: Vec<(String, i32)>) {
        if let Some(health) = lock(&self.consumers).get_mut(&self.name) {
            health.paused = paused;
        }
    }

    /// Records that the consumer is stuck behind a fetch error (`Some`
    /// with the error), or is not any more.
    pub(crate) fn stalled(&self, error: Option<String>) {
        let mut consumers = lock(&self.consumers);
        let Some(health) = consumers.get_mut(&self.name) else {
            return;
        };
        health.stalled = error;
        self.metrics.health(health.is_healthy());
    }

    /// Records the partitions now stuck (see [`ConsumerHealth::stuck`]).
    pub(crate) fn stuck(&self, stuck: Vec<StuckPartition>) {
        let mut consumers = lock(&self.consumers);
        let Some(health) = consumers.get_mut(&self.name) else {
            return;
        };
        health.stuck = stuck;
        self.metrics.health(health.is_healthy());
    }

    /// Records that the consumer stopped.
    pub(crate) fn stopped(&self) {
        self.metrics.health(false);
        if let Some(health) = lock(&self.consumers).get_mut(&self.name) {
            health.running = false;
            health.stalled = None;
            health.stuck.clear();
            health.assigned.clear();
            health.paused.clear();
        }
    }
}
