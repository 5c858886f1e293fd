//! Consumed messages in librdkafka's memory, read in place.
//!
//! rdkafka's `BorrowedMessage` is one message in an event of its own, popped
//! from the consumer's queue one at a time: per message, the pop takes the
//! queue's lock, reads the clock twice for librdkafka's poll bookkeeping,
//! updates the partition's position under its lock, and allocates the event's
//! `Arc`. The callgrind count of the consume benchmark put that at about a
//! thousand instructions a message. A subscription instead takes its records
//! from its partition queues in batches (`rd_kafka_consume_batch_queue`, see
//! [`partition_queues`](crate::consumer)), as librdkafka's own messages:
//! [`FetchedMessage`] owns one of those, and [`MessageView`] reads either kind
//! without copying.

use std::borrow::Cow;
use std::ffi::CStr;
use std::marker::PhantomData;
use std::ptr::NonNull;

use rdkafka::bindings as rdsys;
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;

use super::owned::Owned;

/// A consumed message as librdkafka keeps it, read without copying.
#[derive(Clone, Copy)]
pub(crate) struct MessageView<'m>(&'m rdsys::rd_kafka_message_t);

impl<'m> MessageView<'m> {
    /// A view of a message rdkafka delivered.
    pub(crate) fn of(message: &'m BorrowedMessage<'_>) -> Self {
        // SAFETY: the message is live, and unchanged, while it is borrowed.
        MessageView(unsafe { &*message.ptr() })
    }

    pub(crate) fn partition(self) -> i32 {
        self.0.partition
    }

    pub(crate) fn offset(self) -> i64 {
        self.0.offset
    }

    pub(crate) fn key(self) -> Option<&'m [u8]> {
        // SAFETY: librdkafka points `key` at `key_len` bytes the message owns.
        unsafe { bytes(self.0.key, self.0.key_len) }
    }

    /// The value; `None` for a null (tombstone) value.
    pub(crate) fn payload(self) -> Option<&'m [u8]> {
        // SAFETY: librdkafka points `payload` at `len` bytes the message owns.
        unsafe { bytes(self.0.payload, self.0.len) }
    }

    /// Timestamp in milliseconds since the Unix epoch, when the broker gave
    /// one; as rdkafka's `Timestamp::to_millis` reads it.
    pub(crate) fn timestamp(self) -> Option<i64> {
        let mut kind = rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        // SAFETY: a live message; librdkafka only writes `kind`.
        let millis = unsafe { rdsys::rd_kafka_message_timestamp(self.0, &mut kind) };
        let available = kind != rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        (available && millis != -1).then_some(millis)
    }

    /// The name of the message's topic, as librdkafka holds it.
    pub(crate) fn topic_name(self) -> &'m CStr {
        // SAFETY: a consumed message holds its topic handle, which holds its
        // NUL-terminated name, while the message lives.
        unsafe { CStr::from_ptr(rdsys::rd_kafka_topic_name(self.0.rkt)) }
    }

    /// The message's headers, in order: key and value (`None` for a null
    /// value).
    ///
    /// Read from librdkafka here rather than through rdkafka's
    /// `Headers::iter`, which unwraps each key's UTF-8 and so would panic on
    /// a record whose producer wrote a key that is not UTF-8: one such record
    /// would stop the consumer for good. Keys are decoded lossily instead, as
    /// Java clients decode them.
    pub(crate) fn headers(self) -> impl Iterator<Item = (Cow<'m, str>, Option<&'m [u8]>)> + 'm {
        let mut headers = std::ptr::null_mut();
        // SAFETY: the message is live for 'm, and so are the headers
        // librdkafka parses into it (once, on this first call, then kept with
        // the message); `headers` stays null when it has none.
        let err = unsafe { rdsys::rd_kafka_message_headers(self.0, &mut headers) };
        if err != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            headers = std::ptr::null_mut();
        }
        // SAFETY: the message's own list, or none, live and unchanged for 'm.
        unsafe { header_list(headers) }
    }
}

