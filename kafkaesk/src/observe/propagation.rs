//! Traces through Kafka headers: each handler runs in a span, and with the
//! `opentelemetry` feature a trace follows a message from its publisher
//! through the handlers it wakes, across services and languages.
//!
//! # The handler's span
//!
//! Every handler run is inside a `kafkaesk.consume` span with the
//! subscription, topic, partition and offset, so log lines written by a
//! handler say which record they are about. Its level is `INFO` with the
//! `opentelemetry` feature, so traces connect under the usual filters, and
//! `DEBUG` without it, so a console logger at `info` does not pay for a span
//! per record; `kafkaesk::observe::propagation=debug` turns them on. A handler takes the span as a
//! parameter of type [`tracing::Span`], as Python handlers take an
//! `opentracing.Span`. The span has no `tracing` parent: a handler's trace
//! is the message's, not whatever span the consumer was started in.
//!
//! # With the `opentelemetry` feature
//!
//! Install a [`tracing_opentelemetry`] layer (any OpenTelemetry SDK and
//! exporter) and:
//! - publishing inside a span adds a W3C `traceparent` (and `tracestate`)
//!   header for that span, and the same context in Jaeger's `uber-trace-id`
//!   for Python kafkaesk consumers whose opentracing tracer is Jaeger's;
//!   a header the message already has is never overwritten (as in Python
//!   kafkaesk);
//! - a consumed record with a `traceparent` header, or with Jaeger's
//!   `uber-trace-id` (what Python kafkaesk deployments with opentracing and
//!   Jaeger send), makes the handler's span a child of that remote span, so a
//!   trace that starts in Python continues in Rust;
//! - [`Subscriber::publish`](crate::Subscriber::publish) and
//!   [`Subscriber::forward`](crate::Subscriber::forward) carry the consumed
//!   record's headers but not its trace headers: the message gets the
//!   handler's span as its parent, so the trace reads publish → handler →
//!   republish.
//!
//! The handler's span context is `span.context()` through
//! [`tracing_opentelemetry::OpenTelemetrySpanExt`].
//!
//! # Python consumers and binary headers
//!
//! Python kafkaesk's consumer decodes every header value as UTF-8 to hand
//! them to its tracer. A header whose value is not UTF-8 makes a Python
//! consumer with tracing on fail on that record. kafkaesk's own headers are
//! text; keep yours text when Python services consume the stream.

use std::borrow::Cow;

use crate::record::{Headers, RecordSource};

/// W3C Trace Context's header.
pub const TRACEPARENT: &str = "traceparent";
/// W3C Trace Context's vendor header.
pub const TRACESTATE: &str = "tracestate";
/// Jaeger's header, as opentracing with Jaeger writes it.
pub const UBER_TRACE_ID: &str = "uber-trace-id";

/// The level of handlers' spans: `INFO` where they carry traces, `DEBUG`
/// where they only give log lines their record, so that a console logger at
/// `info` does not build a span for every record.
const SPAN_LEVEL: tracing::Level = if cfg!(feature = "opentelemetry") {
    tracing::Level::INFO
} else {
    tracing::Level::DEBUG
};

/// The span a handler runs in, child of the record's remote span when it
/// has one and the `opentelemetry` feature is on.
pub(crate) fn consume_span(subscription: &str, record: RecordSource<'_>) -> tracing::Span {
    let span = tracing::span!(
        parent: None,
        SPAN_LEVEL,
        "kafkaesk.consume",
        otel.kind = "consumer",
        messaging.system = "kafka",
        subscription,
        topic = &**record.shared_topic(),
        partition = record.partition(),
        offset = record.offset(),
    );
    #[cfg(feature = "opentelemetry")]
    if !span.is_disabled() {
        otel::adopt_parent(&span, record);
    }
    span
}

/// Adds the current span's trace headers to `headers`, where no header of
/// the same name is there already.
#[cfg_attr(not(feature = "opentelemetry"), allow(unused_variables))]
pub(crate) fn inject(headers: &mut Headers) {
    #[cfg(feature = "opentelemetry")]
    otel::inject(headers);
}

/// The headers of a consumed record as a handler's publish carries them:
/// without the record's trace headers when the current span has a trace of
/// its own to put there instead.
pub(crate) fn forwarded(headers: &Headers) -> Cow<'_, Headers> {
    #[cfg(feature = "opentelemetry")]
    if otel::current_span_is_traced() {
        let mut without = headers.clone();
        for name in [TRACEPARENT, TRACESTATE, UBER_TRACE_ID] {
            without.remove(name);
        }
        return Cow::Owned(without);
    }
    Cow::Borrowed(headers)
}

#[cfg(feature = "opentelemetry")]
mod otel {
    use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    use opentelemetry::Context;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    use super::{TRACEPARENT, TRACESTATE, UBER_TRACE_ID};
    use crate::record::{Headers, RecordSource};

    pub(super) fn adopt_parent(span: &tracing::Span, record: RecordSource<'_>) {
        let parent = if let Some(value) = record.header(TRACEPARENT) {
            let carrier = RecordHeaders {
                traceparent: std::str::from_utf8(value).ok(),
                tracestate: record
                    .header(TRACESTATE)
                    .and_then(|v| std::str::from_utf8(v).ok()),
            };
            TraceContextPropagator::new().extract(&carrier)
        } else if let Some(context) = record.header(UBER_TRACE_ID).and_then(parse_uber_trace_id) {
            Context::new().with_remote_span_context(context)
        } else {
            return;
        };
        if parent.span().span_context().is_valid() {
            // Fails only when no OpenTelemetry layer is installed.
            let _ = span.set_parent(parent);
        }
    }

