//! The one error type of the crate.
//!
//! Every fallible kafkaesk call returns [`Error`]. Its variants are meant to be
//! matched on: a publisher can tell invalid data ([`Error::Validation`]) from a
//! broker problem ([`Error::Kafka`]), and a worker can tell a failing handler
//! ([`Error::Handler`]) from a misconfigured application
//! ([`Error::AppNotConfigured`]).

use std::fmt;
use std::time::Duration;

use crate::text::printable;

/// A boxed error returned by user code, such as a handler.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Shorthand for `Result<T, kafkaesk::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where a consumed record came from: enough to find it again with any Kafka tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordPosition {
    /// Full topic name, prefix included.
    pub topic: String,
    /// Partition number.
    pub partition: i32,
    /// Offset of the record within its partition.
    pub offset: i64,
}

impl fmt::Display for RecordPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]@{}", self.topic, self.partition, self.offset)
    }
}

/// One rule that a value broke during JSON Schema validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationIssue {
    /// JSON pointer to the offending field inside `data`, e.g. `/foo` (empty for the root).
    pub field: String,
    /// The schema keyword that failed, e.g. `minLength`, `maximum`, `pattern`, `required`.
    pub rule: String,
    /// Human-readable description from the validator.
    pub message: String,
}

impl fmt::Display for ValidationIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let field = if self.field.is_empty() {
            "(root)"
        } else {
            &self.field
        };
        write!(
            f,
            "field `{field}` breaks `{}`: {}",
            self.rule, self.message
        )
    }
}