/// `len` bytes at `data`, or `None` where `data` is null.
///
/// # Safety
/// A non-null `data` must point at `len` readable bytes, unchanged for `'m`.
unsafe fn bytes<'m>(data: *const std::ffi::c_void, len: usize) -> Option<&'m [u8]> {
    // SAFETY: the caller's promise.
    (!data.is_null()).then(|| unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) })
}

/// The headers of librdkafka's list `headers` (none when it is null), in
/// order, keys decoded lossily.
///
/// # Safety
/// `headers` must be null or a live list that stays unchanged for `'m`.
pub(crate) unsafe fn header_list<'m>(
    headers: *const rdsys::rd_kafka_headers_t,
) -> impl Iterator<Item = (Cow<'m, str>, Option<&'m [u8]>)> + 'm {
    let count = if headers.is_null() {
        0
    } else {
        // SAFETY: a live, non-null list (the caller's promise).
        unsafe { rdsys::rd_kafka_header_cnt(headers) }
    };
    (0..count).filter_map(move |index| {
        let mut name = std::ptr::null();
        let mut value = std::ptr::null();
        let mut size = 0;
        // SAFETY: `index` is below the count of this live list; librdkafka
        // points `name` at a NUL-terminated copy of the key and `value` at
        // `size` bytes, both owned by the list.
        let err = unsafe {
            rdsys::rd_kafka_header_get_all(headers, index, &mut name, &mut value, &mut size)
        };
        if err != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
            return None;
        }
        // SAFETY: as above; the bytes live as long as the list.
        let key = String::from_utf8_lossy(unsafe { CStr::from_ptr(name) }.to_bytes());
        // SAFETY: librdkafka gives `size` readable bytes at a non-null `value`.
        let value = unsafe { bytes(value, size) };
        Some((key, value))
    })
}

/// A message a consumer took from librdkafka, owned until dropped. `'c` is
/// the consumer's borrow: librdkafka requires every message to be destroyed
/// before its client.
pub(crate) struct FetchedMessage<'c> {
    message: Owned<rdsys::rd_kafka_message_t>,
    consumer: PhantomData<&'c ()>,
}

// SAFETY: librdkafka does not touch a message it has handed to the
// application, and reading or destroying one needs no particular thread
// (rdkafka's `BorrowedMessage`, the same memory, is `Send` and `Sync`).
unsafe impl Send for FetchedMessage<'_> {}
// SAFETY: as above, and a shared message is only read: the one call that
// writes into a message, `rd_kafka_message_headers` parsing its headers on
// first use, is made in `take`, before the message can be shared; later
// calls return the parsed list (or, for a message without headers or with
// headers that do not parse, write nothing).
unsafe impl Sync for FetchedMessage<'_> {}

impl<'c> FetchedMessage<'c> {
    /// Takes ownership of a message librdkafka returned to the application;
    /// a message that carries an error (a failed fetch, a partition's end)
    /// is released, and its error returned as rdkafka would return it.
    ///
    /// # Safety
    /// `message` must be a message librdkafka handed to the application,
    /// owned by no one else, from a consumer that outlives `'c`.
    pub(crate) unsafe fn take(
        message: NonNull<rdsys::rd_kafka_message_t>,
    ) -> Result<Self, KafkaError> {
        // SAFETY: a live message (the caller's promise).
        let (err, partition) = unsafe { (message.as_ref().err, message.as_ref().partition) };
        let fetched = FetchedMessage {
            // SAFETY: a message the caller owns and hands over.
            message: unsafe { Owned::from_non_null(message) },
            consumer: PhantomData,
        };
        match err {
            rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR => {
                // Parse the headers now, while the message is ours alone (see
                // `Sync` above): handlers may read them from several threads.
                drop(fetched.view().headers());
                Ok(fetched)
            }
            rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__PARTITION_EOF => {
                Err(KafkaError::PartitionEOF(partition))
            }
            err => Err(KafkaError::MessageConsumption(err.into())),
        }
    }

    pub(crate) fn view(&self) -> MessageView<'_> {
        // SAFETY: owned by `self`, live and unchanged until it is dropped.
        MessageView(unsafe { &*self.message.ptr() })
    }
}
