//! Subscriptions that assign their partitions themselves: those without a
//! group, and those limited to chosen partitions.
//!
//! Rather than join a group and be balanced, the consumer looks up the
//! streams matching its subscription in the broker's metadata and is
//! assigned every partition (or the chosen ones). It looks again every
//! `topic.metadata.refresh.interval.ms` (5 s by default), and partitions
//! that appear later, of new streams or added to existing ones, are read
//! from their first record: everything in them is newer than the
//! subscription's start.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};
use tokio::time::Instant;

use super::offsets::TopicPartition;
use super::BatchConsumer;
use crate::error::{Error, Result};
use crate::sync::lock;

/// How long the metadata lookup may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// The partitions a self-assigning consumer has, and when it looks again.
pub(super) struct SelfAssignment {
    known: HashSet<TopicPartition>,
    /// Whether the first assignment was made: later partitions start at
    /// their first record, not at the subscription's position.
    started: bool,
    pub(super) next_look: Instant,
    every: Duration,
}

impl SelfAssignment {
    pub(super) fn new(every: Duration) -> Self {
        SelfAssignment {
            known: HashSet::new(),
            started: false,
            next_look: Instant::now(),
            every,
        }
    }
}

impl BatchConsumer {
    /// Assigns the partitions of matching streams not assigned yet.
    pub(super) async fn assign_new_partitions(
        &self,
        assignment: &mut SelfAssignment,
    ) -> Result<()> {
        assignment.next_look = Instant::now() + assignment.every;
        let consumer = self.consumer.clone();
        let streams = self.subscription.streams().clone();
        let chosen = self.subscription.partitions().map(<[i32]>::to_vec);
        let prefix = self.scope.app.settings().topic_prefix.clone();
        let known = assignment.known.clone();
        let found = tokio::task::spawn_blocking(move || -> Result<Vec<TopicPartition>> {
            let metadata = consumer.fetch_metadata(None, LOOKUP_TIMEOUT)?;
            let mut found = Vec::new();
            for topic in metadata.topics() {
                if topic.error().is_some() || !streams.matches_topic(&prefix, topic.name()) {
                    continue;
                }
                for partition in topic.partitions() {
                    let tp = (Arc::from(topic.name()), partition.id());
                    let wanted = chosen.as_ref().is_none_or(|c| c.contains(&tp.1));
                    if wanted && !known.contains(&tp) {
                        found.push(tp);
                    }
                }
            }
            found.sort();
            Ok(found)
        })
        .await
        .map_err(|_| Error::Stopped)??;
        if found.is_empty() {
            assignment.started = true;
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for (topic, partition) in &found {
            let offset = if assignment.started {
                Offset::Beginning
            } else if self.subscription.group().is_some() {
                // The group's commit, else the start plan's or auto.offset.reset's.
                Offset::Invalid
            } else {
                Offset::Beginning
            };
            tpl.add_partition_offset(topic, *partition, offset)?;
        }
        if !assignment.started {
            if let Some(start) = &self.consumer.context().start {
                start.place(&*self.consumer, &mut tpl);
            }
        }
        // As a group's rebalance would: after the start position, before the
        // assignment.
        if let Some(hooks) = &self.consumer.context().hooks {
            hooks.assigned(&*self.consumer, &mut tpl);
        }
        crate::native::queue::keep_apart(&*self.consumer, &tpl);
        self.consumer.incremental_assign(&tpl)?;
        self.consumer
            .context()
            .pause_assigned(&*self.consumer, &found);
        let assigned = {
            let mut book = lock(&self.book);
            book.assigned.extend(found.iter().cloned());
            book.assigned_sorted()
        };
        tracing::info!(
            subscription = %self.scope.name,
            partitions = found.len(),
            first = !assignment.started,
            "partitions assigned by the subscription itself"
        );
        for (topic, partition) in &found {
            self.monitor
                .metrics
                .rebalanced(topic, *partition, "assigned");
        }
        self.monitor.assigned(assigned);
        assignment.known.extend(found);
        assignment.started = true;
        Ok(())
    }
}