/// Every error that kafkaesk reports.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Two different types were registered under the same `"Id:version"` key.
    #[error(
        "schema `{key}` is registered twice: by `{existing}` and by `{new}`; \
         give one of them another id or version"
    )]
    SchemaConflict {
        /// The `"Id:version"` key.
        key: String,
        /// Rust type that registered the key first.
        existing: &'static str,
        /// Rust type that tried to register it again.
        new: &'static str,
    },

    /// No broker answered at the configured servers.
    #[error(
        "cannot reach Kafka at {servers}: {reason}; check --kafka-servers \
         (KAFKAESK_KAFKA_SERVERS) and that the broker runs (RUST_LOG=librdkafka=debug shows \
         the connection attempts)"
    )]
    BrokerUnreachable {
        /// The bootstrap servers tried.
        servers: String,
        /// What librdkafka reported.
        reason: String,
    },

    /// The application has no Kafka servers.
    #[error("application is not configured: {0}")]
    AppNotConfigured(String),

    /// The function that makes the application for `kafkaesk::worker` failed.
    #[error("building the application failed: {0}")]
    AppFactory(String),

    /// Two subscriptions of one application have the same name. The name
    /// keys the default consumer group, the counters and the health of a
    /// subscription, so it must be unique.
    #[error(
        "two subscriptions are named `{name}` (on `{first}` and on `{second}`); \
         give one of them another name: `.name(\"...\")`, or `name = \"...\"` in #[subscribe]"
    )]
    DuplicateSubscription {
        /// The shared name.
        name: String,
        /// The streams of the first subscription with it.
        first: String,
        /// The streams of the second.
        second: String,
    },

    /// A consumer's task ended without returning: a panic in kafkaesk's
    /// consumer loop, not in a handler (handler panics are
    /// [`Error::HandlerPanic`]).
    #[error("the consumer of subscription `{subscription}` crashed: {reason}")]
    ConsumerCrashed {
        /// Name of the subscription.
        subscription: String,
        /// What the task's end said.
        reason: String,
    },

    /// Data failed JSON Schema validation; nothing was sent.
    #[error("`{schema}` data is invalid, nothing was sent: {}", join_issues(.issues))]
    Validation {
        /// The `"Id:version"` key of the schema that was checked.
        schema: String,
        /// Every rule that failed.
        issues: Vec<ValidationIssue>,
    },

    /// The JSON Schema generated for a type could not be compiled.
    #[error("JSON Schema of `{schema}` cannot be compiled: {reason}")]
    InvalidSchema {
        /// The `"Id:version"` key.
        schema: String,
        /// What the validator said.
        reason: String,
    },

    /// A consumed record could not be decoded into what the handler asked for.
    ///
    /// The consumer logs it, counts it as unhandled, commits past it and goes on;
    /// this variant is what the log line and the counter carry.
    #[error("record {position} was not handled: {reason}")]
    Unhandled {
        /// The record that was skipped.
        position: RecordPosition,
        /// Why it could not be decoded.
        reason: String,
    },

    /// A record read back by a [`Reader`](crate::reader::Reader) could not
    /// be decoded as asked; it is an item of its own, in its place.
    #[error("record {position} could not be decoded: {reason}")]
    Undecodable {
        /// The record.
        position: RecordPosition,
        /// Why it could not be decoded.
        reason: String,
    },

    /// A handler returned an error. The consumer stopped without committing the record.
    #[error("handler `{subscription}` failed on record {position}: {source}")]
    Handler {
        /// Name of the subscription (the handler function's name by default).
        subscription: String,
        /// The record being handled.
        position: RecordPosition,
        /// What the handler returned.
        #[source]
        source: BoxError,
    },

    /// A handler panicked. The consumer stopped without committing the record.
    #[error("handler `{subscription}` panicked on record {position}: {message}")]
    HandlerPanic {
        /// Name of the subscription.
        subscription: String,
        /// The record being handled.
        position: RecordPosition,
        /// The panic payload, when it was a string.
        message: String,
    },

    /// A handler ran longer than its subscription's timeout and was cancelled.
    #[error("handler `{subscription}` timed out after {timeout:?} on record {position}")]
    HandlerTimeout {
        /// Name of the subscription.
        subscription: String,
        /// The record being handled.
        position: RecordPosition,
        /// The subscription's timeout.
        timeout: Duration,
    },

    /// A subscription pattern or topic list is not usable.
    #[error("invalid subscription `{pattern}`: {reason}")]
    InvalidSubscription {
        /// The pattern as written.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The schemas on the bus conflict with this application's: another
    /// service registered one of its `Id:version`s with a different shape.
    /// See [`contracts`](crate::schema::contract).
    #[error("{}", findings.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    SchemaContract {
        /// Every conflict (and incompatible version) found.
        findings: Vec<SchemaFinding>,
    },

    /// No subscription of the application has this name (pausing, resuming).
    #[error("the application has no subscription named `{name}`; it has: {known}")]
    UnknownSubscription {
        /// The name asked for.
        name: String,
        /// The names it has, comma separated.
        known: String,
    },

    /// A topic could not be created or inspected through the admin API.
    #[error("topic `{topic}`: {reason}")]
    Topic {
        /// Full topic name, prefix included.
        topic: String,
        /// What the broker answered.
        reason: String,
    },

    /// A setting has a value that cannot work.
    #[error("invalid setting `{name}`: {reason}")]
    InvalidSetting {
        /// The setting's name.
        name: String,
        /// What to fix.
        reason: String,
    },

    /// Data could not be serialized to JSON.
    #[error("cannot serialize `{type_name}` to JSON: {source}")]
    Serialize {
        /// The Rust type being published.
        type_name: &'static str,
        /// What serde_json said.
        #[source]
        source: serde_json::Error,
    },

    /// The broker did not acknowledge a published message.
    #[error("message to `{topic}` was not delivered: {source}")]
    Delivery {
        /// Full topic name.
        topic: String,
        /// What librdkafka reported.
        #[source]
        source: rdkafka::error::KafkaError,
    },

    /// A message is larger than the producer or the broker accepts; it was not delivered.
    #[error(
        "message of {bytes} bytes to `{topic}` is too large ({source}); raise the producer's \
         `message.max.bytes` (kafka_settings) and the topic's or broker's `max.message.bytes`, \
         or publish smaller messages"
    )]
    MessageTooLarge {
        /// Full topic name.
        topic: String,
        /// Size of the message's value.
        bytes: usize,
        /// What librdkafka reported.
        #[source]
        source: rdkafka::error::KafkaError,
    },

    /// A publish's [`timeout`](crate::publish::Publish::timeout) passed
    /// before the broker acknowledged it. The message was not recalled: it
    /// may still be stored, until librdkafka's `message.timeout.ms`.
    #[error(
        "message to `{topic}` was not acknowledged within {timeout:?}; it may still be \
         delivered (librdkafka gives up after `message.timeout.ms`)"
    )]
    DeliveryTimeout {
        /// Full topic name.
        topic: String,
        /// The publish's timeout.
        timeout: Duration,
    },

    /// A transaction was rolled back because something in it failed (a
    /// delivery, the commit): none of its messages will ever be seen by a
    /// read-committed consumer, and an exactly-once subscription's records
    /// in it come back.
    #[error("transaction aborted: {reason}; none of its messages is visible to read-committed consumers")]
    TransactionAborted {
        /// Why: what failed before or during the commit.
        reason: String,
    },

    /// A transactional call failed and the transaction's outcome is not
    /// known to this producer (it was fenced by a newer one with the same
    /// transactional id, or the coordinator did not answer in time). The
    /// broker aborts what was not committed.
    #[error(
        "transaction failed at {action}: {source}; if another instance uses the same \
         `transactional_id` prefix, give each instance its own"
    )]
    Transaction {
        /// What was being done: `init`, `begin`, `commit`, `abort`, `send offsets`.
        action: &'static str,
        /// What librdkafka reported.
        #[source]
        source: rdkafka::error::KafkaError,
    },

    /// The broker cannot run transactions, so neither can
    /// [`Application::transaction`](crate::Application::transaction),
    /// [`exactly_once`](crate::Subscription::exactly_once) subscriptions nor
    /// [expected offsets](crate::publish::Publish::expected_offset). The
    /// embedded broker is such a broker; Apache Kafka is not.
    #[error(
        "transaction failed at {action}: the broker does not support transactions ({source}); \
         the embedded broker cannot run transactions, exactly-once subscriptions or expected \
         offsets: point KAFKA (or --kafka-servers) at an Apache Kafka broker"
    )]
    TransactionsUnsupported {
        /// What was being done: `init`, `begin`, `commit`, `abort`, `send offsets`.
        action: &'static str,
        /// What librdkafka reported.
        #[source]
        source: rdkafka::error::KafkaError,
    },

    /// A publish with an [expected offset](crate::publish::Publish::expected_offset)
    /// found the partition's last message elsewhere: someone else wrote
    /// first. Nothing was written; read the partition again and decide.
    #[error(
        "`{topic}` partition {partition}: expected its last message at offset {expected}, \
         but it is at {actual} (-1: no message); nothing was written"
    )]
    ExpectedOffset {
        /// Full topic name.
        topic: String,
        /// The partition written to.
        partition: i32,
        /// The offset the publish expected its last message at (-1: empty).
        expected: i64,
        /// The offset of the partition's last committed message (-1: none).
        actual: i64,
    },

    /// An error from librdkafka outside publishing.
    #[error("kafka: {0}")]
    Kafka(rdkafka::error::KafkaError),

    /// `consume_for` or another bounded wait ran out of time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),

    /// What the [test harness](crate::testing) waited for did not settle:
    /// the records each subscription had yet to settle, or messages the
    /// broker had yet to acknowledge, when the wait ended.
    #[error("not settled {why}: {}", .pending.join("; "))]
    NotSettled {
        /// Why the wait ended: its timeout, or the application stopping.
        why: String,
        /// What was still pending, one entry each, such as
        /// ``handle_order has not settled orders.created[0]@3``.
        pending: Vec<String>,
    },

    /// The embedded development broker could not start.
    #[error("embedded broker: {0}")]
    EmbeddedBroker(String),

    /// The application is shutting down or was stopped.
    #[error("application stopped")]
    Stopped,

    /// A schema document could not be written (see
    /// [`Application::write_schemas`](crate::Application::write_schemas)).
    #[error("cannot write `{}`: {source}", .path.display())]
    Export {
        /// The file or directory.
        path: std::path::PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
}

