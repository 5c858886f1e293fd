//! Schema contracts on the bus: at [`initialize`](Application::initialize),
//! an application registers each of its schemas (id, version, JSON Schema,
//! service, host) on the compacted stream `kafkaesk.schemas` (under the
//! topic prefix), after reading what other services registered there and
//! comparing; [`contract`](crate::contract) says how.
//!
//! - A **conflict** (another service registered one of our `Id:version`s
//!   with a different shape) stops `initialize` with
//!   [`Error::SchemaContract`], naming both services and what differs,
//!   before anything is registered; with [`SchemaContracts::Warn`] it is a
//!   warning, and the schemas are registered.
//! - An **incompatible version** (ours against the version before it on the
//!   bus, or the next one against ours) is a warning: a new version is how
//!   kafkaesk evolves a schema, so breaking one is allowed, but people should
//!   know. `kafkaesk schemas --check` lists both, for CI pipelines, and exits
//!   non-zero.
//!
//! Records are keyed `Id:version@service`, so compaction keeps each
//! service's latest registration, and a service that changes a schema
//! without a new version replaces its own registration (its other
//! instances still running may disagree until they restart).
//!
//! Services that know nothing of the stream (Python kafkaesk) keep working:
//! nothing else on the bus changes. The registration is a normal kafkaesk
//! envelope, `{"schema": "KafkaeskSchemaRegistration:1", "data": {...}}`, so a
//! subscription whose pattern matches the stream skips it as a record of
//! another schema.
//!
//! ```no_run
//! # async fn demo() -> Result<(), kafkaesk::Error> {
//! use kafkaesk::settings::SchemaContracts;
//! let app = kafkaesk::Application::builder()
//!     .kafka_servers(["localhost:9092"])
//!     .service_name("order-service")
//!     .schema_contracts(SchemaContracts::Warn)
//!     .with_registry()?
//!     .build()?;
//! app.initialize().await?; // registers, compares, warns
//! for finding in app.schema_findings().await? {
//!     println!("{finding}");
//! }
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::{json, Value};

use super::Application;
use crate::contract::{self, Finding, Registration, REGISTRATION_SCHEMA_ID, SCHEMAS_STREAM};
use crate::error::{Error, Result};
use crate::partition_end::{self, EndReader};
use crate::settings::SchemaContracts;
use crate::topics::StreamOptions;

/// How long reading the schemas stream may take.
const READ_TIMEOUT: Duration = Duration::from_secs(15);

impl Application {
    /// Registers the application's schemas on the bus and compares them
    /// with the other services', as its settings say (see the module docs).
    pub(crate) async fn register_schemas(&self) -> Result<()> {
        let settings = self.settings();
        if settings.schema_contracts == SchemaContracts::Off {
            return Ok(());
        }
        let ours = self.registrations();
        if ours.is_empty() {
            return Ok(());
        }
        let topic = settings.topic(SCHEMAS_STREAM);
        let clients = self.inner().connection.clients().await?;
        // One partition: registrations are few, and read in one order.
        let options = StreamOptions::new().partitions(1).compacted();
        clients.topics.create_with(&topic, &options, false).await?;
        let on_bus = self.schema_registrations().await?;
        let findings = contract::check_against(&ours, &on_bus);
        let conflicts = findings.iter().any(Finding::is_conflict);
        if conflicts && settings.schema_contracts == SchemaContracts::Enforce {
            return Err(Error::SchemaContract { findings });
        }
        for finding in &findings {
            tracing::warn!(stream = %topic, "{finding}");
        }
        for registration in &ours {
            let value = json!({
                "schema": format!("{REGISTRATION_SCHEMA_ID}:1"),
                "data": registration,
            });
            // One record per batch: a compacted stream is read by key, and
            // tansu 0.6 gets a partition's end wrong after batches of several.
            self.raw_publish(SCHEMAS_STREAM, value.to_string())
                .key(registration.record_key())
                .wait()
                .await?;
        }
        tracing::info!(
            service = %ours[0].service,
            schemas = ours.len(),
            stream = %topic,
            "schemas registered"
        );
        Ok(())
    }

    /// This application's registrations.
    fn registrations(&self) -> Vec<Registration> {
        let service = self.settings().effective_service_name();
        let host = crate::host::hostname();
        self.inner()
            .schemas
            .all()
            .into_iter()
            .map(|schema| Registration {
                id: schema.id().to_owned(),
                version: schema.version(),
                schema: schema.json_schema().clone(),
                service: service.clone(),
                host: host.clone(),
            })
            .collect()
    }

    /// Every registration on the schemas stream (the latest per service
    /// and version), read to its end. An empty list when the stream does not
    /// exist.
    pub async fn schema_registrations(&self) -> Result<Vec<Registration>> {
        let settings = self.settings();
        let topic = settings.topic(SCHEMAS_STREAM);
        let mut config = settings
            .committed_reader_config(&format!("kafkaesk-schemas-{}", std::process::id()))?;
        // A one-off read to the end: no reason to let the broker hold fetches.
        config.set("fetch.wait.max.ms", "10");
        tokio::task::spawn_blocking(move || {
            let consumer = partition_end::reader(&config)?;
            read_registrations(&consumer, &topic)
        })
        .await
        .map_err(|_| Error::Stopped)?
    }

    /// Every conflict and incompatible version among the registrations on
    /// the bus, whoever registered them: what `kafkaesk schemas --check` lists.
    pub async fn schema_findings(&self) -> Result<Vec<Finding>> {
        Ok(contract::check(&self.schema_registrations().await?))
    }
}

fn read_registrations(consumer: &EndReader, topic: &str) -> Result<Vec<Registration>> {
    let metadata = consumer.fetch_metadata(Some(topic), READ_TIMEOUT)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Ok(Vec::new());
    }
    let mut assignment = TopicPartitionList::new();
    for partition in &partitions {
        assignment.add_partition_offset(topic, *partition, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    // Latest per record key, as compaction will leave it.
    let mut latest: BTreeMap<String, Registration> = BTreeMap::new();
    let mut at_end: HashSet<i32> = HashSet::new();
    let deadline = Instant::now() + READ_TIMEOUT;
    while at_end.len() < partitions.len() {
        if Instant::now() >= deadline {
            return Err(Error::Topic {
                topic: topic.to_owned(),
                reason: format!(
                    "could not read the schemas stream to its end within {READ_TIMEOUT:?}"
                ),
            });
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                at_end.insert(partition);
            }
            Some(Err(err)) => return Err(err.into()),
            Some(Ok(message)) => {
                let key = message
                    .key()
                    .map(|k| String::from_utf8_lossy(k).into_owned());
                let Some(key) = key else { continue };
                match message.payload().map(decode) {
                    Some(Some(registration)) => {
                        latest.insert(key, registration);
                    }
                    // A tombstone: the registration was deleted.
                    None => {
                        latest.remove(&key);
                    }
                    Some(None) => tracing::warn!(
                        topic,
                        partition = message.partition(),
                        offset = message.offset(),
                        "a record of the schemas stream is not a schema registration; ignored"
                    ),
                }
            }
        }
    }
    Ok(latest.into_values().collect())
}

/// A registration from its envelope, if it is one.
fn decode(payload: &[u8]) -> Option<Registration> {
    let envelope: Value = serde_json::from_slice(payload).ok()?;
    let schema = envelope.get("schema")?.as_str()?;
    let (id, _) = schema.split_once(':')?;
    if id != REGISTRATION_SCHEMA_ID {
        return None;
    }
    serde_json::from_value(envelope.get("data")?.clone()).ok()
}
