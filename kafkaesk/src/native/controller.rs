//! Which broker is the cluster's controller: the DescribeCluster admin
//! request, which rust-rdkafka does not wrap, called through librdkafka's C
//! API.

use std::ffi::CStr;
use std::time::Duration;

use rdkafka::bindings as rd;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};

use super::owned::Owned;
use crate::error::{Error, Result};

/// The controller's node id, or `None` when the broker names none.
/// Blocks for up to `timeout`.
pub(crate) fn controller<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    timeout: Duration,
) -> Result<Option<i32>> {
    let millis = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    let rk = consumer.client().native_ptr();
    let failed = |reason: String| Error::Topic {
        topic: "(cluster)".to_owned(),
        reason: format!("DescribeCluster failed: {reason}"),
    };
    // SAFETY: `rk` is a live client for the whole call (borrowed from
    // `consumer`); every object made here is freed by its `Owned` guard
    // after the last use of what it owns (the event owns the result and the
    // node, read before the event is dropped).
    unsafe {
        let Some(options) = Owned::from_ptr(rd::rd_kafka_AdminOptions_new(
            rk,
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBECLUSTER,
        )) else {
            return Err(failed("librdkafka could not make its options".to_owned()));
        };
        let mut errstr = [0 as std::ffi::c_char; 256];
        let set = rd::rd_kafka_AdminOptions_set_request_timeout(
            options.ptr(),
            millis,
            errstr.as_mut_ptr(),
            errstr.len(),
        );
        if set != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            let reason = CStr::from_ptr(errstr.as_ptr())
                .to_string_lossy()
                .into_owned();
            return Err(failed(reason));
        }
        let Some(queue) = Owned::from_ptr(rd::rd_kafka_queue_new(rk)) else {
            return Err(failed("librdkafka could not make a queue".to_owned()));
        };
        rd::rd_kafka_DescribeCluster(rk, options.ptr(), queue.ptr());
        // librdkafka answers within the request timeout; a little more here.
        let Some(event) = Owned::from_ptr(rd::rd_kafka_queue_poll(
            queue.ptr(),
            millis.saturating_add(1000),
        )) else {
            return Err(failed(format!("no answer within {timeout:?}")));
        };
        if rd::rd_kafka_event_error(event.ptr())
            != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
        {
            let text = rd::rd_kafka_event_error_string(event.ptr());
            let reason = if text.is_null() {
                "unknown error".to_owned()
            } else {
                CStr::from_ptr(text).to_string_lossy().into_owned()
            };
            return Err(failed(reason));
        }
        let result = rd::rd_kafka_event_DescribeCluster_result(event.ptr());
        if result.is_null() {
            return Err(failed(
                "the answer is not a DescribeCluster result".to_owned(),
            ));
        }
        let node = rd::rd_kafka_DescribeCluster_result_controller(result);
        Ok((!node.is_null()).then(|| rd::rd_kafka_Node_id(node)))
    }
}
