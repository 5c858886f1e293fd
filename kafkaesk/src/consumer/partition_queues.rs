//! Record queues: a subscription takes its records from queues of its own,
//! in batches, and the consumer's queue is left to librdkafka's events.
//!
//! Records are taken many at a time (`rd_kafka_consume_batch_queue`), as
//! librdkafka's own messages ([`FetchedMessage`]). rdkafka pops one event per
//! message instead, and that pop, with librdkafka's poll bookkeeping around
//! it, cost more per message than everything else the consumer does outside
//! the handler and the decoding. Batches cannot be taken from the consumer's
//! queue: it also carries the rebalance events, which rdkafka serves as
//! events, and a batch call that meets one drops the assignment. So each
//! partition is split off before it is assigned (in the rebalance callback,
//! or before a self-assignment), and none of its records reaches the
//! consumer's queue: librdkafka does not forward again, when it starts a
//! partition, a queue the application has forwarded. The consumer's queue is
//! still read each turn, for rebalances, commit results and errors.
//!
//! An unordered subscription forwards every partition to one queue of its
//! own. librdkafka's prefetch limits (`queued.min.messages`,
//! `queued.max.messages.kbytes`) hold for the queue that records end up in,
//! so they bound the whole subscription, as they bound the consumer's queue.
//!
//! An ordered subscription reads each partition from the partition's own
//! queue. librdkafka fills a queue a fetch response's worth of one partition
//! at a time: with a backlog, thousands of records in a row of one partition.
//! Under [`RecordOrder::Partition`] a partition's records run one at a time,
//! so a subscription that took records from one queue would run one record
//! at a time while the other partitions' records waited behind the run;
//! under [`RecordOrder::Key`] a batch of one partition holds all of that
//! partition's hot keys, and waits for the slowest of them. So an ordered subscription takes a fair share of each
//! batch from every partition in turn. librdkafka's prefetch limits then
//! hold for each partition on its own, as its documentation says of
//! partition queues, so kafkaesk's default bound is a quarter of an
//! unordered subscription's there (see `Settings::consumer_config`).
//!
//! A partition whose queue cannot be opened keeps sending its records to the
//! consumer's queue, where the consumer still finds them.

use std::sync::Arc;
use std::task::Poll;

use futures::task::AtomicWaker;
use rdkafka::error::KafkaError;

use super::offsets::{OffsetBook, TopicPartition};
use super::KafkaConsumer;
use crate::native::queue::RecordQueue;
use crate::record::{PendingRecord, TopicNames};
use crate::subscription::RecordOrder;

/// The queues a subscription takes its records from: each assigned
/// partition's own, taken from in turn, for an ordered subscription; one
/// queue that every assigned partition forwards to, for an unordered one.
pub(super) struct PartitionQueues {
    // Dropped first: each queue stops waking `waker` before it goes, and
    // goes before the consumer it belongs to.
    queues: Vec<(TopicPartition, RecordQueue)>,
    /// An unordered subscription's one queue (`queues` stays empty).
    shared: Option<RecordQueue>,
    /// Whether a partition's records run one after another, so that a batch
    /// takes no more than an even share of its room from any partition.
    partition_order: bool,
    /// Woken by librdkafka when a record reaches an empty queue.
    waker: Arc<AtomicWaker>,
    consumer: Arc<KafkaConsumer>,
    /// The queue whose turn is next.
    turn: usize,
    /// The book's revocation count and assignment size when the queues last
    /// followed it.
    seen_revocations: u64,
    seen_assigned: usize,
}

impl PartitionQueues {
    /// The queues of `consumer`'s partitions, laid out for a subscription
    /// of `order`: one for all partitions when unordered, else one each.
    pub(super) fn new(consumer: Arc<KafkaConsumer>, order: RecordOrder) -> Self {
        let waker = Arc::new(AtomicWaker::new());
        let shared = if order != RecordOrder::Unordered {
            None
        } else {
            let shared = RecordQueue::new_shared(&*consumer, &waker);
            if shared.is_none() {
                tracing::warn!("could not create the subscription's record queue; reading each partition's own");
            }
            shared
        };
        PartitionQueues {
            queues: Vec::new(),
            shared,
            partition_order: order == RecordOrder::Partition,
            waker,
            consumer,
            turn: 0,
            seen_revocations: 0,
            seen_assigned: 0,
        }
    }

