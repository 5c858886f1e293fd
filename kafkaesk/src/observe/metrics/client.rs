//! `kafkaesk_kafka_client_errors_total`: the errors librdkafka reports about
//! its own connections (a broker gone, a request timed out, every broker
//! down). librdkafka retries through them, so nothing fails for the caller;
//! counting and logging them is what keeps a fault in the cluster from
//! passing in silence.

use std::sync::Arc;

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use super::{kafka_error_label, Families};

/// Where a producer's or a consumer's client errors are counted.
#[derive(Clone)]
pub(crate) struct ClientErrorMetrics {
    families: Arc<Families>,
    client: &'static str,
}

impl ClientErrorMetrics {
    pub(super) fn new(families: Arc<Families>, client: &'static str) -> Self {
        ClientErrorMetrics { families, client }
    }

    /// Counts and logs one error librdkafka reported through its error
    /// callback, on librdkafka's own thread: a counter increment and an
    /// event, nothing that waits.
    pub(crate) fn report(&self, error: &KafkaError, reason: &str) {
        let label = kafka_error_label(error);
        self.families
            .client_errors
            .with_label_values(&[self.client, &label])
            .inc();
        // One broker lost is a warning while the others serve; none left
        // is an error.
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            tracing::error!(target: "librdkafka", client = self.client, error = %error, "{reason}");
        } else {
            tracing::warn!(target: "librdkafka", client = self.client, error = %error, "{reason}");
        }
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::error::KafkaError;
    use rdkafka::types::RDKafkaErrorCode;

    use crate::Metrics;

    #[test]
    fn client_errors_are_counted_by_client_and_code() {
        let metrics = Metrics::new();
        let producer = metrics.client_errors("producer");
        let lost = KafkaError::Global(RDKafkaErrorCode::BrokerTransportFailure);
        producer.report(&lost, "10.0.0.1:9092/1: Connect failed: Connection refused");
        producer.report(&lost, "again");
        metrics.client_errors("consumer").report(
            &KafkaError::Global(RDKafkaErrorCode::AllBrokersDown),
            "all down",
        );
        let text = metrics.encode();
        assert!(
            text.contains(
                r#"kafkaesk_kafka_client_errors_total{client="producer",error="BrokerTransportFailure"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"kafkaesk_kafka_client_errors_total{client="consumer",error="AllBrokersDown"} 1"#
            ),
            "{text}"
        );
    }
}
