//! The service's AsyncAPI 3.0.0 document: its streams, what it sends and
//! receives on them, and the messages, as they are on the wire.
//!
//! ```
//! #[kafkaesk::schema("Order", streams = ["orders.created"], retention = 86400)]
//! #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
//! pub struct Order { pub id: u64 }
//!
//! #[kafkaesk::subscribe("orders.*", group = "order-service")]
//! async fn handle_order(order: Order) {}
//!
//! # fn main() -> Result<(), kafkaesk::Error> {
//! let app = kafkaesk::Application::builder()
//!     .kafka_servers(["kafka:9092"])
//!     .topic_prefix("shop.")
//!     .with_registry()?
//!     .build()?;
//! let doc = app.asyncapi("order-service", "1.4.0");
//! assert_eq!(doc["channels"]["orders.created"]["address"], "shop.orders.created");
//! assert_eq!(doc["channels"]["orders._"]["address"], "shop.orders.*");
//! assert_eq!(doc["operations"]["receive.handle_order"]["action"], "receive");
//! # Ok(()) }
//! ```
//!
//! What the document holds, and how kafkaesk's concepts map onto AsyncAPI:
//!
//! - `info`: the title and version the caller gives (the CLI gives the
//!   crate's name and version).
//! - `servers`: one per bootstrap server (`kafka`, or `kafka-1`, `kafka-2`, ...),
//!   protocol `kafka`, or `kafka-secure` when `security.protocol` is `ssl`
//!   or `sasl_ssl`. None when the application has no servers.
//! - `channels`: one per stream, keyed by the stream name, its `address`
//!   being the topic (the prefix applied): the streams the schemas declare
//!   and those the subscriptions name. A subscription's fnmatch pattern
//!   (`orders.*`) becomes one channel for every topic it matches: its
//!   `address` is the pattern with the topic prefix applied
//!   (`shop.orders.*`; AsyncAPI has no wildcards, so the address is not one
//!   topic's name), its key the pattern with characters other than letters,
//!   digits, `.`, `_` and `-` replaced by `_` (`orders._`), and
//!   `x-kafkaesk-topic-regex` holds the regular expression the consumer
//!   subscribes with. Each channel's Kafka binding gives the partitions and
//!   replicas kafkaesk creates topics with and, where a schema declares the
//!   stream with a retention, `topicConfiguration.retention.ms` (topics
//!   created by others may differ). A channel's messages are the schemas
//!   that declare the stream, or a stream the pattern matches.
//! - `operations`: `send.<Id>-<version>.<stream>` (action `send`) for every
//!   stream a schema declares, and `receive.<subscription>` (action
//!   `receive`; `receive.<subscription>.<channel>` for one subscribed to
//!   several) for every subscription, with the Kafka binding's `groupId`
//!   when it has a consumer group.
//! - `components.messages`: one per schema, keyed `<Id>-<version>` as its
//!   file (see [`export`](crate::export)), content type `application/json`,
//!   with the kafkaesk envelope as payload: `{"schema": "Id:version", "data":
//!   ...}`, `schema` a constant, so the payload describes the bytes of a
//!   record's value. The Kafka binding's `key` is a string: keys are
//!   optional, chosen by the publisher.
//! - `components.schemas`: each schema's `data` (`<Id>-<version>`), in the
//!   draft-07 dialect AsyncAPI payloads use, and the types it nests (the
//!   JSON Schema's `$defs`): under their own name when every schema that
//!   has one of that name has the same, else as `<Id>-<version>.<Name>`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use super::draft07;
use super::{safe_name, stems};
use crate::app::Application;
use crate::schema::SchemaInfo;
use crate::settings::Settings;
use crate::subscription::{fnmatch, is_pattern};
use crate::subscription::{Router, Streams};

/// The AsyncAPI version the documents follow.
pub const ASYNCAPI_VERSION: &str = "3.0.0";

/// The version of the Kafka bindings used.
pub const KAFKA_BINDING_VERSION: &str = "0.5.0";

impl Application {
    /// The application's AsyncAPI 3.0.0 document, for a service named
    /// `title` at `version`; see [`export::asyncapi`](self).
    pub fn asyncapi(&self, title: &str, version: &str) -> Value {
        document(&self.router(), self.settings(), title, version)
    }
}

