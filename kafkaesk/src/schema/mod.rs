//! Message schemas: ids, versions, JSON Schemas, validation and the wire envelope.
//!
//! A schema is a Rust type with an id and a version, usually declared with the
//! [`#[schema]`](macro@crate::schema) attribute:
//!
//! ```
//! #[kafkaesk::schema("Content", version = 1, retention = 86400, streams = ["content.edited"])]
//! #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
//! pub struct ContentMessage {
//!     #[schemars(length(min = 1))]
//!     pub foo: String,
//! }
//!
//! use kafkaesk::Schema;
//! assert_eq!(ContentMessage::ID, "Content");
//! assert_eq!(ContentMessage::VERSION, 1);
//! ```
//!
//! # Wire format
//!
//! Every message is the JSON envelope that Python kafkaesk writes and reads,
//! so services in both languages share topics:
//!
//! ```json
//! {"schema":"Content:1","data":{"foo":"bar"}}
//! ```
//!
//! # Validation
//!
//! Published data is checked against the schema's JSON Schema before it is
//! sent, so constraints that serde does not enforce (schemars `length`,
//! `range`, `regex`, formats such as `email`) hold on the wire. Each schema's
//! validator is compiled once, when the schema is registered or first used.
//!
//! Schemas that use only the common keywords (types, properties, `required`,
//! items, lengths, ranges, string enums, `$ref`, `Option`) are checked while
//! the data is serialized, in one pass; the others, and any data that does
//! not pass that check, go through the `jsonschema` crate, which also writes
//! the error report. Both accept exactly the same data.
//!
//! # Export
//!
//! [`export`](crate::export) gives every registered schema as a standalone
//! JSON Schema document (`Content-1.json`), and
//! [`asyncapi`](crate::export::asyncapi) the service's AsyncAPI 3.0.0
//! document (its streams, what it sends and receives, the envelope); the
//! `kafkaesk schemas` command writes both into a directory.

mod checked;

use std::any::TypeId;
use std::borrow::Cow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result, ValidationIssue};
use checked::Plan;

mod catalog;
pub mod contract;
pub(crate) use catalog::SchemaCatalog;

/// A message type with an id and a version.
///
/// Implemented by [`#[schema]`](macro@crate::schema); implement it by hand only to
/// register a type you cannot annotate.
///
/// ```
/// use std::time::Duration;
///
/// #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
/// struct Audit { action: String }
///
/// impl kafkaesk::Schema for Audit {
///     const ID: &'static str = "Audit";
///     const VERSION: u32 = 2;
///     const RETENTION: Option<Duration> = Some(Duration::from_secs(7 * 86400));
/// }
/// ```
pub trait Schema:
    Serialize + DeserializeOwned + schemars::JsonSchema + Send + Sync + 'static
{
    /// The schema id, the part before the colon in `"Content:1"`.
    const ID: &'static str;
    /// The schema version, the part after the colon. Defaults to 1.
    const VERSION: u32 = 1;
    /// Retention of the topics created for this schema (`retention.ms`).
    /// `None` leaves the broker's default.
    const RETENTION: Option<Duration> = None;
    /// Streams to create when the application initializes.
    const STREAMS: &'static [&'static str] = &[];
}

/// A compiled schema: metadata, the JSON Schema and its validator.
///
/// Built once per type by a [`Router`](crate::Router) or, for types that were
/// never registered, on their first publish.
pub struct SchemaInfo {
    id: String,
    version: u32,
    key: String,
    type_name: &'static str,
    type_id: TypeId,
    retention: Option<Duration>,
    streams: Vec<String>,
    json_schema: Value,
    validator: jsonschema::Validator,
    /// Validation while serializing, for schemas it covers.
    plan: Option<Plan>,
    /// `{"schema":"Id:1","data":` — the constant head of every envelope.
    envelope_head: Vec<u8>,
    /// The largest envelope encoded so far, so the next one is allocated once.
    size_hint: AtomicUsize,
}

impl std::fmt::Debug for SchemaInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaInfo")
            .field("key", &self.key)
            .field("type_name", &self.type_name)
            .field("retention", &self.retention)
            .field("streams", &self.streams)
            .finish_non_exhaustive()
    }
}

impl SchemaInfo {
    /// Compiles the schema of a registered type.
    pub fn of<T: Schema>() -> Result<Self> {
        Self::build::<T>(
            T::ID.to_owned(),
            T::VERSION,
            T::RETENTION,
            T::STREAMS.iter().map(|s| (*s).to_owned()).collect(),
        )
    }

