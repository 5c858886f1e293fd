//! Consumers that read partitions to their end: readers, the schema
//! registrations, expected-offset checks, dead-letter replays, group offsets.
//!
//! They ask librdkafka for an event at each partition's end
//! (`enable.partition.eof`). rust-rdkafka hands that event to the client
//! context's `error` as well as to `poll`, and its default context logs it
//! as an error, so every read of an empty stream logged `ERROR librdkafka:
//! Global error: PartitionEOF`. [`ReadToEnd`] logs every other error as the
//! default context does, and no partition ends.

use rdkafka::consumer::{BaseConsumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext};

/// A consumer that reads to the end of partitions.
pub(crate) type EndReader = BaseConsumer<ReadToEnd>;

/// The client context of an [`EndReader`]: a partition's end is expected,
/// not an error.
pub(crate) struct ReadToEnd;

impl ClientContext for ReadToEnd {
    fn error(&self, error: KafkaError, reason: &str) {
        if !is_partition_end(&error) {
            tracing::error!("librdkafka: {error}: {reason}");
        }
    }
}

impl ConsumerContext for ReadToEnd {}

fn is_partition_end(error: &KafkaError) -> bool {
    matches!(
        error,
        KafkaError::Global(RDKafkaErrorCode::PartitionEOF) | KafkaError::PartitionEOF(_)
    )
}

/// Creates an [`EndReader`] from `config`.
pub(crate) fn reader(config: &ClientConfig) -> KafkaResult<EndReader> {
    config.create_with_context(ReadToEnd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_partition_ends_are_quiet() {
        assert!(is_partition_end(&KafkaError::Global(
            RDKafkaErrorCode::PartitionEOF
        )));
        assert!(is_partition_end(&KafkaError::PartitionEOF(3)));
        assert!(!is_partition_end(&KafkaError::Global(
            RDKafkaErrorCode::BrokerTransportFailure
        )));
    }
}
