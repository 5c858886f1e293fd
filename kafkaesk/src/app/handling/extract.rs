//! What a handler can ask for, by type.
//!
//! A handler's **first** parameter decides how the record is decoded; it
//! implements [`FromMessage`]:
//!
//! | first parameter | what it gets |
//! |---|---|
//! | a [`Schema`] type (`ContentMessage`) | the envelope's `data`, deserialized |
//! | [`Json<T>`] for any `T: DeserializeOwned` | the same, for types that are not schemas |
//! | [`serde_json::Value`] | the whole message as JSON, envelope included |
//! | `Vec<u8>` | the raw value bytes |
//! | [`Record`] | the Kafka record itself |
//!
//! **Further** parameters are injected by type; they implement [`FromContext`]:
//! [`SchemaId`], [`Record`], [`Application`], [`Subscriber`] and
//! [`tracing::Span`] (the handler's span, see [`propagation`](crate::observe::propagation)), and
//! with the `opentelemetry` feature its `opentelemetry::Context`.
//!
//! ```
//! use kafkaesk::{Record, SchemaId, Subscriber};
//!
//! #[kafkaesk::schema("Content")]
//! #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
//! pub struct Content { pub foo: String }
//!
//! #[kafkaesk::subscribe("content.*", group = "indexer")]
//! async fn index(data: Content, schema: SchemaId, record: Record, subscriber: Subscriber) {
//!     println!("{} {} from {}: {}", schema, record.offset(), record.topic(), data.foo);
//! }
//! ```
//!
//! A record that cannot be decoded is not handed to the handler: it is logged
//! with its position, counted as unhandled and committed past.
//!
//! Your own types can be injected too: implement [`FromContext`] for them.

use std::borrow::Cow;
use std::cell::OnceCell;

use serde::de::DeserializeOwned;

use crate::app::Application;
use crate::handling::{HandlerScope, Subscriber};
use crate::record::{Record, RecordSource};
use crate::schema::{Envelope, EnvelopeSchema, Schema};

/// Why a record could not be turned into what a handler asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection(String);

impl Rejection {
    /// A rejection with a reason that says what was wrong with the record.
    pub fn new(reason: impl Into<String>) -> Self {
        Rejection(reason.into())
    }

    /// The reason.
    pub fn reason(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Everything a handler's parameters are drawn from, for one record.
///
/// It borrows the message as librdkafka delivered it: extractors that only
/// decode the value read it in place, and the owned [`Record`] (and the
/// [`Subscriber`], which carries it) is built only when a parameter asks for it.
///
/// ```
/// use kafkaesk::handling::{FromContext, MessageContext, Rejection};
///
/// /// The record's partition, injected by type.
/// struct Partition(i32);
///
/// impl FromContext for Partition {
///     fn from_context(ctx: &MessageContext<'_>) -> Result<Self, Rejection> {
///         Ok(Partition(ctx.partition()))
///     }
/// }
/// ```
pub struct MessageContext<'m> {
    source: RecordSource<'m>,
    scope: &'m HandlerScope,
    schema: Option<Cow<'m, str>>,
    record: OnceCell<Record>,
    subscriber: OnceCell<Subscriber>,
}

impl<'m> MessageContext<'m> {
    pub(crate) fn new(source: RecordSource<'m>, scope: &'m HandlerScope) -> Self {
        MessageContext {
            source,
            scope,
            schema: None,
            record: OnceCell::new(),
            subscriber: OnceCell::new(),
        }
    }

    /// The message value; empty for a null (tombstone) value.
    pub fn value(&self) -> &'m [u8] {
        self.source.value()
    }

    /// The message key, if any.
    pub fn key(&self) -> Option<&'m [u8]> {
        self.source.key()
    }

    /// Full topic name, prefix included.
    pub fn topic(&self) -> &'m str {
        self.source.shared_topic()
    }

    /// Partition number.
    pub fn partition(&self) -> i32 {
        self.source.partition()
    }

    /// Offset within the partition.
    pub fn offset(&self) -> i64 {
        self.source.offset()
    }

    /// The record being handled, copied out of librdkafka's buffers the
    /// first time it is asked for.
    pub fn record(&self) -> &Record {
        match self.source {
            RecordSource::Owned(record) => record,
            fetched => self.record.get_or_init(|| fetched.to_record()),
        }
    }

    /// The envelope's schema key, when the first parameter already decoded it.
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// The application.
    pub fn app(&self) -> &Application {
        &self.scope.app
    }

    /// The subscriber handling the record.
    pub fn subscriber(&self) -> &Subscriber {
        self.subscriber
            .get_or_init(|| self.scope.subscriber(self.record().clone()))
    }
}

/// A handler's first parameter: how the record is decoded.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the first parameter of a kafkaesk handler",
    label = "the first parameter decides how a record is decoded",
    note = "use a #[kafkaesk::schema] type, kafkaesk::Json<T>, serde_json::Value, Vec<u8> or kafkaesk::Record"
)]
pub trait FromMessage: Sized + Send + 'static {
    /// Decodes the record. May store the envelope's schema key in the context.
    fn from_message(ctx: &mut MessageContext<'_>) -> Result<Self, Rejection>;
}

