//! Running a subscription's rebalance hooks from inside librdkafka's
//! rebalance callback: `on_assigned` before the new partitions are
//! assigned, with its seeks written into the assignment; `on_revoked` after
//! the commit before a revocation. What users rely on is documented in
//! [`subscription::hooks`](crate::subscription::hooks).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};
use tokio::runtime::Handle;

use super::offsets::TopicPartition;
use crate::error::Result;
use crate::observe::metrics::Metrics;
use crate::settings::stream_of;
use crate::subscription::hooks::{Assigned, HookFuture, RebalanceHooks, Revoked, StreamPartition};
use crate::subscription::{Position, Subscription};
use crate::sync::{block_on_bounded, off_the_worker, Bounded};

/// How long one lookup of a sought partition (watermarks, times) may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// librdkafka's default `max.poll.interval.ms`.
const DEFAULT_MAX_POLL_INTERVAL: Duration = Duration::from_secs(300);

/// A subscription's rebalance hooks, as its consumer runs them.
pub(crate) struct HookRunner {
    subscription: Arc<str>,
    hooks: RebalanceHooks,
    topic_prefix: String,
    /// The runtime the consumer was made on: hooks run there when the
    /// callback comes on a thread without one (the thread closing the
    /// consumer).
    runtime: Option<Handle>,
    /// How long a hook may run before it is cut.
    bound: Duration,
    metrics: Metrics,
}

impl HookRunner {
    /// The runner of `subscription`'s hooks, or `None` when it has none.
    /// `max_poll_interval` is the consumer's `max.poll.interval.ms`, if set.
    pub(crate) fn new(
        subscription: &Subscription,
        topic_prefix: &str,
        max_poll_interval: Option<&str>,
        metrics: Metrics,
    ) -> Option<Self> {
        let hooks = subscription.rebalance_hooks();
        if !hooks.any() {
            return None;
        }
        let max_poll_interval = max_poll_interval
            .and_then(|ms| ms.parse::<u64>().ok())
            .map_or(DEFAULT_MAX_POLL_INTERVAL, Duration::from_millis);
        Some(HookRunner {
            subscription: subscription.shared_name().clone(),
            // The consumer polls nothing while a hook runs, and past
            // `max.poll.interval.ms` without a poll the broker takes the
            // member out of its group; half of it leaves the rest of the
            // rebalance its time.
            bound: hooks.timeout.min(max_poll_interval / 2),
            hooks: hooks.clone(),
            topic_prefix: topic_prefix.to_owned(),
            runtime: Handle::try_current().ok(),
            metrics,
        })
    }

    fn stream_partitions<'t>(
        &self,
        partitions: impl Iterator<Item = (&'t str, i32)>,
    ) -> Vec<StreamPartition> {
        partitions
            .map(|(topic, partition)| StreamPartition {
                stream: stream_of(&self.topic_prefix, topic).to_owned(),
                topic: topic.to_owned(),
                partition,
            })
            .collect()
    }

    /// Runs `on_assigned` on the partitions of `assignment`, before they are
    /// assigned, and sets the start offsets of those it sought.
    pub(crate) fn assigned<C: ConsumerContext>(
        &self,
        consumer: &impl Consumer<C>,
        assignment: &mut TopicPartitionList,
    ) {
        let Some(hook) = &self.hooks.on_assigned else {
            return;
        };
        let elements = assignment.elements();
        let partitions =
            self.stream_partitions(elements.iter().map(|e| (e.topic(), e.partition())));
        drop(elements);
        if partitions.is_empty() {
            return;
        }
        let count = partitions.len();
        let (assigned, seeks) = Assigned::new(partitions);
        let succeeded = self.run("on_assigned", hook(assigned), count);
        let seeks = seeks.close();
        if seeks.is_empty() {
            return;
        }
        if !succeeded {
            tracing::warn!(
                subscription = %self.subscription,
                seeks = seeks.len(),
                "the seeks of the failed on_assigned hook are dropped; its partitions start \
                 where they would have without it"
            );
            return;
        }
        // Watermark and time lookups wait on the broker.
        off_the_worker(|| self.place(consumer, assignment, &seeks));
    }

    /// Sets the start offset of each sought partition in `assignment`.
    fn place<C: ConsumerContext>(
        &self,
        consumer: &impl Consumer<C>,
        assignment: &mut TopicPartitionList,
        seeks: &[(String, i32, Position)],
    ) {
        let mut placed = Vec::with_capacity(seeks.len());
        for (topic, partition, position) in seeks {
            match seek_one(consumer, assignment, topic, *partition, *position) {
                Ok(offset) => placed.push(format!("{topic}/{partition}@{offset}")),
                Err(err) => tracing::warn!(
                    subscription = %self.subscription,
                    topic = %topic,
                    partition,
                    position = %position,
                    error = %err,
                    "could not seek as the on_assigned hook asked; the partition starts where \
                     it would have without it"
                ),
            }
        }
        if !placed.is_empty() {
            tracing::info!(
                subscription = %self.subscription,
                partitions = %placed.join(", "),
                "partitions start where the on_assigned hook sought"
            );
        }
    }

