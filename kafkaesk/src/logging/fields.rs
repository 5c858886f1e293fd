//! Capturing an event on the logging thread: its message, typed fields, error
//! and the fields of the spans around it.

use std::backtrace::{Backtrace, BacktraceStatus};
use std::error::Error as StdError;
use std::fmt;
use std::time::SystemTime;

use serde::Serialize;
use serde_json::{Map, Value};
use tracing::field::{DisplayValue, Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// Records `value` as JSON, so that it is shipped as an object or array
/// rather than as text.
///
/// The console shows the same compact JSON. Meant for structs, maps and
/// sequences: numbers, booleans and strings are typed already when recorded
/// directly (`count = 3`, `name = "x"`, `name = %s`).
///
/// ```
/// let tags = vec!["a", "b"];
/// tracing::info!(tags = kafkaesk::logging::json(&tags), "tagged");
/// ```
pub fn json<T: Serialize + ?Sized>(value: &T) -> DisplayValue<JsonDisplay<'_, T>> {
    tracing::field::display(JsonDisplay(value))
}

/// Displays a value as compact JSON; made by [`json`].
pub struct JsonDisplay<'a, T: ?Sized>(&'a T);

impl<T: Serialize + ?Sized> fmt::Display for JsonDisplay<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match serde_json::to_string(self.0) {
            Ok(text) => f.write_str(&text),
            // A failing log field must not fail the formatting of the whole event.
            Err(err) => write!(f, "<not serializable: {err}>"),
        }
    }
}

impl<T: Serialize + ?Sized> fmt::Debug for JsonDisplay<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Fields of one span, kept in the registry's span extensions.
pub(super) struct SpanFields(pub(super) Map<String, Value>);

/// What the logging thread hands to the shipping thread.
pub(super) struct Entry {
    pub(super) time: SystemTime,
    pub(super) level: Level,
    pub(super) target: &'static str,
    pub(super) message: String,
    pub(super) fields: Map<String, Value>,
    pub(super) error: Option<ErrorInfo>,
}

impl Entry {
    pub(super) fn capture<S>(event: &Event<'_>, ctx: &Context<'_, S>) -> Entry
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let time = SystemTime::now();
        let mut fields = Map::new();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(SpanFields(span_fields)) = span.extensions().get::<SpanFields>() {
                    fields.extend(span_fields.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
            }
        }
        let mut visitor = FieldVisitor::for_event();
        event.record(&mut visitor);
        fields.extend(visitor.fields);
        let metadata = event.metadata();
        Entry {
            time,
            level: *metadata.level(),
            target: metadata.target(),
            message: visitor.message.unwrap_or_default(),
            fields,
            error: visitor.error,
        }
    }
}

/// The first error an event carries, described on the logging thread while
/// the error still exists.
pub(super) struct ErrorInfo {
    pub(super) exception: String,
    pub(super) stack: String,
    pub(super) trace: Option<String>,
}

/// A source chain longer than this is cut: some chains loop.
const MAX_SOURCES: usize = 32;

