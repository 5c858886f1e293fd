//! Queues of consumed records in librdkafka: a partition's own queue split
//! off from the consumer's, or one that partitions forward to, read many
//! records at a time (`rd_kafka_consume_batch_queue`) and waking a task when
//! a record reaches one that was empty. What the queues are for, and how a
//! subscription takes turns between them, is the consumer's
//! (`consumer/partition_queues.rs`).

use std::ffi::{c_void, CString};
use std::ptr::{self, NonNull};
use std::sync::Arc;

use futures::task::AtomicWaker;
use rdkafka::bindings as rd;
use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::TopicPartitionList;

use super::message::FetchedMessage;
use super::owned::Owned;

/// Most records taken from one queue in one call: the size of the array
/// librdkafka fills, on the stack.
const MOST_IN_ONE_CALL: usize = 64;

/// Keeps the records of `partitions`, about to be assigned, in their own
/// queues rather than forwarding them to the consumer's queue.
pub(crate) fn keep_apart<C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    partitions: &TopicPartitionList,
) {
    for element in partitions.elements() {
        let Some(queue) = partition_queue(consumer, element.topic(), element.partition()) else {
            continue;
        };
        // SAFETY: a live handle, released when it drops; the forwarding set
        // on the partition's queue outlives it.
        unsafe { rd::rd_kafka_queue_forward(queue.ptr(), ptr::null_mut()) };
    }
}

/// A handle on a queue of records: a partition's own, split off from the
/// consumer's, or one that partitions forward to.
pub(crate) struct RecordQueue(Owned<rd::rd_kafka_queue_t>);

// SAFETY: librdkafka's queue calls lock the queue; the handle may be used
// and destroyed on any thread.
unsafe impl Send for RecordQueue {}
// SAFETY: as above.
unsafe impl Sync for RecordQueue {}

impl RecordQueue {
    /// Opens the queue of `tp`, kept from the consumer's queue, waking
    /// `waker` whenever a record reaches it empty.
    pub(crate) fn open_partition<C: ConsumerContext>(
        consumer: &impl Consumer<C>,
        topic: &str,
        partition: i32,
        waker: &Arc<AtomicWaker>,
    ) -> Option<Self> {
        let queue = RecordQueue(partition_queue(consumer, topic, partition)?);
        // SAFETY: a live queue.
        unsafe { rd::rd_kafka_queue_forward(queue.0.ptr(), ptr::null_mut()) };
        queue.wake(waker);
        Some(queue)
    }

    /// A new queue for partitions to forward their records to, waking
    /// `waker` whenever a record reaches it empty.
    ///
    /// librdkafka's prefetch limits (`queued.min.messages`,
    /// `queued.max.messages.kbytes`) hold for the queue a partition's records
    /// end up in: for this one, as for the consumer's, they bound all
    /// partitions together.
    pub(crate) fn new_shared<C: ConsumerContext>(
        consumer: &impl Consumer<C>,
        waker: &Arc<AtomicWaker>,
    ) -> Option<Self> {
        // SAFETY: a live consumer; the queue is the handle's own, destroyed
        // with it.
        let queue =
            unsafe { Owned::from_ptr(rd::rd_kafka_queue_new(consumer.client().native_ptr())) };
        let queue = RecordQueue(queue?);
        queue.wake(waker);
        Some(queue)
    }

    /// Forwards the records of `tp` to this queue. False when the
    /// partition's queue could not be opened.
    pub(crate) fn receive_from<C: ConsumerContext>(
        &self,
        consumer: &impl Consumer<C>,
        topic: &str,
        partition: i32,
    ) -> bool {
        let Some(partition) = partition_queue(consumer, topic, partition) else {
            return false;
        };
        // SAFETY: both queues live. librdkafka moves what the partition's
        // queue holds into this one, and keeps a reference to this one for
        // the forwarding; the partition's handle is released when it drops.
        unsafe { rd::rd_kafka_queue_forward(partition.ptr(), self.0.ptr()) };
        true
    }

    /// Has librdkafka wake `waker` whenever a record reaches the queue empty.
    fn wake(&self, waker: &Arc<AtomicWaker>) {
        // SAFETY: a live queue. The waker outlives the callback: the queues
        // are dropped before it (see `PartitionQueues`), and `drop` turns
        // the callback off under the queue's lock, which librdkafka holds
        // while it calls it.
        unsafe {
            rd::rd_kafka_queue_cb_event_enable(
                self.0.ptr(),
                Some(wake),
                Arc::as_ptr(waker).cast_mut().cast::<c_void>(),
            );
        }
    }

    /// Takes up to `most` records (or errors in their place), without
    /// waiting, and hands each to `each`. Returns how many it took.
    pub(crate) fn take<'c>(
        &self,
        most: usize,
        mut each: impl FnMut(Result<FetchedMessage<'c>, KafkaError>),
    ) -> usize {
        let mut total = 0;
        let mut taken = [ptr::null_mut::<rd::rd_kafka_message_t>(); MOST_IN_ONE_CALL];
        while total < most {
            let wanted = (most - total).min(MOST_IN_ONE_CALL);
            // SAFETY: a live queue, and an array of `wanted` slots for it
            // to fill; a timeout of 0 does not wait.
            let got = unsafe {
                rd::rd_kafka_consume_batch_queue(self.0.ptr(), 0, taken.as_mut_ptr(), wanted)
            };
            let Ok(got) = usize::try_from(got) else {
                // -1: not a consumer's queue, which this is.
                break;
            };
            for &message in &taken[..got] {
                if let Some(message) = NonNull::new(message) {
                    // SAFETY: librdkafka handed the message to the
                    // application, and nothing else holds it; the queue
                    // belongs to a consumer that outlives 'c (the caller's
                    // borrow of it).
                    each(unsafe { FetchedMessage::take(message) });
                }
            }
            total += got;
            if got < wanted {
                break;
            }
        }
        total
    }

    /// How many records (or errors in their place) the queue holds.
    pub(crate) fn len(&self) -> usize {
        // SAFETY: a live queue.
        unsafe { rd::rd_kafka_queue_length(self.0.ptr()) }
    }

    /// Whether the queue holds anything: records, or an error in their place.
    pub(crate) fn holds_any(&self) -> bool {
        self.len() > 0
    }
}

impl Drop for RecordQueue {
    fn drop(&mut self) {
        // SAFETY: a live queue (its `Owned` destroys it after this); the
        // callback is off before the handle (and, after it, the waker) can go.
        unsafe { rd::rd_kafka_queue_cb_event_enable(self.0.ptr(), None, ptr::null_mut()) };
    }
}

/// A new handle on the queue of `partition` of `topic`; `None` for a partition librdkafka does not know.
fn partition_queue<C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    topic: &str,
    partition: i32,
) -> Option<Owned<rd::rd_kafka_queue_t>> {
    let topic = CString::new(topic).ok()?;
    // SAFETY: a live consumer, borrowed for the call; the returned handle
    // holds a reference to the partition's queue, ours to release.
    unsafe {
        Owned::from_ptr(rd::rd_kafka_queue_get_partition(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
        ))
    }
}

/// librdkafka's callback when a record reaches an empty record queue;
/// called on one of its threads, with the queue locked.
unsafe extern "C" fn wake(_client: *mut rd::rd_kafka_t, waker: *mut c_void) {
    // SAFETY: the `AtomicWaker` `open` registered, alive while the callback
    // is on (see `RecordQueue::wake`).
    unsafe { &*waker.cast::<AtomicWaker>() }.wake();
}