    /// Compiles the schema of a type that was never registered.
    ///
    /// Like Python kafkaesk, such a type is published as `"<TypeName>:1"`.
    pub fn unregistered<T: Serialize + schemars::JsonSchema + 'static>() -> Result<Self> {
        Self::build::<T>(short_type_name::<T>(), 1, None, Vec::new())
    }

    fn build<T: schemars::JsonSchema + 'static>(
        id: String,
        version: u32,
        retention: Option<Duration>,
        streams: Vec<String>,
    ) -> Result<Self> {
        let key = format!("{id}:{version}");
        let json_schema = schemars::schema_for!(T).to_value();
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&json_schema)
            .map_err(|err| Error::InvalidSchema {
                schema: key.clone(),
                reason: err.to_string(),
            })?;
        let plan = Plan::compile(&json_schema);
        let mut envelope_head = Vec::with_capacity(key.len() + 24);
        envelope_head.extend_from_slice(b"{\"schema\":");
        serde_json::to_writer(&mut envelope_head, &key).map_err(|source| Error::Serialize {
            type_name: std::any::type_name::<T>(),
            source,
        })?;
        envelope_head.extend_from_slice(b",\"data\":");
        Ok(SchemaInfo {
            id,
            version,
            key,
            type_name: std::any::type_name::<T>(),
            type_id: TypeId::of::<T>(),
            retention,
            streams,
            json_schema,
            validator,
            plan,
            size_hint: AtomicUsize::new(envelope_head.len() + 128),
            envelope_head,
        })
    }

    /// The schema id, e.g. `"Content"`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The schema version.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The `"Id:version"` key written into every envelope.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The Rust type behind the schema.
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }

    pub(crate) fn type_id(&self) -> TypeId {
        self.type_id
    }

    /// Retention for the topics created for this schema.
    pub fn retention(&self) -> Option<Duration> {
        self.retention
    }

    /// Streams created ahead of time.
    pub fn streams(&self) -> &[String] {
        &self.streams
    }

    /// The JSON Schema generated by schemars.
    pub fn json_schema(&self) -> &Value {
        &self.json_schema
    }

    /// Checks `data` against the JSON Schema, reporting every broken rule.
    pub fn validate(&self, data: &Value) -> Result<()> {
        if self.validator.is_valid(data) {
            return Ok(());
        }
        let issues = self
            .validator
            .iter_errors(data)
            .map(|err| ValidationIssue {
                field: err.instance_path().to_string(),
                rule: err.kind().keyword().to_owned(),
                message: err.to_string(),
            })
            .collect();
        Err(Error::Validation {
            schema: self.key.clone(),
            issues,
        })
    }

    /// Serializes `data`, validates it, and returns the complete envelope bytes.
    pub fn encode<T: Serialize + ?Sized>(&self, data: &T) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.size_hint.load(Ordering::Relaxed));
        out.extend_from_slice(&self.envelope_head);
        let checked = self
            .plan
            .as_ref()
            .is_some_and(|plan| plan.write(data, &mut out).is_ok());
        if !checked {
            // The full check decides, and reports every broken rule.
            out.truncate(self.envelope_head.len());
            let value = serde_json::to_value(data).map_err(|source| Error::Serialize {
                type_name: self.type_name,
                source,
            })?;
            self.validate(&value)?;
            // Written from `data`, not `value`, so fields keep their declared
            // order (as pydantic writes them) whichever check ran.
            serde_json::to_writer(&mut out, data).map_err(|source| Error::Serialize {
                type_name: self.type_name,
                source,
            })?;
        }
        out.push(b'}');
        // Capped, so one huge message does not make every later one allocate as much.
        self.size_hint
            .fetch_max(out.len().min(64 * 1024), Ordering::Relaxed);
        Ok(out)
    }

    /// Whether data of this schema is checked while it is serialized (see the
    /// module docs); otherwise it goes through `jsonschema` alone.
    pub fn checks_while_serializing(&self) -> bool {
        self.plan.is_some()
    }
}

/// The last path segment of a type's name, without generics: `a::b::Foo<T>` gives `Foo`.
pub(crate) fn short_type_name<T: ?Sized>() -> String {
    let full = std::any::type_name::<T>();
    let without_generics = full.split('<').next().unwrap_or(full);
    without_generics
        .rsplit("::")
        .next()
        .unwrap_or(without_generics)
        .to_owned()
}

/// The envelope of a consumed message with typed data, decoded in one pass.
/// The schema key is borrowed from the message unless it holds escapes.
#[derive(serde::Deserialize)]
pub(crate) struct Envelope<'m, T> {
    #[serde(borrow, default, deserialize_with = "borrowed_key")]
    pub(crate) schema: Option<Cow<'m, str>>,
    pub(crate) data: T,
}