    /// Follows the assignment: sends the records of newly assigned
    /// partitions to the shared queue, or opens their own queues and closes
    /// those of revoked ones. Cheap when nothing changed: between
    /// revocations, the assignment only grows.
    pub(super) fn follow(&mut self, book: &OffsetBook) {
        if book.revocations == self.seen_revocations && book.assigned.len() == self.seen_assigned {
            return;
        }
        self.seen_revocations = book.revocations;
        self.seen_assigned = book.assigned.len();
        if let Some(shared) = &self.shared {
            // Every assigned partition, not only the new ones: the rebalance
            // callback forwards a partition it assigns nowhere (see
            // `keep_apart`), reassigned ones included, and forwarding again
            // to the same queue changes nothing.
            for tp in &book.assigned {
                if !shared.receive_from(&*self.consumer, &tp.0, tp.1) {
                    warn_unopened(tp);
                }
            }
            return;
        }
        self.queues.retain(|(tp, _)| book.assigned.contains(tp));
        let mut added = false;
        for tp in &book.assigned {
            if self.queues.iter().any(|(open, _)| open == tp) {
                continue;
            }
            match RecordQueue::open_partition(&*self.consumer, &tp.0, tp.1, &self.waker) {
                Some(queue) => {
                    self.queues.push((tp.clone(), queue));
                    added = true;
                }
                None => warn_unopened(tp),
            }
        }
        if added {
            self.queues.sort_by(|(a, _), (b, _)| a.cmp(b));
        }
        self.turn = 0;
    }