/// The AsyncAPI 3.0.0 document of `router`'s schemas and subscriptions
/// under `settings` (servers, topic prefix, partitions, replication), for
/// a service named `title` at `version`. See the [module docs](self).
pub fn document(router: &Router, settings: &Settings, title: &str, version: &str) -> Value {
    let schemas: Vec<&SchemaInfo> = router.schemas().collect();
    let stems = stems(schemas.iter().copied());
    let channels = Channels::of(router, &schemas);

    let mut doc = Map::new();
    doc.insert("asyncapi".into(), json!(ASYNCAPI_VERSION));
    doc.insert(
        "info".into(),
        json!({
            "title": title,
            "version": version,
            "description": description(title, &settings.topic_prefix),
        }),
    );
    doc.insert("defaultContentType".into(), json!("application/json"));
    if !settings.kafka_servers.is_empty() {
        doc.insert("servers".into(), servers(settings));
    }
    doc.insert("channels".into(), channels.to_json(settings, &stems));
    doc.insert(
        "operations".into(),
        operations(router, &schemas, &stems, &channels),
    );
    let mut components = Map::new();
    if !schemas.is_empty() {
        components.insert("schemas".into(), component_schemas(&schemas, &stems));
        components.insert(
            "messages".into(),
            schemas
                .iter()
                .zip(&stems)
                .map(|(schema, stem)| (stem.clone(), message(schema, stem)))
                .collect(),
        );
    }
    if !components.is_empty() {
        doc.insert("components".into(), Value::Object(components));
    }
    Value::Object(doc)
}

fn description(title: &str, prefix: &str) -> String {
    let topics = if prefix.is_empty() {
        "topics are named as the streams".to_owned()
    } else {
        format!("topics are the stream names prefixed with `{prefix}`")
    };
    format!(
        "The streams of {title}, generated by kafkaesk from its schemas and subscriptions. \
         Every record's value is the JSON envelope {{\"schema\": \"Id:version\", \"data\": \
         {{...}}}}; {topics}."
    )
}

fn servers(settings: &Settings) -> Value {
    let protocol = settings
        .kafka_settings
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case("security.protocol"))
        .map(|(_, value)| value.to_ascii_lowercase());
    let protocol = match protocol.as_deref() {
        Some("ssl" | "sasl_ssl") => "kafka-secure",
        _ => "kafka",
    };
    let many = settings.kafka_servers.len() > 1;
    settings
        .kafka_servers
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let key = if many {
                format!("kafka-{}", i + 1)
            } else {
                "kafka".to_owned()
            };
            (
                key,
                json!({"host": host, "protocol": protocol, "title": "Kafka bootstrap server"}),
            )
        })
        .collect()
}

fn schema_ref(name: &str) -> String {
    format!("#/components/schemas/{name}")
}

/// The `data` schemas and the definitions they nest, keyed as the module docs say.
fn component_schemas(schemas: &[&SchemaInfo], stems: &[String]) -> Value {
    let parts: Vec<draft07::Parts> = schemas
        .iter()
        .map(|s| draft07::split(s.json_schema()))
        .collect();
    let shared = shared_definitions(&parts, stems);
    let mut out = Map::new();
    for ((schema, stem), parts) in schemas.iter().zip(stems).zip(&parts) {
        let def_ref = |name: &str| {
            if shared.contains(name) {
                schema_ref(&safe_name(name))
            } else {
                schema_ref(&format!("{stem}.{}", safe_name(name)))
            }
        };
        let root_ref = schema_ref(stem);
        let mut root = draft07::convert(&parts.root, &root_ref, &def_ref);
        if let Value::Object(object) = &mut root {
            object.insert("title".into(), json!(schema.key()));
        }
        out.insert(stem.clone(), root);
        for (name, def) in &parts.defs {
            let key = if shared.contains(name) {
                safe_name(name)
            } else {
                format!("{stem}.{}", safe_name(name))
            };
            out.entry(key)
                .or_insert_with(|| draft07::convert(def, &root_ref, &def_ref));
        }
    }
    Value::Object(out)
}

