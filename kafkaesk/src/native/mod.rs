//! Every `unsafe` block of the crate: librdkafka's C API where rust-rdkafka
//! does not reach (batch reads of a queue in place, `rd_kafka_producev` on
//! kept topic handles, commits answered on a queue, the DescribeCluster
//! request), the delivery slots librdkafka carries as opaque pointers, and
//! `gethostname`.
//!
//! Each native handle has one owner type ([`Owned`]) whose `Drop` is written
//! once, and each `unsafe` block says why it is sound (`SAFETY:`), which
//! `clippy::undocumented_unsafe_blocks` enforces. Nothing outside this folder
//! uses `unsafe`, with two exceptions that are not librdkafka's and cannot
//! move here without dragging their layer along:
//!
//! - `logging`'s layer implements `tracing_subscriber::Layer::downcast_raw`,
//!   an `unsafe fn` of that trait, and forwards it to the layer it wraps;
//! - `handling::handler`'s `FutureSlot` takes a finished, emptied future's
//!   pinned memory back (`Pin::into_inner_unchecked`) so that each run of a
//!   handler reuses one allocation.

pub(crate) mod commit;
pub(crate) mod controller;
pub(crate) mod host;
pub(crate) mod message;
mod owned;
pub(crate) mod produce;
pub(crate) mod queue;
pub(crate) mod slots;
