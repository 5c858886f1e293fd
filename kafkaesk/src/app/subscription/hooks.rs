//! Rebalance hooks: async callbacks a [`Subscription`](crate::Subscription)
//! runs when its consumer is assigned partitions
//! ([`on_assigned`](crate::Subscription::on_assigned)) and when they are
//! revoked ([`on_revoked`](crate::Subscription::on_revoked)), like Python
//! kafkaesk's `ConsumerRebalanceListener`.
//!
//! ```
//! use kafkaesk::subscription::{Assigned, Position, Revoked};
//! use kafkaesk::Subscription;
//!
//! async fn index(raw: Vec<u8>) {}
//!
//! let sub = Subscription::new("orders", index)
//!     .on_assigned(|assigned: Assigned| async move {
//!         for p in assigned.partitions() {
//!             // Load this partition's state before its first record runs.
//!             println!("got {}/{}", p.stream, p.partition);
//!         }
//!         // Start orders/0 at offset 42, whatever the group committed.
//!         if assigned.contains("orders", 0) {
//!             assigned.seek("orders", 0, Position::Offset(42))?;
//!         }
//!         Ok::<_, kafkaesk::Error>(())
//!     })
//!     .on_revoked(|revoked: Revoked| async move {
//!         // Their handled records are committed already: flush their state.
//!         println!("lost {:?}", revoked.partitions());
//!     });
//! assert!(sub.has_rebalance_hooks());
//! ```
//!
//! # When they run, and what they may rely on
//!
//! - **`on_assigned`** runs after librdkafka hands the consumer its new
//!   partitions and before they are assigned: no record of them is fetched,
//!   let alone handled, until the hook has returned. Under the eager
//!   protocol (librdkafka's default) it gets every partition the member now
//!   has; under `cooperative-sticky`, the ones added. Never with none.
//!   [`Assigned::seek`] sets where a partition starts; it wins over the
//!   group's commit and the subscription's [start position](crate::Subscription::with_start_at).
//! - **`on_revoked`** runs once the records of the revoked partitions that
//!   were handled have been committed (the commit before a revocation; for
//!   an exactly-once subscription, its batches' transactions), and before
//!   the partitions go to another member. It runs when the consumer stops
//!   too, as it leaves its group. Under the eager protocol it gets every
//!   partition the member had, kept ones included.
//!
//! Both run inside librdkafka's rebalance callback, which is synchronous:
//! the consumer polls nothing while a hook runs, and under the eager
//! protocol the rest of the group waits for it. On a multi-thread runtime
//! the hook runs as a task of the application's runtime while the consumer's
//! worker thread hands its other tasks on (`block_in_place`); on a
//! current-thread runtime, whose only thread is the one waiting, it runs on
//! a thread of its own with a runtime of its own, so it must not wait for
//! anything that needs the application's runtime to move.
//!
//! # Failures, and hooks that hang
//!
//! A hook may return `()` or `Result<(), E>` (any error convertible into a
//! boxed error). A hook that fails, panics, or does not finish within
//! [`with_rebalance_hook_timeout`](crate::Subscription::with_rebalance_hook_timeout)
//! (30 s by default, at most half of `max.poll.interval.ms`, past which the
//! broker would take the member out of its group) is logged as a warning
//! and counted in `kafkaesk_kafka_action_total` (`type`
//! `rebalance_on_assigned` or `rebalance_on_revoked`, `error="exception"`;
//! `kafkaesk_kafka_action_time` times every run). The rebalance goes on: a
//! failed `on_assigned`'s seeks are dropped and its partitions start where
//! they would have without it, and the consumer keeps running. A hook cut
//! by its timeout is cancelled at its next `.await` (on a current-thread
//! runtime, by its own thread's runtime).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{BoxError, Error, Result};
use crate::handling::IntoHandlerResult;
use crate::subscription::Position;
use crate::sync::lock;

/// How long a rebalance hook may run by default before it is cut.
pub const DEFAULT_REBALANCE_HOOK_TIMEOUT: Duration = Duration::from_secs(30);

/// One partition given to a rebalance hook: its stream (the topic without the
/// application's prefix), its topic, and its number.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamPartition {
    /// The stream: the topic without the application's topic prefix.
    pub stream: String,
    /// The full topic name.
    pub topic: String,
    /// The partition's number.
    pub partition: i32,
}

impl fmt::Display for StreamPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.stream, self.partition)
    }
}