/// An optional string, borrowed from the input when it can be. serde
/// borrows a field typed `Cow<str>` itself, but inside an `Option` the `Cow`
/// is always owned: one allocation and copy a consumed message for nothing.
fn borrowed_key<'de: 'm, 'm, D>(deserializer: D) -> Result<Option<Cow<'m, str>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct Key;

    impl<'de> serde::de::Visitor<'de> for Key {
        type Value = Option<Cow<'de, str>>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a schema key (a string) or null")
        }

        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_str(self)
        }

        fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed(v)))
        }

        // A key with escapes, unescaped into a buffer the input does not own.
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_owned())))
        }

        fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v)))
        }
    }

    deserializer.deserialize_option(Key)
}

/// Just the schema key of an envelope; skips `data` without building it.
#[derive(serde::Deserialize)]
pub(crate) struct EnvelopeSchema {
    pub(crate) schema: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_borrows_its_schema_key_unless_it_holds_escapes() {
        let plain = br#"{"schema":"Content:1","data":1}"#;
        let envelope: Envelope<'_, u8> = serde_json::from_slice(plain).unwrap();
        assert!(matches!(envelope.schema, Some(Cow::Borrowed("Content:1"))));

        let escaped = br#"{"schema":"Con\u0074ent:1","data":1}"#;
        let envelope: Envelope<'_, u8> = serde_json::from_slice(escaped).unwrap();
        assert!(matches!(envelope.schema, Some(Cow::Owned(ref key)) if key == "Content:1"));

        for no_key in [&br#"{"schema":null,"data":1}"#[..], br#"{"data":1}"#] {
            let envelope: Envelope<'_, u8> = serde_json::from_slice(no_key).unwrap();
            assert_eq!((envelope.schema, envelope.data), (None, 1));
        }

        let err = serde_json::from_slice::<Envelope<'_, u8>>(br#"{"schema":7,"data":1}"#)
            .err()
            .unwrap();
        assert!(err.to_string().contains("a schema key"), "{err}");
    }

    #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    struct Content {
        #[schemars(length(min = 2))]
        foo: String,
        #[schemars(range(max = 10))]
        n: u32,
    }

    impl Schema for Content {
        const ID: &'static str = "Content";
    }

    #[test]
    fn envelope_matches_python_wire_format() {
        let info = SchemaInfo::of::<Content>().unwrap();
        let bytes = info
            .encode(&Content {
                foo: "bar".into(),
                n: 3,
            })
            .unwrap();
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            r#"{"schema":"Content:1","data":{"foo":"bar","n":3}}"#
        );
    }

    #[test]
    fn both_checks_write_fields_in_declared_order() {
        #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
        struct Plain {
            z: u8,
            a: String,
        }
        impl Schema for Plain {
            const ID: &'static str = "Plain";
        }
        #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
        struct WithEmail {
            z: u8,
            #[schemars(email)]
            a: String,
        }
        impl Schema for WithEmail {
            const ID: &'static str = "WithEmail";
        }
        let plain = SchemaInfo::of::<Plain>().unwrap();
        let with_email = SchemaInfo::of::<WithEmail>().unwrap();
        assert!(plain.checks_while_serializing());
        assert!(!with_email.checks_while_serializing());
        let bytes = plain
            .encode(&Plain {
                z: 1,
                a: "x@y.z".into(),
            })
            .unwrap();
        assert_eq!(bytes, br#"{"schema":"Plain:1","data":{"z":1,"a":"x@y.z"}}"#);
        let bytes = with_email
            .encode(&WithEmail {
                z: 1,
                a: "x@y.z".into(),
            })
            .unwrap();
        assert_eq!(
            bytes,
            br#"{"schema":"WithEmail:1","data":{"z":1,"a":"x@y.z"}}"#
        );
        let err = with_email
            .encode(&WithEmail {
                z: 1,
                a: "nope".into(),
            })
            .unwrap_err();
        assert!(matches!(err, Error::Validation { .. }), "{err:?}");
    }

    #[test]
    fn validation_reports_each_broken_rule() {
        let info = SchemaInfo::of::<Content>().unwrap();
        let err = info
            .encode(&Content {
                foo: "x".into(),
                n: 11,
            })
            .unwrap_err();
        let Error::Validation { schema, issues } = err else {
            panic!("expected a validation error, got {err:?}");
        };
        assert_eq!(schema, "Content:1");
        let rules: Vec<_> = issues
            .iter()
            .map(|i| (i.field.as_str(), i.rule.as_str()))
            .collect();
        assert!(rules.contains(&("/foo", "minLength")), "{rules:?}");
        assert!(rules.contains(&("/n", "maximum")), "{rules:?}");
    }

    #[test]
    fn unregistered_type_uses_its_short_name() {
        #[derive(serde::Serialize, schemars::JsonSchema)]
        struct Unknown {
            a: i32,
        }
        let info = SchemaInfo::unregistered::<Unknown>().unwrap();
        assert_eq!(info.key(), "Unknown:1");
        assert_eq!(short_type_name::<Vec<u8>>(), "Vec");
    }
}