/// The definitions stored once under their own name: those that every
/// schema defining them defines alike, that do not refer to their schema's
/// root, and that only refer to definitions stored so too.
fn shared_definitions(parts: &[draft07::Parts], stems: &[String]) -> BTreeSet<String> {
    let mut seen: BTreeMap<&str, Option<&Value>> = BTreeMap::new();
    for part in parts {
        for (name, def) in &part.defs {
            seen.entry(name)
                .and_modify(|first| {
                    if *first != Some(def) {
                        *first = None;
                    }
                })
                .or_insert(Some(def));
        }
    }
    let mut shared: BTreeMap<&str, &Value> = seen
        .into_iter()
        .filter_map(|(name, def)| Some((name, def?)))
        .filter(|(name, def)| !stems.contains(&safe_name(name)) && !draft07::refers_to_root(def))
        .collect();
    loop {
        let unshared: Vec<&str> = shared
            .iter()
            .filter(|(_, def)| {
                draft07::def_refs(def)
                    .iter()
                    .any(|name| !shared.contains_key(name.as_str()))
            })
            .map(|(name, _)| *name)
            .collect();
        if unshared.is_empty() {
            break;
        }
        for name in unshared {
            shared.remove(name);
        }
    }
    shared.keys().map(|name| (*name).to_owned()).collect()
}

fn message(schema: &SchemaInfo, stem: &str) -> Value {
    let mut message = json!({
        "name": schema.key(),
        "title": schema.key(),
        "contentType": "application/json",
        "payload": {
            "type": "object",
            "description": "kafkaesk's envelope: the schema's key, and the data.",
            "required": ["schema", "data"],
            "properties": {
                "schema": {"type": "string", "const": schema.key()},
                "data": {"$ref": schema_ref(stem)},
            },
        },
        "bindings": {
            "kafka": {
                "key": {
                    "type": "string",
                    "description": "Optional, chosen by the publisher; records without a key \
                                    are spread over the partitions.",
                },
                "bindingVersion": KAFKA_BINDING_VERSION,
            },
        },
    });
    if let Some(description) = schema.json_schema().get("description") {
        message["summary"] = description.clone();
    }
    message
}

/// A channel of the document.
struct Channel {
    key: String,
    /// The stream name, or the fnmatch pattern.
    stream: String,
    pattern: bool,
    /// Indexes of the schemas whose messages it carries.
    messages: Vec<usize>,
}

/// The channels, in order: the schemas' streams, the subscriptions' streams,
/// then the subscriptions' patterns.
struct Channels {
    channels: Vec<Channel>,
    retention: BTreeMap<String, u128>,
}

/// What a subscription's streams are made of: names and patterns.
fn entries(streams: &Streams) -> Vec<&str> {
    match streams {
        Streams::Pattern(pattern) => vec![pattern.as_str()],
        Streams::List(list) => list.iter().map(String::as_str).collect(),
    }
}

impl Channels {
    fn of(router: &Router, schemas: &[&SchemaInfo]) -> Self {
        let mut channels = Channels {
            channels: Vec::new(),
            retention: BTreeMap::new(),
        };
        for schema in schemas {
            for stream in schema.streams() {
                channels.add(stream, false, schemas);
                if let Some(retention) = schema.retention() {
                    // The first schema to give one decides, as when topics are created.
                    channels
                        .retention
                        .entry(stream.clone())
                        .or_insert(retention.as_millis());
                }
            }
        }
        let subscribed: Vec<&str> = router
            .subscriptions()
            .iter()
            .flat_map(|sub| entries(sub.streams()))
            .collect();
        for entry in subscribed.iter().filter(|e| !is_pattern(e)) {
            channels.add(entry, false, schemas);
        }
        for entry in subscribed.iter().filter(|e| is_pattern(e)) {
            channels.add(entry, true, schemas);
        }
        channels
    }

    fn add(&mut self, stream: &str, pattern: bool, schemas: &[&SchemaInfo]) {
        if self.find(stream).is_some() {
            return;
        }
        let base = safe_name(stream);
        let mut key = base.clone();
        let mut n = 1;
        while self.channels.iter().any(|c| c.key == key) {
            n += 1;
            key = format!("{base}_{n}");
        }
        let messages = schemas
            .iter()
            .enumerate()
            .filter(|(_, schema)| {
                schema.streams().iter().any(|declared| {
                    if pattern {
                        fnmatch(stream, declared)
                    } else {
                        declared == stream
                    }
                })
            })
            .map(|(i, _)| i)
            .collect();
        self.channels.push(Channel {
            key,
            stream: stream.to_owned(),
            pattern,
            messages,
        });
    }