/// A further handler parameter, injected by type.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be injected into a kafkaesk handler",
    label = "not an injectable type",
    note = "after the first parameter, a handler can take kafkaesk::SchemaId, kafkaesk::Record, kafkaesk::Application, kafkaesk::Subscriber or tracing::Span"
)]
pub trait FromContext: Sized + Send + 'static {
    /// Builds the parameter from the context.
    fn from_context(ctx: &MessageContext<'_>) -> Result<Self, Rejection>;
}

/// Longest decoding reason kept: reasons are logged for every unhandled
/// record, and serde quotes offending strings in full.
const MAX_REASON_CHARS: usize = 300;

fn decode_error(what: &str, err: serde_json::Error) -> Rejection {
    let mut reason = format!("{what}: {err}");
    if let Some((cut, _)) = reason.char_indices().nth(MAX_REASON_CHARS) {
        reason.truncate(cut);
        reason.push_str("… (truncated)");
    }
    Rejection(reason)
}

impl<T: Schema> FromMessage for T {
    fn from_message(ctx: &mut MessageContext<'_>) -> Result<Self, Rejection> {
        let envelope: Envelope<'_, T> = serde_json::from_slice(ctx.value()).map_err(|e| {
            decode_error(&format!("not a kafkaesk envelope with `{}` data", T::ID), e)
        })?;
        ctx.schema = envelope.schema;
        Ok(envelope.data)
    }
}

/// The envelope's `data`, deserialized into any type, schema or not.
///
/// ```
/// #[derive(serde::Deserialize)]
/// struct Partial { foo: String }
///
/// #[kafkaesk::subscribe("content.*")]
/// async fn peek(kafkaesk::Json(data): kafkaesk::Json<Partial>) {
///     println!("{}", data.foo);
/// }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Json<T>(pub T);

impl<T: DeserializeOwned + Send + 'static> FromMessage for Json<T> {
    fn from_message(ctx: &mut MessageContext<'_>) -> Result<Self, Rejection> {
        let envelope: Envelope<'_, T> = serde_json::from_slice(ctx.value())
            .map_err(|e| decode_error("not a kafkaesk envelope with matching data", e))?;
        ctx.schema = envelope.schema;
        Ok(Json(envelope.data))
    }
}

impl FromMessage for serde_json::Value {
    fn from_message(ctx: &mut MessageContext<'_>) -> Result<Self, Rejection> {
        serde_json::from_slice(ctx.value()).map_err(|e| decode_error("not JSON", e))
    }
}

impl FromMessage for Vec<u8> {
    fn from_message(ctx: &mut MessageContext<'_>) -> Result<Self, Rejection> {
        Ok(ctx.value().to_vec())
    }
}

impl FromMessage for Record {
    fn from_message(ctx: &mut MessageContext<'_>) -> Result<Self, Rejection> {
        Ok(ctx.record().clone())
    }
}

/// The envelope's schema key, e.g. `"Content:1"`, injected by type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SchemaId(pub String);

impl SchemaId {
    /// The key as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for SchemaId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::ops::Deref for SchemaId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl FromContext for SchemaId {
    fn from_context(ctx: &MessageContext<'_>) -> Result<Self, Rejection> {
        if let Some(schema) = &ctx.schema {
            return Ok(SchemaId(schema.to_string()));
        }
        let envelope: EnvelopeSchema = serde_json::from_slice(ctx.value())
            .map_err(|e| decode_error("not a kafkaesk envelope", e))?;
        envelope
            .schema
            .map(SchemaId)
            .ok_or_else(|| Rejection::new("the envelope has no `schema` key"))
    }
}

impl FromContext for Record {
    fn from_context(ctx: &MessageContext<'_>) -> Result<Self, Rejection> {
        Ok(ctx.record().clone())
    }
}

impl FromContext for Subscriber {
    fn from_context(ctx: &MessageContext<'_>) -> Result<Self, Rejection> {
        Ok(ctx.subscriber().clone())
    }
}

impl FromContext for Application {
    fn from_context(ctx: &MessageContext<'_>) -> Result<Self, Rejection> {
        Ok(ctx.app().clone())
    }
}

/// The handler's `kafkaesk.consume` span (see [`propagation`](crate::observe::propagation)):
/// the handler is called inside it.
impl FromContext for tracing::Span {
    fn from_context(_: &MessageContext<'_>) -> Result<Self, Rejection> {
        Ok(tracing::Span::current())
    }
}

/// The OpenTelemetry context of the handler's span (feature `opentelemetry`).
#[cfg(feature = "opentelemetry")]
impl FromContext for opentelemetry::Context {
    fn from_context(_: &MessageContext<'_>) -> Result<Self, Rejection> {
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        Ok(tracing::Span::current().context())
    }
}
