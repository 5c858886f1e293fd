//! Talking to Kafka through rust-rdkafka: the application's connection and
//! its lazily created clients, the producer with pooled delivery slots,
//! topics, and the readers that read partitions to their end or back from an
//! offset. The raw librdkafka calls these need live in
//! [`native`](crate::native).

pub(crate) mod clients;
pub(crate) mod partition_end;
pub(crate) mod producer;
pub(crate) mod tail;
pub(crate) mod topics;