/// The partitions just assigned to a subscription's consumer, given to its
/// [`on_assigned`](crate::Subscription::on_assigned) hook, which may
/// [`seek`](Self::seek) them before they start.
///
/// See [`hooks`](crate::subscription::hooks) for when it runs.
pub struct Assigned {
    partitions: Vec<StreamPartition>,
    seeks: Arc<Mutex<Seeks>>,
}

/// The seeks a hook asked for, and whether it may still ask.
#[derive(Debug, Default)]
pub(crate) struct Seeks {
    /// Closed once the hook has ended (or was cut): later seeks could not
    /// take effect.
    closed: bool,
    /// `(topic, partition, position)`, in the order asked; the last one of
    /// a partition wins.
    wanted: Vec<(String, i32, Position)>,
}

impl Assigned {
    /// The assignment of `partitions`, and the handle its seeks are read
    /// through once the hook ends.
    pub(crate) fn new(mut partitions: Vec<StreamPartition>) -> (Self, SeekHandle) {
        partitions.sort();
        let seeks = Arc::new(Mutex::new(Seeks::default()));
        let handle = SeekHandle(seeks.clone());
        (Assigned { partitions, seeks }, handle)
    }

    /// The partitions assigned, sorted by stream and partition.
    pub fn partitions(&self) -> &[StreamPartition] {
        &self.partitions
    }

    /// Whether partition `partition` of `stream` is among them.
    pub fn contains(&self, stream: &str, partition: i32) -> bool {
        self.find(stream, partition).is_some()
    }

    fn find(&self, stream: &str, partition: i32) -> Option<&StreamPartition> {
        self.partitions
            .iter()
            .find(|p| p.stream == stream && p.partition == partition)
    }

    /// Starts partition `partition` of `stream` at `position` instead of the
    /// group's commit (or the subscription's start position): records
    /// before it are not handled, records from it are, again if they were
    /// before. The position is resolved between the partition's first and
    /// last offsets once the hook returns `Ok` (positions by time through
    /// the broker's offsets-for-times lookup); the seek is not committed by
    /// itself, only the records handled from there are. The last seek of a
    /// partition wins.
    ///
    /// Fails for a partition not assigned here, a negative offset, or once
    /// the hook has ended (a seek from a task it left behind).
    ///
    /// ```
    /// use kafkaesk::subscription::{Assigned, Position};
    /// use std::time::Duration;
    ///
    /// async fn replay_last_hour(assigned: Assigned) -> kafkaesk::Result<()> {
    ///     for p in assigned.partitions().to_vec() {
    ///         assigned.seek(&p.stream, p.partition, Position::Since(Duration::from_secs(3600)))?;
    ///     }
    ///     Ok(())
    /// }
    /// # async fn audit(raw: Vec<u8>) {}
    /// let sub = kafkaesk::Subscription::new("audit", audit).on_assigned(replay_last_hour);
    /// ```
    pub fn seek(&self, stream: &str, partition: i32, position: Position) -> Result<()> {
        let invalid = |reason: String| Error::InvalidSetting {
            name: "seek".to_owned(),
            reason,
        };
        let Some(found) = self.find(stream, partition) else {
            let assigned: Vec<String> = self.partitions.iter().map(ToString::to_string).collect();
            return Err(invalid(format!(
                "{stream}/{partition} is not among the partitions assigned ({})",
                assigned.join(", ")
            )));
        };
        if matches!(position, Position::Offset(offset) if offset < 0) {
            return Err(invalid(format!(
                "{found}: an offset to seek to cannot be negative"
            )));
        }
        let mut seeks = lock(&self.seeks);
        if seeks.closed {
            return Err(invalid(format!(
                "{found}: the on_assigned hook has ended; a seek after it cannot take effect"
            )));
        }
        seeks
            .wanted
            .push((found.topic.clone(), found.partition, position));
        Ok(())
    }
}

impl fmt::Debug for Assigned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Assigned")
            .field("partitions", &self.partitions)
            .finish_non_exhaustive()
    }
}

/// The consumer's side of an [`Assigned`]: the seeks, read once the hook ended.
pub(crate) struct SeekHandle(Arc<Mutex<Seeks>>);

impl SeekHandle {
    /// Ends the hook's seeking and returns its seeks, one per partition (the
    /// last asked), sorted by topic and partition.
    pub(crate) fn close(&self) -> Vec<(String, i32, Position)> {
        let mut seeks = lock(&self.0);
        seeks.closed = true;
        let mut last: Vec<(String, i32, Position)> = Vec::new();
        for (topic, partition, position) in seeks.wanted.drain(..) {
            last.retain(|(t, p, _)| !(*t == topic && *p == partition));
            last.push((topic, partition, position));
        }
        last.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        last
    }
}