    /// Moves waiting records into `batch` until it holds `limit`, without
    /// waiting. From the shared queue, in the order they came; from the
    /// partitions' own queues, a fair share of the room left from each (see
    /// [`fair_shares`]), so that one partition's backlog does not fill a
    /// batch that other partitions' records could run beside.
    /// Returns the errors librdkafka reported in place of records (a failed
    /// fetch).
    ///
    /// `consumer` is the consumer the queues belong to, borrowed for as long
    /// as the records are.
    pub(super) fn take<'c>(
        &mut self,
        consumer: &'c KafkaConsumer,
        batch: &mut Vec<PendingRecord<'c>>,
        limit: usize,
        names: &mut TopicNames,
    ) -> Vec<KafkaError> {
        debug_assert!(std::ptr::eq(consumer, &*self.consumer));
        let mut errors = Vec::new();
        let taken = batch.len();
        let mut each = |message| match message {
            Ok(message) => batch.push(names.pending(message)),
            Err(error) => errors.push(error),
        };
        if let Some(shared) = &self.shared {
            if taken < limit {
                shared.take(limit - taken, &mut each);
            }
            return errors;
        }
        let count = self.queues.len();
        if taken >= limit || count == 0 {
            return errors;
        }
        let holds: Vec<usize> = self.queues.iter().map(|(_, queue)| queue.len()).collect();
        let first = self.turn % count;
        let room = limit - taken;
        // Under partition order, records of one partition beyond its share
        // would only lengthen the batch: they run one after another, while
        // the records that other partitions receive meanwhile wait for the
        // next batch. Under key order they run beside each other.
        let most_each = if self.partition_order {
            room.div_ceil(count)
        } else {
            room
        };
        let shares = fair_shares(&holds, room, most_each, first);
        let mut took = 0;
        for step in 0..count {
            let index = (first + step) % count;
            if shares[index] > 0 {
                took += self.queues[index].1.take(shares[index], &mut each);
            }
        }
        if took > 0 {
            // The odd records of the next uneven split go to the next queues.
            self.turn = first + 1;
        }
        errors
    }

    /// Waits until a queue holds something to take; never, without queues.
    /// Cancel-safe: nothing is taken.
    pub(super) async fn readable(&self) {
        if self.shared.is_none() && self.queues.is_empty() {
            return std::future::pending().await;
        }
        std::future::poll_fn(|cx| {
            // Registered before looking: a record that comes after the look
            // wakes this task.
            self.waker.register(cx.waker());
            let holds_any = match &self.shared {
                Some(shared) => shared.holds_any(),
                None => self.queues.iter().any(|(_, queue)| queue.holds_any()),
            };
            if holds_any {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }
}

/// Splits `room` records between queues that hold `holds` records, at most
/// `most_each` to a queue: each queue gets an equal share, or all it holds
/// where that is less, and what those leave is split between the others
/// alike. Where the room does not split evenly, the queues from `first` on
/// (wrapping around) get one more.
fn fair_shares(holds: &[usize], room: usize, most_each: usize, first: usize) -> Vec<usize> {
    let count = holds.len();
    let mut shares = vec![0; count];
    let mut left = room;
    while left > 0 {
        let open: Vec<usize> = (0..count)
            .map(|step| (first + step) % count)
            .filter(|&index| shares[index] < holds[index].min(most_each))
            .collect();
        if open.is_empty() {
            break;
        }
        let each = left / open.len();
        let mut odd = left % open.len();
        for index in open {
            let mut share = each;
            if odd > 0 {
                share += 1;
                odd -= 1;
            }
            let given = share.min(holds[index].min(most_each) - shares[index]);
            shares[index] += given;
            left -= given;
        }
    }
    shares
}

/// Says that `tp`'s queue could not be opened, and where its records go.
fn warn_unopened(tp: &TopicPartition) {
    tracing::warn!(
        topic = %tp.0,
        partition = tp.1,
        "could not open the partition's queue; its records come through the consumer's"
    );
}

#[cfg(test)]
mod tests {
    use super::fair_shares;

    #[test]
    fn every_queue_with_records_gets_an_equal_share() {
        let holds = [113, 101, 88, 93, 130, 120, 41];
        let shares = fair_shares(&holds, 256, 256, 0);
        assert_eq!(shares, vec![37, 37, 37, 37, 36, 36, 36]);
        assert_eq!(shares.iter().sum::<usize>(), 256);
    }

    #[test]
    fn what_a_short_queue_leaves_goes_to_the_others() {
        assert_eq!(fair_shares(&[5, 100, 100], 90, 90, 0), vec![5, 43, 42]);
        assert_eq!(
            fair_shares(&[0, 0, 0, 0, 0, 0, 105], 64, 64, 3),
            vec![0, 0, 0, 0, 0, 0, 64]
        );
    }

    #[test]
    fn a_queue_gets_no_more_than_the_most_each() {
        // Partition order: the other partitions' room is left empty.
        assert_eq!(
            fair_shares(&[0, 0, 0, 0, 0, 0, 105], 64, 10, 0),
            vec![0, 0, 0, 0, 0, 0, 10]
        );
        assert_eq!(fair_shares(&[5, 100, 100], 90, 30, 0), vec![5, 30, 30]);
    }

    #[test]
    fn odd_records_go_to_the_queues_from_the_turn_on() {
        assert_eq!(fair_shares(&[10, 10, 10], 4, 4, 0), vec![2, 1, 1]);
        assert_eq!(fair_shares(&[10, 10, 10], 4, 4, 1), vec![1, 2, 1]);
        assert_eq!(fair_shares(&[10, 10, 10], 4, 4, 2), vec![1, 1, 2]);
    }

    #[test]
    fn never_more_than_the_room_or_what_queues_hold() {
        assert_eq!(fair_shares(&[3, 0, 2], 100, 100, 0), vec![3, 0, 2]);
        assert_eq!(fair_shares(&[3, 4], 0, 0, 1), vec![0, 0]);
        assert_eq!(fair_shares(&[], 10, 10, 0), Vec::<usize>::new());
    }
}