impl From<rdkafka::error::KafkaError> for Error {
    /// librdkafka's configuration errors carry the refused value, which may be
    /// a secret: they become [`Error::InvalidSetting`] without it.
    fn from(err: rdkafka::error::KafkaError) -> Self {
        match err {
            rdkafka::error::KafkaError::ClientConfig(_, description, key, value) => {
                let description = if value.is_empty() {
                    description
                } else {
                    description.replace(&value, "***")
                };
                Error::InvalidSetting {
                    name: key,
                    reason: format!("librdkafka refused it: {description}"),
                }
            }
            other => Error::Kafka(other),
        }
    }
}

fn join_issues(issues: &[ValidationIssue]) -> String {
    issues
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl Error {
    /// A failed transactional call: [`Error::TransactionsUnsupported`] when
    /// the broker lacks transactions, [`Error::Transaction`] otherwise.
    pub(crate) fn transaction(action: &'static str, source: rdkafka::error::KafkaError) -> Error {
        if Error::lacks_transactions(&source) {
            Error::TransactionsUnsupported { action, source }
        } else {
            Error::Transaction { action, source }
        }
    }

    /// Whether `source` says the broker has no transactions.
    pub(crate) fn lacks_transactions(source: &rdkafka::error::KafkaError) -> bool {
        use rdkafka::types::RDKafkaErrorCode;
        matches!(
            source.rdkafka_error_code(),
            Some(RDKafkaErrorCode::UnsupportedFeature | RDKafkaErrorCode::UnsupportedVersion)
        )
    }

    /// The record this error is about, for errors raised while consuming.
    pub fn position(&self) -> Option<&RecordPosition> {
        match self {
            Error::Unhandled { position, .. }
            | Error::Handler { position, .. }
            | Error::HandlerPanic { position, .. }
            | Error::HandlerTimeout { position, .. } => Some(position),
            _ => None,
        }
    }
}

/// Something wrong between registrations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaFinding {
    /// Two services register the same `Id:version` with different shapes.
    Conflict {
        /// `Id:version`.
        schema: String,
        /// The two services.
        services: (String, String),
        /// What differs, by path in the schema, at most ten.
        differences: Vec<String>,
    },
    /// A version breaks compatibility with the version before it.
    Incompatible {
        /// The schema id.
        id: String,
        /// The version before.
        from: u32,
        /// The new version.
        to: u32,
        /// The service that registered the new version.
        service: String,
        /// What breaks.
        problems: Vec<String>,
    },
}

