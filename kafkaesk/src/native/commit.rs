//! Asynchronous commits whose answers come back.
//!
//! rdkafka's `commit(_, CommitMode::Async)` never reports how the commit
//! went: librdkafka answers an asynchronous manual commit only through an
//! `offset_commit_cb`, which rdkafka does not set (it uses librdkafka's event
//! interface). So the consumer would never learn which offsets the broker
//! confirmed, and a stop would have to commit synchronously, blocking its
//! thread for as long as the broker takes, without bound.
//!
//! [`commit_async`] commits with `rd_kafka_commit_queue` instead, naming the
//! consumer's own queue for the answer: it arrives there as an offset-commit
//! event, which rdkafka hands to the context's `commit_callback` when the
//! consumer loop polls that queue, as it does every turn.

use std::ptr;

use rdkafka::bindings as rd;
use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::TopicPartitionList;

use super::owned::Owned;

/// Asks the broker to commit `offsets`; the answer comes to the consumer's
/// `commit_callback`.
pub(crate) fn commit_async<C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    offsets: &TopicPartitionList,
) -> KafkaResult<()> {
    let rk = consumer.client().native_ptr();
    // SAFETY: a live consumer; the returned handle holds a reference to its
    // queue, ours to release.
    let queue = unsafe { Owned::from_ptr(rd::rd_kafka_queue_get_consumer(rk)) }
        .ok_or(KafkaError::ConsumerCommit(RDKafkaErrorCode::UnknownGroup))?;
    // SAFETY: a live consumer, queue and list, borrowed for the call:
    // librdkafka copies the list and keeps a reference of its own to the
    // queue until it has put the answer there.
    let err =
        unsafe { rd::rd_kafka_commit_queue(rk, offsets.ptr(), queue.ptr(), None, ptr::null_mut()) };
    if err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        Ok(())
    } else {
        Err(KafkaError::ConsumerCommit(err.into()))
    }
}