/// The partitions revoked from a subscription's consumer, given to its
/// [`on_revoked`](crate::Subscription::on_revoked) hook once what was
/// handled of them is committed.
///
/// See [`hooks`](crate::subscription::hooks) for when it runs.
#[derive(Debug, Clone)]
pub struct Revoked {
    partitions: Vec<StreamPartition>,
}

impl Revoked {
    pub(crate) fn new(mut partitions: Vec<StreamPartition>) -> Self {
        partitions.sort();
        Revoked { partitions }
    }

    /// The partitions revoked, sorted by stream and partition.
    pub fn partitions(&self) -> &[StreamPartition] {
        &self.partitions
    }

    /// Whether partition `partition` of `stream` is among them.
    pub fn contains(&self, stream: &str, partition: i32) -> bool {
        self.partitions
            .iter()
            .any(|p| p.stream == stream && p.partition == partition)
    }
}

/// The future a hook runs, boxed, with its result converted.
pub(crate) type HookFuture = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send + 'static>>;

type Hook<T> = Arc<dyn Fn(T) -> HookFuture + Send + Sync>;

/// A subscription's rebalance hooks and how long each may run.
#[derive(Clone)]
pub(crate) struct RebalanceHooks {
    pub(crate) on_assigned: Option<Hook<Assigned>>,
    pub(crate) on_revoked: Option<Hook<Revoked>>,
    pub(crate) timeout: Duration,
}

impl Default for RebalanceHooks {
    fn default() -> Self {
        RebalanceHooks {
            on_assigned: None,
            on_revoked: None,
            timeout: DEFAULT_REBALANCE_HOOK_TIMEOUT,
        }
    }
}

impl RebalanceHooks {
    /// Whether any hook is set.
    pub(crate) fn any(&self) -> bool {
        self.on_assigned.is_some() || self.on_revoked.is_some()
    }

    /// Boxes `hook`, converting what it returns into the outcome logged.
    pub(crate) fn boxed<T, F, Fut>(hook: F) -> Hook<T>
    where
        F: Fn(T) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: IntoHandlerResult,
    {
        Arc::new(move |value: T| -> HookFuture {
            let future = hook(value);
            Box::pin(async move { future.await.into_handler_result() })
        })
    }
}

impl fmt::Debug for RebalanceHooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RebalanceHooks")
            .field("on_assigned", &self.on_assigned.is_some())
            .field("on_revoked", &self.on_revoked.is_some())
            .field("timeout", &self.timeout)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(stream: &str, partition: i32) -> StreamPartition {
        StreamPartition {
            stream: stream.to_owned(),
            topic: format!("p.{stream}"),
            partition,
        }
    }

    #[test]
    fn seeks_name_assigned_partitions_and_the_last_one_wins() {
        let (assigned, handle) = Assigned::new(vec![partition("b", 0), partition("a", 1)]);
        assert_eq!(assigned.partitions()[0], partition("a", 1), "sorted");
        assert!(assigned.contains("b", 0) && !assigned.contains("b", 1));
        assigned.seek("b", 0, Position::Offset(3)).unwrap();
        assigned.seek("a", 1, Position::Latest).unwrap();
        assigned.seek("b", 0, Position::Offset(7)).unwrap();
        let err = assigned.seek("b", 1, Position::Earliest).unwrap_err();
        assert!(err.to_string().contains("b/1 is not among"), "{err}");
        let err = assigned.seek("a", 1, Position::Offset(-1)).unwrap_err();
        assert!(err.to_string().contains("negative"), "{err}");
        assert_eq!(
            handle.close(),
            [
                ("p.a".to_owned(), 1, Position::Latest),
                ("p.b".to_owned(), 0, Position::Offset(7)),
            ]
        );
        let err = assigned.seek("a", 1, Position::Earliest).unwrap_err();
        assert!(err.to_string().contains("has ended"), "{err}");
        assert!(handle.close().is_empty());
    }

    #[tokio::test]
    async fn hooks_may_return_nothing_or_a_result() {
        let quiet = RebalanceHooks::boxed(|_: Revoked| async {});
        let failing =
            RebalanceHooks::boxed(|_: Revoked| async { Err::<(), _>(std::io::Error::other("no")) });
        let revoked = || Revoked::new(vec![partition("a", 0)]);
        assert!(quiet(revoked()).await.is_ok());
        let err = failing(revoked()).await.unwrap_err();
        assert_eq!(err.to_string(), "no");
    }
}
