//! Partition queues: an ordered subscription reads each partition from its
//! own queue.
//!
//! librdkafka forwards every assigned partition's records into the
//! consumer's one queue, a fetch response's worth of one partition at a
//! time: with a backlog, thousands of records in a row of one partition.
//! Under [`RecordOrder::Partition`](crate::ordering::RecordOrder::Partition)
//! a partition's records run one at a time, so a subscription that took
//! records from that one queue would run one record at a time while the
//! other partitions' records waited behind the run; under
//! [`RecordOrder::Key`](crate::ordering::RecordOrder::Key) a batch of one
//! partition holds all of that partition's hot keys, and waits for the
//! slowest of them. An ordered subscription instead keeps each partition's
//! records in the partition's own queue, and takes from every partition in
//! turn.
//!
//! A partition is split off before it is assigned (in the rebalance
//! callback, or before a self-assignment), so none of its records reaches the
//! consumer's queue: librdkafka does not forward again, when it starts a
//! partition, a queue the application has forwarded. The consumer's own
//! queue is still read each turn, for rebalances and other events.
//!
//! Records taken from a partition queue are owned copies: the queues come
//! and go with rebalances, and a borrowed record cannot outlive its queue.
//! Unordered subscriptions, whose quick handlers would pay for the copy,
//! read the consumer's queue.

use std::ffi::CString;
use std::sync::Arc;

use futures::FutureExt;
use rdkafka::bindings as rd;
use rdkafka::consumer::stream_consumer::StreamPartitionQueue;
use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::error::KafkaResult;
use rdkafka::TopicPartitionList;

use super::offsets::{OffsetBook, RebalanceContext, TopicPartition};
use super::KafkaConsumer;
use crate::record::{Record, TopicNames};

/// Keeps the records of `partitions`, about to be assigned, in their own
/// queues rather than forwarding them to the consumer's queue.
pub(super) fn keep_apart<C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    partitions: &TopicPartitionList,
) {
    let client = consumer.client().native_ptr();
    for element in partitions.elements() {
        let Ok(topic) = CString::new(element.topic()) else {
            continue;
        };
        // SAFETY: `client` is a live consumer for the whole call (borrowed
        // from `consumer`). The handle librdkafka returns only holds a
        // reference to the partition's queue, released by destroying it;
        // the forwarding set on the queue outlives the handle.
        unsafe {
            let queue =
                rd::rd_kafka_queue_get_partition(client, topic.as_ptr(), element.partition());
            if queue.is_null() {
                continue;
            }
            rd::rd_kafka_queue_forward(queue, std::ptr::null_mut());
            rd::rd_kafka_queue_destroy(queue);
        }
    }
}

/// The queues of a consumer's assigned partitions, taken from in turn.
#[derive(Default)]
pub(super) struct PartitionQueues {
    queues: Vec<(TopicPartition, StreamPartitionQueue<RebalanceContext>)>,
    /// The queue whose turn is next.
    turn: usize,
    /// The book's revocation count when the queues last followed it.
    seen_revocations: u64,
}

impl PartitionQueues {
    /// Follows the assignment: opens the queues of newly assigned partitions
    /// and closes those of revoked ones. Cheap when nothing changed: between
    /// revocations, the assignment only grows.
    pub(super) fn follow(&mut self, consumer: &Arc<KafkaConsumer>, book: &OffsetBook) {
        if book.revocations == self.seen_revocations && book.assigned.len() == self.queues.len() {
            return;
        }
        self.seen_revocations = book.revocations;
        self.queues.retain(|(tp, _)| book.assigned.contains(tp));
        let mut added = false;
        for tp in &book.assigned {
            if self.queues.iter().any(|(open, _)| open == tp) {
                continue;
            }
            match consumer.split_partition_queue(&tp.0, tp.1) {
                Some(queue) => {
                    self.queues.push((tp.clone(), queue));
                    added = true;
                }
                None => tracing::warn!(
                    topic = %tp.0,
                    partition = tp.1,
                    "could not open the partition's queue; its records come through the consumer's"
                ),
            }
        }
        if added {
            self.queues.sort_by(|(a, _), (b, _)| a.cmp(b));
        }
        self.turn = 0;
    }

    /// A record of the next partition in turn that has one, without waiting.
    pub(super) fn try_next(&mut self, names: &mut TopicNames) -> Option<KafkaResult<Record>> {
        let count = self.queues.len();
        for step in 0..count {
            let index = (self.turn + step) % count;
            if let Some(taken) = self.queues[index].1.recv().now_or_never() {
                self.turn = index + 1;
                return Some(taken.map(|message| names.record(&message)));
            }
        }
        None
    }

    /// The next record of any partition, once one comes; never, without
    /// partitions. Cancel-safe: a record is taken only when it is returned.
    pub(super) async fn next(&mut self, names: &mut TopicNames) -> KafkaResult<Record> {
        if self.queues.is_empty() {
            return std::future::pending().await;
        }
        let waits = self.queues.iter().map(|(_, queue)| Box::pin(queue.recv()));
        let (taken, index, others) = futures::future::select_all(waits).await;
        let taken = taken.map(|message| names.record(&message));
        drop(others);
        self.turn = index + 1;
        taken
    }
}
