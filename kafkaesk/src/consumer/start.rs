//! Where a subscription starts: placing newly assigned partitions at the
//! subscription's [`Position`].
//!
//! - **A group with no commit** for a partition starts at the position. The
//!   placed offset is committed at once (when the position is not the
//!   earliest), so a member that gets the partition after a rebalance goes
//!   on from there rather than placing it again later, which for `latest`
//!   would skip what was published in between.
//! - **A replay** places a partition whatever the group has committed, and
//!   commits the placed offset with the metadata `kafkaesk-replay:<id>`.
//!   Every later commit of the subscription carries that metadata too, so a
//!   member that finds it on a partition's commit knows the replay was done
//!   and goes on from the commit: the replay happens once per group, not
//!   once per member, rebalance or restart. Each application also
//!   remembers the partitions it replayed, so it never replays one twice
//!   even on a broker that does not keep commit metadata (tansu 0.6 does
//!   not; see `RELIABILITY.md`).
//! - **Without a group** every partition starts at the position, each time
//!   the subscription starts.
//!
//! Every placement is logged with the partitions and offsets. A failed
//! lookup leaves the partitions where the group's commits (or
//! `auto.offset.reset`) put them, and says so; nothing is skipped then.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};

use crate::app::SubscriptionControl;
use crate::error::Result;
use crate::subscription::position::offsets_for_time;
use crate::subscription::Position;
use crate::subscription::Subscription;

/// The commit metadata that marks a replay as done, before its id.
pub(crate) const REPLAY_METADATA_PREFIX: &str = "kafkaesk-replay:";

/// How long one lookup (commits, watermarks, times) may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// How a subscription's partitions are placed when assigned.
pub(crate) struct StartPlan {
    subscription: Arc<str>,
    position: Position,
    /// `kafkaesk-replay:<id>` for a replay.
    replay: Option<String>,
    /// Whether the consumer has a group whose commits count.
    grouped: bool,
    control: Arc<SubscriptionControl>,
}

type Partition = (String, i32);

impl StartPlan {
    /// The plan of `subscription`, or `None` where librdkafka's own
    /// `auto.offset.reset` (earliest) already does it.
    pub(crate) fn new(
        subscription: &Subscription,
        control: Arc<SubscriptionControl>,
    ) -> Option<Self> {
        let start = subscription.get_start();
        let grouped = subscription.group().is_some();
        let position = subscription.start_at();
        if grouped && start.replay.is_none() && position == Position::Earliest {
            return None;
        }
        Some(StartPlan {
            subscription: subscription.shared_name().clone(),
            position,
            replay: start
                .replay
                .as_ref()
                .map(|id| format!("{REPLAY_METADATA_PREFIX}{id}")),
            grouped,
            control,
        })
    }

    /// The metadata every commit of the subscription carries: the replay's mark.
    pub(crate) fn commit_metadata(&self) -> Option<&str> {
        self.replay.as_deref()
    }

    /// Sets the start offset of the partitions of `assignment` that start at
    /// the position (see the module docs), before they are assigned.
    pub(crate) fn place<C: ConsumerContext>(
        &self,
        consumer: &impl Consumer<C>,
        assignment: &mut TopicPartitionList,
    ) {
        let assigned: Vec<Partition> = assignment
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        // A replay moves each partition once per application.
        let candidates = if self.replay.is_some() {
            self.control.place_once(&assigned)
        } else {
            assigned
        };
        if candidates.is_empty() {
            return;
        }
        match self.try_place(consumer, assignment, &candidates) {
            Ok(placed) if placed.is_empty() => {}
            Ok(placed) => {
                let list = placed
                    .iter()
                    .map(|((topic, partition), offset)| format!("{topic}/{partition}@{offset}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                if self.replay.is_some() {
                    tracing::info!(
                        subscription = %self.subscription,
                        position = %self.position,
                        partitions = %list,
                        "replaying from the start position; the group's committed offsets of \
                         these partitions are passed over this once"
                    );
                } else {
                    tracing::info!(
                        subscription = %self.subscription,
                        position = %self.position,
                        partitions = %list,
                        "starting at the start position: nothing committed yet"
                    );
                }
            }
            Err(err) => {
                if self.replay.is_some() {
                    self.control.unplace(&candidates);
                }
                tracing::warn!(
                    subscription = %self.subscription,
                    position = %self.position,
                    error = %err,
                    "could not place partitions at the start position; they go on from the \
                     group's commits (or auto.offset.reset), and are placed at the next assignment"
                );
            }
        }
    }

    /// Places those of `candidates` that start at the position; returns them
    /// with their offsets.
    fn try_place<C: ConsumerContext>(
        &self,
        consumer: &impl Consumer<C>,
        assignment: &mut TopicPartitionList,
        candidates: &[Partition],
    ) -> Result<Vec<(Partition, i64)>> {
        let targets = if self.grouped {
            self.without_commit(consumer, candidates)?
        } else {
            candidates.to_vec()
        };
        if targets.is_empty() {
            return Ok(Vec::new());
        }
        let refs: Vec<(&str, i32)> = targets.iter().map(|(t, p)| (t.as_str(), *p)).collect();
        let at_times = offsets_for_time(consumer, &refs, self.position.time(), LOOKUP_TIMEOUT)?;
        let mut placed = Vec::with_capacity(targets.len());
        let mut commits = TopicPartitionList::new();
        for ((topic, partition), at_time) in targets.into_iter().zip(at_times) {
            let watermarks = consumer.fetch_watermarks(&topic, partition, LOOKUP_TIMEOUT)?;
            let offset = self.position.offset_within(at_time, watermarks);
            assignment.set_partition_offset(&topic, partition, Offset::Offset(offset))?;
            commits.add_partition_offset(&topic, partition, Offset::Offset(offset))?;
            placed.push(((topic, partition), offset));
        }
        // Committed at once so the placement holds for the group: see the
        // module docs. The earliest needs no commit to hold.
        if self.grouped && (self.replay.is_some() || self.position != Position::Earliest) {
            if let Some(mark) = &self.replay {
                for mut elem in commits.elements() {
                    elem.set_metadata(mark.as_str());
                }
            }
            consumer.commit(&commits, CommitMode::Sync)?;
        }
        Ok(placed)
    }

    /// Of `candidates`, those the position applies to in the group: with no
    /// commit, or, for a replay, whose commit does not carry its mark.
    fn without_commit<C: ConsumerContext>(
        &self,
        consumer: &impl Consumer<C>,
        candidates: &[Partition],
    ) -> Result<Vec<Partition>> {
        let mut query = TopicPartitionList::new();
        for (topic, partition) in candidates {
            query.add_partition(topic, *partition);
        }
        let committed = consumer.committed_offsets(query, LOOKUP_TIMEOUT)?;
        Ok(candidates
            .iter()
            .filter(|(topic, partition)| {
                let elem = committed.find_partition(topic, *partition);
                match &self.replay {
                    Some(mark) => elem.is_none_or(|e| e.metadata() != mark),
                    None => elem.is_none_or(|e| !matches!(e.offset(), Offset::Offset(_))),
                }
            })
            .cloned()
            .collect())
    }
}