    /// Runs `on_revoked` on `revoked`, whose handled records were committed.
    pub(crate) fn revoked(&self, revoked: &HashSet<TopicPartition>) {
        let Some(hook) = &self.hooks.on_revoked else {
            return;
        };
        if revoked.is_empty() {
            return;
        }
        let partitions = self.stream_partitions(revoked.iter().map(|(t, p)| (&**t, *p)));
        let count = partitions.len();
        self.run("on_revoked", hook(Revoked::new(partitions)), count);
    }

    /// Runs a hook's future to its end or its bound; logs and counts a
    /// failure. Returns whether it succeeded.
    fn run(&self, hook: &str, future: HookFuture, partitions: usize) -> bool {
        let started = Instant::now();
        let failure = match block_on_bounded(future, self.bound, self.runtime.as_ref()) {
            Bounded::Done(Ok(())) => None,
            Bounded::Done(Err(err)) => Some(format!("failed: {err}")),
            Bounded::Panicked(message) => Some(format!("panicked: {message}")),
            Bounded::TimedOut => Some(format!(
                "did not finish within {:?} and was cut",
                self.bound
            )),
            Bounded::NotRun => Some("could not run: its runtime has shut down".to_owned()),
        };
        self.metrics.kafka_action(
            &format!("rebalance_{hook}"),
            started.elapsed(),
            failure.is_none(),
        );
        match failure {
            None => true,
            Some(failure) => {
                tracing::warn!(
                    subscription = %self.subscription,
                    hook,
                    partitions,
                    "rebalance hook {failure}; the rebalance goes on"
                );
                false
            }
        }
    }
}

/// Resolves `position` in `partition` of `topic` and writes it into
/// `assignment`; returns the offset.
fn seek_one<C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    assignment: &mut TopicPartitionList,
    topic: &str,
    partition: i32,
    position: Position,
) -> Result<i64> {
    let watermarks = consumer.fetch_watermarks(topic, partition, LOOKUP_TIMEOUT)?;
    let offset = position.resolve(consumer, topic, partition, watermarks, LOOKUP_TIMEOUT)?;
    assignment.set_partition_offset(topic, partition, Offset::Offset(offset))?;
    Ok(offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    async fn on_bytes(_: Vec<u8>) {}

    fn runner(subscription: Subscription) -> HookRunner {
        HookRunner::new(&subscription, "p.", Some("60000"), Metrics::new()).expect("hooks are set")
    }

    fn revoked(partitions: &[i32]) -> HashSet<TopicPartition> {
        partitions.iter().map(|&p| (Arc::from("p.s"), p)).collect()
    }

    #[test]
    fn no_hooks_no_runner() {
        let sub = Subscription::new("s", on_bytes);
        assert!(HookRunner::new(&sub, "p.", None, Metrics::new()).is_none());
    }

    #[test]
    fn the_bound_stays_under_half_the_poll_interval() {
        let sub = Subscription::new("s", on_bytes).on_revoked(|_: Revoked| async {});
        assert_eq!(runner(sub.clone()).bound, Duration::from_secs(30));
        let short = HookRunner::new(&sub, "p.", Some("20000"), Metrics::new()).unwrap();
        assert_eq!(short.bound, Duration::from_secs(10));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn revoked_partitions_are_given_as_streams_and_a_failure_is_counted() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let calls = Arc::new(AtomicUsize::new(0));
        let (seen2, calls2) = (seen.clone(), calls.clone());
        let sub = Subscription::new("s", on_bytes).on_revoked(move |revoked: Revoked| {
            let (seen, calls) = (seen2.clone(), calls2.clone());
            async move {
                seen.lock().unwrap().push(revoked.partitions().to_vec());
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::other("cannot flush"))
                }
            }
        });
        let runner = runner(sub);
        runner.revoked(&revoked(&[1, 0]));
        runner.revoked(&revoked(&[2]));
        runner.revoked(&revoked(&[]));
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 2, "never called with nothing");
        assert_eq!(
            seen[0],
            [0, 1].map(|p| StreamPartition {
                stream: "s".into(),
                topic: "p.s".into(),
                partition: p,
            })
        );
        let metrics = runner.metrics.encode();
        let counted = |error: &str| {
            metrics.lines().any(|l| {
                l.starts_with("kafkaesk_kafka_action_total")
                    && l.contains("type=\"rebalance_on_revoked\"")
                    && l.contains(&format!("error=\"{error}\""))
                    && l.ends_with(" 1")
            })
        };
        assert!(counted("none") && counted("exception"), "{metrics}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_hook_that_hangs_is_cut_and_its_seeks_dropped() {
        let sub = Subscription::new("s", on_bytes)
            .on_assigned(|assigned: Assigned| async move {
                assigned.seek("s", 0, Position::Offset(3))?;
                std::future::pending::<()>().await;
                Ok::<_, crate::Error>(())
            })
            .with_rebalance_hook_timeout(Duration::from_millis(200));
        let runner = runner(sub);
        let consumer: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:1")
            .create()
            .unwrap();
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition("p.s", 0);
        runner.assigned(&consumer, &mut assignment);
        let offset = assignment.find_partition("p.s", 0).map(|e| e.offset());
        assert_eq!(offset, Some(Offset::Invalid), "the seek was dropped");
        assert!(runner.metrics.encode().contains("rebalance_on_assigned"));
    }
}
