//! Queuing a message with librdkafka's own call, `rd_kafka_producev`, on a
//! topic handle kept per topic.
//!
//! rdkafka's `BaseProducer::send` names the topic for every message: it
//! copies the name into a fresh `CString`, and librdkafka looks the name up
//! under its topic list's write lock. The callgrind count of the publish
//! benchmark put the two at about 600 of the 7,300 instructions the
//! publishing thread spends on a message. Here each producer opens a handle
//! per topic once (`rd_kafka_topic_new`) and queues on the handle. The call
//! is otherwise the one rdkafka makes (same flags, the payload copied, the
//! delivery opaque passed through), so rdkafka's delivery callback, and with
//! it [`Reports`](super::Reports), sees no difference.

use std::collections::HashMap;
use std::ffi::{c_void, CString};
use std::ptr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::bindings as rdsys;
use rdkafka::bindings::rd_kafka_vtype_t::*;
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::IntoOpaque;

use super::owned::Owned;
use super::slots::SlotRef;
use crate::sync::lock;

/// A message to queue.
pub(crate) struct Outbound<'a> {
    pub(crate) topic: &'a Arc<str>,
    /// The partition, or the partitioner's choice when `None`.
    pub(crate) partition: Option<i32>,
    pub(crate) payload: &'a [u8],
    pub(crate) key: Option<&'a [u8]>,
    pub(crate) headers: &'a dyn HeaderList,
}

/// Topics a producer keeps a handle for. Past this many, messages to further
/// topics name their topic as rdkafka would, so an application writing to
/// ever new topics does not make librdkafka track each of them for good.
const MAX_HANDLES: usize = 1024;

/// A producer's topic handles, by topic name.
#[derive(Default)]
pub(crate) struct TopicHandles(Mutex<HashMap<Arc<str>, TopicHandle, foldhash::fast::RandomState>>);

/// librdkafka's handle on one topic of one producer; destroyed on drop.
struct TopicHandle(Owned<rdsys::rd_kafka_topic_t>);

// SAFETY: librdkafka's topic handles are thread-safe; this one is only
// passed to librdkafka calls.
unsafe impl Send for TopicHandle {}

/// Where a message goes: a topic handle, or the topic's name.
enum TopicRef {
    Handle(*mut rdsys::rd_kafka_topic_t),
    Name(CString),
}

impl TopicHandles {
    /// The handle on `topic` of the producer `rk`, opened on first use.
    fn target(&self, rk: *mut rdsys::rd_kafka_t, topic: &Arc<str>) -> Result<TopicRef, KafkaError> {
        let mut handles = lock(&self.0);
        if let Some(handle) = handles.get(&**topic) {
            return Ok(TopicRef::Handle(handle.0.ptr()));
        }
        let name = CString::new(&**topic)?;
        if handles.len() >= MAX_HANDLES {
            return Ok(TopicRef::Name(name));
        }
        // SAFETY: `rk` is a live producer and `name` a C string; a null
        // configuration takes the producer's default topic configuration, as
        // rdkafka's `send` does.
        // The handle is the producer's to destroy, before the producer goes
        // (see `Producer`'s field order).
        let handle = unsafe {
            Owned::from_ptr(rdsys::rd_kafka_topic_new(
                rk,
                name.as_ptr(),
                ptr::null_mut(),
            ))
        };
        let Some(handle) = handle else {
            // SAFETY: reads this thread's last librdkafka error.
            let code = unsafe { rdsys::rd_kafka_last_error() };
            return Err(KafkaError::MessageProduction(code.into()));
        };
        let target = TopicRef::Handle(handle.ptr());
        handles.insert(topic.clone(), TopicHandle(handle));
        Ok(target)
    }
}

/// A message's headers, as librdkafka's list is built from them: the
/// record layer's `Headers` implements it, so the native layer needs none of
/// its types.
pub(crate) trait HeaderList {
    /// How many headers there are.
    fn count(&self) -> usize;
    /// Calls `add` with each header's key and value, in order.
    fn for_each(&self, add: AddHeader<'_>);
}

/// What [`HeaderList::for_each`] calls with a header's key and value.
pub(crate) type AddHeader<'a> = &'a mut dyn FnMut(&[u8], Option<&[u8]>);

/// A message's headers as librdkafka's list; destroyed on drop unless
/// librdkafka took them.
struct NativeHeaders(Owned<rdsys::rd_kafka_headers_t>);

impl NativeHeaders {
    /// The list of `headers`, `None` when there are none.
    fn of(headers: &dyn HeaderList) -> Option<NativeHeaders> {
        let count = headers.count();
        if count == 0 {
            return None;
        }
        // SAFETY: allocates an empty list with room for every header.
        let list = unsafe { Owned::from_ptr(rdsys::rd_kafka_headers_new(count)) }?;
        headers.for_each(&mut |key, value| {
            let (value, size) = match value {
                Some(value) => (value.as_ptr().cast::<c_void>(), value.len() as isize),
                None => (ptr::null(), 0),
            };
            // SAFETY: the list is ours and writable; librdkafka copies the
            // key (given with its length, so it needs no NUL) and the value.
            unsafe {
                rdsys::rd_kafka_header_add(
                    list.ptr(),
                    key.as_ptr().cast(),
                    key.len() as isize,
                    value,
                    size,
                );
            }
        });
        Some(NativeHeaders(list))
    }