impl ErrorInfo {
    fn of(err: &(dyn StdError + 'static)) -> ErrorInfo {
        let mut stack = err.to_string();
        let mut source = err.source();
        let mut depth = 0;
        while let Some(cause) = source {
            if depth == MAX_SOURCES {
                stack.push_str("\nCaused by: ...");
                break;
            }
            stack.push_str("\nCaused by: ");
            stack.push_str(&cause.to_string());
            source = cause.source();
            depth += 1;
        }
        // Stable Rust cannot ask a `dyn Error` for its backtrace; the logging
        // call's stack is what Python ships as `trace` (its `stack_info`).
        // `capture` is free unless RUST_BACKTRACE or RUST_LIB_BACKTRACE asks for it.
        let backtrace = Backtrace::capture();
        let trace =
            (backtrace.status() == BacktraceStatus::Captured).then(|| backtrace.to_string());
        ErrorInfo {
            exception: exception_name(err),
            stack,
            trace,
        }
    }
}

/// The type of an error, as well as a `dyn Error` allows.
pub(super) fn exception_name(err: &(dyn StdError + 'static)) -> String {
    macro_rules! known {
        ($($ty:ty => $name:literal),* $(,)?) => {
            $(if err.is::<$ty>() {
                return $name.to_owned();
            })*
        };
    }
    known! {
        std::io::Error => "std::io::Error",
        std::fmt::Error => "std::fmt::Error",
        std::num::ParseIntError => "std::num::ParseIntError",
        std::num::ParseFloatError => "std::num::ParseFloatError",
        std::num::TryFromIntError => "std::num::TryFromIntError",
        std::str::ParseBoolError => "std::str::ParseBoolError",
        std::str::Utf8Error => "std::str::Utf8Error",
        std::string::FromUtf8Error => "std::string::FromUtf8Error",
        std::env::VarError => "std::env::VarError",
        std::net::AddrParseError => "std::net::AddrParseError",
        std::time::SystemTimeError => "std::time::SystemTimeError",
        serde_json::Error => "serde_json::Error",
        crate::Error => "kafkaesk::Error",
    }
    debug_type_name(&format!("{err:?}")).unwrap_or_else(|| "Error".to_owned())
}

/// The name a derived `Debug` output starts with: `Name`, `Name(..)` or
/// `Name { .. }`. Anything else, such as a sentence, has none.
fn debug_type_name(debug: &str) -> Option<String> {
    let end = debug
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(debug.len());
    let (name, rest) = debug.split_at(end);
    let starts_upper = name.chars().next().is_some_and(|c| c.is_ascii_uppercase());
    let shaped = rest.is_empty() || rest.starts_with('(') || rest.starts_with(" {");
    (starts_upper && shaped).then(|| name.to_owned())
}

/// A `Debug` or `Display` text that is a JSON object or array becomes that
/// value; any other text stays a string.
fn text_value(text: String) -> Value {
    if text.starts_with('{') || text.starts_with('[') {
        if let Ok(value @ (Value::Object(_) | Value::Array(_))) = serde_json::from_str(&text) {
            return value;
        }
    }
    Value::String(text)
}

/// Records fields as typed JSON values.
pub(super) struct FieldVisitor {
    /// Events take `message` and errors apart; spans keep them as fields.
    event: bool,
    message: Option<String>,
    fields: Map<String, Value>,
    error: Option<ErrorInfo>,
}

impl FieldVisitor {
    pub(super) fn for_event() -> Self {
        FieldVisitor {
            event: true,
            message: None,
            fields: Map::new(),
            error: None,
        }
    }

    pub(super) fn for_span() -> Self {
        FieldVisitor {
            event: false,
            ..Self::for_event()
        }
    }

    pub(super) fn into_fields(self) -> Map<String, Value> {
        self.fields
    }

    fn is_message(&self, field: &Field) -> bool {
        self.event && field.name() == "message"
    }

    fn insert(&mut self, field: &Field, value: Value) {
        self.fields.insert(field.name().to_owned(), value);
    }
}

impl Visit for FieldVisitor {
    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinity.
        let value = serde_json::Number::from_f64(value)
            .map_or_else(|| Value::String(value.to_string()), Value::Number);
        self.insert(field, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.insert(field, Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.insert(field, Value::from(value));
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        let value =
            i64::try_from(value).map_or_else(|_| Value::String(value.to_string()), Value::from);
        self.insert(field, value);
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        let value =
            u64::try_from(value).map_or_else(|_| Value::String(value.to_string()), Value::from);
        self.insert(field, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.insert(field, Value::Bool(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if self.is_message(field) {
            self.message = Some(value.to_owned());
        } else {
            self.insert(field, Value::String(value.to_owned()));
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn StdError + 'static)) {
        if self.event && self.error.is_none() {
            self.error = Some(ErrorInfo::of(value));
        }
        self.insert(field, Value::String(value.to_string()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        if self.is_message(field) {
            self.message = Some(text);
        } else {
            self.insert(field, text_value(text));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::prelude::*;
    use tracing_subscriber::Layer;

    use super::*;

    /// Captures entries the way the shipping layer does, without a queue.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<Entry>>>);

    impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
        fn on_new_span(
            &self,
            attrs: &tracing::span::Attributes<'_>,
            id: &tracing::span::Id,
            ctx: Context<'_, S>,
        ) {
            let mut visitor = FieldVisitor::for_span();
            attrs.record(&mut visitor);
            if let Some(span) = ctx.span(id) {
                span.extensions_mut()
                    .replace(SpanFields(visitor.into_fields()));
            }
        }

        fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
            self.0.lock().unwrap().push(Entry::capture(event, &ctx));
        }
    }

    fn capture(f: impl FnOnce()) -> Vec<Entry> {
        let layer = Capture::default();
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer.clone()), f);
        let mut entries = layer.0.lock().unwrap();
        std::mem::take(&mut *entries)
    }

    #[derive(Debug)]
    struct Outer(std::io::Error);

    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("loading failed")
        }
    }

    impl StdError for Outer {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn fields_keep_their_types() {
        #[derive(Serialize)]
        struct User {
            name: &'static str,
            age: u8,
        }
        let entries = capture(|| {
            let span = tracing::info_span!("request", request_id = 42_u64, route = "/a");
            let _entered = span.enter();
            let inner = tracing::info_span!("inner", route = "/b");
            let _inner = inner.enter();
            tracing::warn!(
                count = 3,
                negative = -4_i64,
                ratio = 0.5,
                ok = true,
                name = "bob",
                shown = %"as text",
                list = ?vec![1, 2],
                not_json = ?Some(1),
                user = super::json(&User { name: "ann", age: 30 }),
                huge = u128::MAX,
                nan = f64::NAN,
                "hello {}", "world"
            );
        });
        let [entry] = &entries[..] else {
            panic!("expected one entry");
        };
        assert_eq!(entry.message, "hello world");
        assert_eq!(entry.level, Level::WARN);
        let expected = serde_json::json!({
            "request_id": 42, "route": "/b", "count": 3, "negative": -4, "ratio": 0.5,
            "ok": true, "name": "bob", "shown": "as text", "list": [1, 2],
            "not_json": "Some(1)", "user": {"name": "ann", "age": 30},
            "huge": u128::MAX.to_string(), "nan": "NaN",
        });
        assert_eq!(Value::Object(entry.fields.clone()), expected);
        assert!(entry.error.is_none());
    }

    #[test]
    fn errors_give_exception_and_stack() {
        let err = Outer(std::io::Error::new(std::io::ErrorKind::NotFound, "no file"));
        let entries = capture(|| {
            tracing::error!(error = &err as &dyn StdError, "failed");
        });
        let error = entries[0].error.as_ref().expect("error info");
        assert_eq!(error.exception, "Outer");
        assert_eq!(error.stack, "loading failed\nCaused by: no file");
        assert_eq!(entries[0].fields["error"], "loading failed");
    }

    #[test]
    fn exception_names() {
        let io = std::io::Error::other("x");
        assert_eq!(exception_name(&io), "std::io::Error");
        let parse = "x".parse::<i32>().unwrap_err();
        assert_eq!(exception_name(&parse), "std::num::ParseIntError");
        assert_eq!(debug_type_name("Timeout(5s)").as_deref(), Some("Timeout"));
        assert_eq!(debug_type_name("Gone").as_deref(), Some("Gone"));
        assert_eq!(
            debug_type_name("MyError { code: 1 }").as_deref(),
            Some("MyError")
        );
        assert_eq!(debug_type_name("Connection refused"), None);
        assert_eq!(debug_type_name("oops"), None);
    }
}