impl SchemaFinding {
    /// Whether it is a conflict (an application refuses to start on one,
    /// unless told to warn).
    pub fn is_conflict(&self) -> bool {
        matches!(self, SchemaFinding::Conflict { .. })
    }
}

impl fmt::Display for SchemaFinding {
    /// Names, ids and paths come from the bus: control characters in them
    /// are escaped (see [`printable`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            SchemaFinding::Conflict {
                schema,
                services,
                differences,
            } => format!(
                "schema {schema} differs between services `{}` and `{}`: {}; give one of them a new version",
                services.0,
                services.1,
                differences.join("; ")
            ),
            SchemaFinding::Incompatible {
                id,
                from,
                to,
                service,
                problems,
            } => format!(
                "schema {id}:{to} (service `{service}`) is incompatible with {id}:{from}: {}",
                problems.join("; ")
            ),
        };
        f.write_str(&printable(&text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_error_names_field_and_rule() {
        let err = Error::Validation {
            schema: "Content:1".into(),
            issues: vec![ValidationIssue {
                field: "/foo".into(),
                rule: "minLength".into(),
                message: "\"\" is shorter than 1 character".into(),
            }],
        };
        let text = err.to_string();
        assert!(text.contains("Content:1"), "{text}");
        assert!(text.contains("`/foo`"), "{text}");
        assert!(text.contains("minLength"), "{text}");
    }

    #[test]
    fn schema_conflict_names_both_types() {
        let err = Error::SchemaConflict {
            key: "Content:1".into(),
            existing: "a::A",
            new: "b::B",
        };
        let text = err.to_string();
        assert!(text.contains("a::A") && text.contains("b::B"), "{text}");
    }
}