    /// Hands the list over to librdkafka, which destroys it.
    fn into_raw(self) -> *mut rdsys::rd_kafka_headers_t {
        self.0.into_raw()
    }
}

/// Queues `message` on the producer `rk`, through `handles`; `opaque` comes
/// back with its delivery report. Fails when librdkafka refuses it, for
/// instance with a full queue; no report comes for it then.
pub(crate) fn produce(
    rk: *mut rdsys::rd_kafka_t,
    handles: &TopicHandles,
    message: &Outbound<'_>,
    opaque: usize,
) -> Result<(), KafkaError> {
    let target = handles.target(rk, message.topic)?;
    let headers = NativeHeaders::of(message.headers);
    let headers_ptr = headers.as_ref().map_or(ptr::null_mut(), |h| h.0.ptr());
    let (payload, payload_len) = (
        message.payload.as_ptr().cast::<c_void>(),
        message.payload.len(),
    );
    let (key, key_len) = message.key.map_or((ptr::null(), 0), |key| {
        (key.as_ptr().cast::<c_void>(), key.len())
    });
    // `RD_KAFKA_PARTITION_UA`: let the partitioner choose.
    let partition = message.partition.unwrap_or(-1);
    let opaque = opaque as *mut c_void;
    let flags = rdsys::RD_KAFKA_MSG_F_COPY;
    // Both are pointers, read as the pointer their type names.
    let (target_type, target) = match &target {
        TopicRef::Handle(handle) => (RD_KAFKA_VTYPE_RKT, handle.cast::<c_void>().cast_const()),
        TopicRef::Name(name) => (RD_KAFKA_VTYPE_TOPIC, name.as_ptr().cast::<c_void>()),
    };
    // SAFETY: the arguments are the (type, value) pairs `rd_kafka_producev`
    // reads, ended by `RD_KAFKA_VTYPE_END`. The topic handle, name and
    // headers are live; librdkafka copies the payload and key before it
    // returns.
    let err = unsafe {
        rdsys::rd_kafka_producev(
            rk,
            target_type,
            target,
            RD_KAFKA_VTYPE_PARTITION,
            partition,
            RD_KAFKA_VTYPE_MSGFLAGS,
            flags,
            RD_KAFKA_VTYPE_VALUE,
            payload,
            payload_len,
            RD_KAFKA_VTYPE_KEY,
            key,
            key_len,
            RD_KAFKA_VTYPE_OPAQUE,
            opaque,
            RD_KAFKA_VTYPE_HEADERS,
            headers_ptr,
            RD_KAFKA_VTYPE_END,
        )
    };
    if err != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        // librdkafka did not take the message, nor its headers.
        return Err(KafkaError::MessageProduction(RDKafkaErrorCode::from(err)));
    }
    if let Some(headers) = headers {
        headers.into_raw();
    }
    Ok(())
}

/// How long librdkafka held `message`, from the send to its report.
pub(crate) fn latency(message: &BorrowedMessage<'_>) -> Duration {
    // SAFETY: the message is a live delivery report, borrowed for the call.
    let micros = unsafe { rdkafka::bindings::rd_kafka_message_latency(message.ptr()) };
    Duration::from_micros(u64::try_from(micros).unwrap_or(0))
}

// Every message this crate queues carries a slot's opaque (see `produce`,
// given `SlotRef::to_opaque` by `Producer::send`), so rdkafka's delivery
// callback can hand the slot itself to `Reports::delivery`.
impl<E: Send> IntoOpaque for SlotRef<E> {
    fn into_ptr(self) -> *mut c_void {
        self.to_opaque() as *mut c_void
    }

    unsafe fn from_ptr(ptr: *mut c_void) -> Self {
        // SAFETY: `ptr` came from `into_ptr` (the trait's promise), that is
        // from `to_opaque` of a slot whose pool outlives the producer's
        // reports (`Reports` holds it).
        unsafe { SlotRef::from_opaque(ptr as usize) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{header_list, Header, Headers};

    /// Every header of a native list: key and value.
    fn read_back(list: &NativeHeaders) -> Vec<(String, Option<Vec<u8>>)> {
        // SAFETY: the list is live and unchanged while it is read.
        unsafe { header_list(list.0.ptr()) }
            .map(|(key, value)| (key.into_owned(), value.map(<[u8]>::to_vec)))
            .collect()
    }

    #[test]
    fn native_headers_keep_order_repeats_nulls_and_bytes() {
        let mut headers = Headers::new().with("a", "1").with("a", "2");
        headers.push(Header {
            key: "n".into(),
            value: None,
        });
        headers.insert("bin", [0xff, 0x00]);
        headers.insert("empty", []);
        let list = NativeHeaders::of(&headers).unwrap();
        assert_eq!(
            read_back(&list),
            [
                ("a".to_owned(), Some(b"1".to_vec())),
                ("a".to_owned(), Some(b"2".to_vec())),
                ("n".to_owned(), None),
                ("bin".to_owned(), Some(vec![0xff, 0x00])),
                ("empty".to_owned(), Some(Vec::new())),
            ]
        );
        assert!(NativeHeaders::of(&Headers::new()).is_none());
    }
}