    fn find(&self, stream: &str) -> Option<&Channel> {
        self.channels.iter().find(|c| c.stream == stream)
    }

    /// References to the messages of `channel`, as operations list them.
    fn message_refs(channel: &Channel, stems: &[String]) -> Value {
        channel
            .messages
            .iter()
            .map(|&i| json!({"$ref": format!("#/channels/{}/messages/{}", channel.key, stems[i])}))
            .collect()
    }

    fn to_json(&self, settings: &Settings, stems: &[String]) -> Value {
        self.channels
            .iter()
            .map(|channel| {
                let address = settings.topic(&channel.stream);
                let mut kafka = json!({
                    "partitions": settings.partitions,
                    "replicas": settings.effective_replication_factor(),
                    "bindingVersion": KAFKA_BINDING_VERSION,
                });
                if let Some(ms) = self.retention.get(&channel.stream) {
                    kafka["topicConfiguration"] = json!({"retention.ms": ms});
                }
                let mut value = json!({
                    "address": address,
                    "title": channel.stream,
                    "bindings": {"kafka": kafka},
                });
                if channel.pattern {
                    value["description"] = json!(format!(
                        "Every topic matching the fnmatch pattern `{address}` (`*` any \
                         characters, `?` one, `[...]` one of a set), as kafkaesk subscribes \
                         to it."
                    ));
                    value["x-kafkaesk-topic-regex"] = json!(Streams::Pattern(
                        channel.stream.clone()
                    )
                    .regex(&settings.topic_prefix));
                }
                if !channel.messages.is_empty() {
                    value["messages"] = channel
                        .messages
                        .iter()
                        .map(|&i| {
                            (
                                stems[i].clone(),
                                json!({"$ref": format!("#/components/messages/{}", stems[i])}),
                            )
                        })
                        .collect();
                }
                (channel.key.clone(), value)
            })
            .collect()
    }
}

fn operations(
    router: &Router,
    schemas: &[&SchemaInfo],
    stems: &[String],
    channels: &Channels,
) -> Value {
    let mut operations = Map::new();
    let mut insert = |base: String, operation: Value| {
        let mut key = base.clone();
        let mut n = 1;
        while operations.contains_key(&key) {
            n += 1;
            key = format!("{base}_{n}");
        }
        operations.insert(key, operation);
    };
    for (schema, stem) in schemas.iter().zip(stems) {
        for stream in schema.streams() {
            let Some(channel) = channels.find(stream) else {
                continue;
            };
            insert(
                format!("send.{stem}.{}", channel.key),
                json!({
                    "action": "send",
                    "channel": {"$ref": format!("#/channels/{}", channel.key)},
                    "summary": format!("Publishes `{}` to `{stream}`.", schema.key()),
                    "messages": [
                        {"$ref": format!("#/channels/{}/messages/{stem}", channel.key)}
                    ],
                }),
            );
        }
    }
    for subscription in router.subscriptions() {
        let mut streams = entries(subscription.streams());
        streams.dedup();
        let name = safe_name(subscription.name());
        for stream in &streams {
            let Some(channel) = channels.find(stream) else {
                continue;
            };
            let consumer = match subscription.group() {
                Some(group) => format!("in consumer group `{group}`"),
                None => "without a consumer group".to_owned(),
            };
            let mut operation = json!({
                "action": "receive",
                "channel": {"$ref": format!("#/channels/{}", channel.key)},
                "summary": format!(
                    "Subscription `{}` handles the records of `{stream}`, {consumer}.",
                    subscription.name()
                ),
            });
            if !channel.messages.is_empty() {
                operation["messages"] = Channels::message_refs(channel, stems);
            }
            if let Some(group) = subscription.group() {
                operation["bindings"] = json!({
                    "kafka": {
                        "groupId": {"type": "string", "enum": [group]},
                        "bindingVersion": KAFKA_BINDING_VERSION,
                    },
                });
            }
            let key = if streams.len() == 1 {
                format!("receive.{name}")
            } else {
                format!("receive.{name}.{}", channel.key)
            };
            insert(key, operation);
        }
    }
    Value::Object(operations)
}

#[cfg(test)]
mod tests;
