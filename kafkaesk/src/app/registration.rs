//! Registering this application's schemas on the bus and checking them
//! against other services' registrations: documented in
//! [`schema::contract`](crate::schema::contract).

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::{json, Value};

use crate::app::Application;
use crate::error::{Error, Result};
use crate::kafka::partition_end::{self, EndReader};
use crate::kafka::topics::StreamOptions;
use crate::record::printable;
use crate::schema::contract::{
    self, Registration, SchemaFinding, REGISTRATION_SCHEMA_ID, SCHEMAS_STREAM,
};
use crate::settings::SchemaContracts;

/// How long reading the schemas stream may take.
const READ_TIMEOUT: Duration = Duration::from_secs(15);

/// How many records of the schemas stream are read at most. Anyone who can
/// write the stream can flood it; real buses hold a few per schema version
/// and service.
const MAX_RECORDS: usize = 20_000;

/// The largest registration record read; a larger one is ignored. The
/// schemas of real types are a few kilobytes.
const MAX_RECORD_BYTES: usize = 256 * 1024;

/// How many bytes of registrations are read at most.
const MAX_TOTAL_BYTES: usize = 32 * 1024 * 1024;

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
        let read = self.read_schemas_stream().await?;
        if let Some(reason) = &read.incomplete {
            tracing::warn!(
                stream = %topic,
                "{reason}; compared with the registrations read so far, and starting. \
                 `kafkaesk schemas --check` reads the whole stream"
            );
        }
        let on_bus = read.registrations;
        // Bounded, but up to a million values: not on an async thread.
        let findings = {
            let ours = ours.clone();
            tokio::task::spawn_blocking(move || contract::check_against(&ours, &on_bus))
                .await
                .map_err(|_| Error::Stopped)?
        };
        let conflicts = findings.iter().any(SchemaFinding::is_conflict);
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
        let host = crate::native::host::hostname();
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
    /// exist; an error when it cannot be read to its end within 15 s, or
    /// holds more than 20,000 records or 32 MiB.
    pub async fn schema_registrations(&self) -> Result<Vec<Registration>> {
        let read = self.read_schemas_stream().await?;
        match read.incomplete {
            None => Ok(read.registrations),
            Some(reason) => Err(Error::Topic {
                topic: self.settings().topic(SCHEMAS_STREAM),
                reason,
            }),
        }
    }

    async fn read_schemas_stream(&self) -> Result<SchemasRead> {
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
    pub async fn schema_findings(&self) -> Result<Vec<SchemaFinding>> {
        let registrations = self.schema_registrations().await?;
        tokio::task::spawn_blocking(move || contract::check(&registrations))
            .await
            .map_err(|_| Error::Stopped)
    }
}

/// What reading the schemas stream found.
struct SchemasRead {
    /// The latest registration per record key.
    registrations: Vec<Registration>,
    /// Why the stream was not read to its end, when it was not.
    incomplete: Option<String>,
}

/// Reads the schemas stream to its end, or until a bound of
/// [`READ_TIMEOUT`], [`MAX_RECORDS`] or [`MAX_TOTAL_BYTES`]. Every record
/// is input from anyone who can write the stream: one that is too large,
/// not a registration, or whose key does not name its own id, version and
/// service, is ignored with a warning.
fn read_registrations(consumer: &EndReader, topic: &str) -> Result<SchemasRead> {
    let metadata = consumer.fetch_metadata(Some(topic), READ_TIMEOUT)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut read = SchemasRead {
        registrations: Vec::new(),
        incomplete: None,
    };
    if partitions.is_empty() {
        return Ok(read);
    }
    let mut assignment = TopicPartitionList::new();
    for partition in &partitions {
        assignment.add_partition_offset(topic, *partition, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    // Latest per record key, as compaction will leave it.
    let mut latest: BTreeMap<String, Registration> = BTreeMap::new();
    let mut at_end: HashSet<i32> = HashSet::new();
    let (mut records, mut bytes) = (0usize, 0usize);
    let deadline = Instant::now() + READ_TIMEOUT;
    while at_end.len() < partitions.len() {
        if Instant::now() >= deadline {
            read.incomplete = Some(format!(
                "the schemas stream could not be read to its end within {READ_TIMEOUT:?} \
                 ({records} records read)"
            ));
            break;
        }
        if records >= MAX_RECORDS || bytes >= MAX_TOTAL_BYTES {
            read.incomplete = Some(format!(
                "the schemas stream holds more than {MAX_RECORDS} records or \
                 {MAX_TOTAL_BYTES} bytes; {records} records ({bytes} bytes) read"
            ));
            break;
        }
        let message = match consumer.poll(Duration::from_millis(100)) {
            None => continue,
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                at_end.insert(partition);
                continue;
            }
            Some(Err(err)) => return Err(err.into()),
            Some(Ok(message)) => message,
        };
        records += 1;
        let Some(key) = message.key() else { continue };
        let key = String::from_utf8_lossy(key).into_owned();
        let ignored = |why: &str| {
            tracing::warn!(
                topic,
                partition = message.partition(),
                offset = message.offset(),
                key = %printable(&key),
                "a record of the schemas stream {why}; ignored"
            );
        };
        let Some(payload) = message.payload() else {
            // A tombstone: the registration was deleted.
            latest.remove(&key);
            continue;
        };
        bytes = bytes.saturating_add(payload.len());
        if payload.len() > MAX_RECORD_BYTES {
            ignored(&format!("is larger than {MAX_RECORD_BYTES} bytes"));
            continue;
        }
        match decode(payload) {
            None => ignored("is not a schema registration"),
            Some(registration) if registration.record_key() != key => {
                ignored("names another id, version or service in its key than in its body");
            }
            Some(registration) => {
                latest.insert(key, registration);
            }
        }
    }
    read.registrations = latest.into_values().collect();
    Ok(read)
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