    pub(super) fn current_span_is_traced() -> bool {
        let context = tracing::Span::current().context();
        context.span().span_context().is_valid()
    }

    pub(super) fn inject(headers: &mut Headers) {
        let context = tracing::Span::current().context();
        if !context.span().span_context().is_valid() {
            return;
        }
        let mut injector = HeaderInjector(headers);
        TraceContextPropagator::new().inject_context(&context, &mut injector);
        let span = context.span();
        let ids = span.span_context();
        // Jaeger's form, for Python kafkaesk consumers whose opentracing
        // tracer is Jaeger's and reads only this header.
        let sampled = u8::from(ids.is_sampled());
        let jaeger = format!("{}:{}:0:{sampled}", ids.trace_id(), ids.span_id());
        injector.set(UBER_TRACE_ID, jaeger);
    }

    struct RecordHeaders<'a> {
        traceparent: Option<&'a str>,
        tracestate: Option<&'a str>,
    }

    impl Extractor for RecordHeaders<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            match key {
                TRACEPARENT => self.traceparent,
                TRACESTATE => self.tracestate,
                _ => None,
            }
        }

        fn keys(&self) -> Vec<&str> {
            vec![TRACEPARENT, TRACESTATE]
        }
    }

    /// Sets headers that are not there yet.
    struct HeaderInjector<'a>(&'a mut Headers);

    impl Injector for HeaderInjector<'_> {
        fn set(&mut self, key: &str, value: String) {
            if !self.0.contains_key(key) {
                self.0.insert(key, value);
            }
        }
    }

    /// Jaeger's `{trace-id}:{span-id}:{parent-span-id}:{flags}`, ids in hex
    /// of up to 32 and 16 digits, `:` possibly written `%3A`.
    pub(super) fn parse_uber_trace_id(value: &[u8]) -> Option<SpanContext> {
        let text = std::str::from_utf8(value)
            .ok()?
            .replace("%3A", ":")
            .replace("%3a", ":");
        let mut parts = text.trim().split(':');
        let (trace, span, _parent, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || trace.len() > 32 || span.len() > 16 {
            return None;
        }
        let trace_id = TraceId::from_hex(&format!("{trace:0>32}")).ok()?;
        let span_id = SpanId::from_hex(&format!("{span:0>16}")).ok()?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        let sampled = if flags & 1 == 1 {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        let context = SpanContext::new(trace_id, span_id, sampled, true, TraceState::default());
        context.is_valid().then_some(context)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn jaeger_ids_are_padded_and_flags_read() {
            let context = parse_uber_trace_id(b"7b8d3f2a9c1e4d56:1a2b3c4d5e6f7081:0:1").unwrap();
            assert_eq!(
                context.trace_id().to_string(),
                "00000000000000007b8d3f2a9c1e4d56"
            );
            assert_eq!(context.span_id().to_string(), "1a2b3c4d5e6f7081");
            assert!(context.is_sampled());
            assert!(context.is_remote());
            let encoded = parse_uber_trace_id(b"abc%3Adef%3A0%3A0").unwrap();
            assert_eq!(encoded.span_id().to_string(), "0000000000000def");
            assert!(!encoded.is_sampled());
        }

        #[test]
        fn publishing_in_a_span_adds_headers_but_never_overwrites_one() {
            use opentelemetry::trace::TracerProvider as _;
            use tracing_subscriber::layer::SubscriberExt;

            let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
            let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("unit"));
            let subscriber = tracing_subscriber::registry().with(layer);
            tracing::subscriber::with_default(subscriber, || {
                let mut outside = Headers::new();
                inject(&mut outside);
                assert!(outside.is_empty(), "no span, no trace headers");

                let span = tracing::info_span!("publish");
                let _inside = span.enter();
                let mut fresh = Headers::new();
                inject(&mut fresh);
                let traceparent = std::str::from_utf8(fresh.get(TRACEPARENT).unwrap()).unwrap();
                assert!(traceparent.starts_with("00-") && traceparent.ends_with("-01"));
                assert!(fresh.contains_key(UBER_TRACE_ID));

                let mut theirs = Headers::new().with(TRACEPARENT, "mine");
                inject(&mut theirs);
                assert_eq!(theirs.get(TRACEPARENT), Some(&b"mine"[..]));
                assert_eq!(theirs.iter().filter(|h| h.key == TRACEPARENT).count(), 1);
            });
        }

        #[test]
        fn malformed_jaeger_ids_are_ignored() {
            for bad in [
                &b""[..],
                b"a:b:c",
                b"0:0:0:1",
                b"xyz:1:0:1",
                b"1:2:3:4:5",
                &[0xff, 0xfe],
            ] {
                assert!(parse_uber_trace_id(bad).is_none(), "{bad:?}");
            }
            let too_long = format!("{}:1:0:1", "1".repeat(33));
            assert!(parse_uber_trace_id(too_long.as_bytes()).is_none());
        }
    }
}
