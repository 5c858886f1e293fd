//! A trace follows a message: publish → handler → republish → handler is one
//! trace with the right parents, whether the first message carries a W3C
//! `traceparent` (kafkaesk, any OpenTelemetry client) or Jaeger's
//! `uber-trace-id` (Python kafkaesk with opentracing and Jaeger).
//!
//! Its own test binary: the OpenTelemetry layer is the process's global
//! `tracing` subscriber, so the consumers' threads record into it.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use kafkaesk::observe::propagation::{TRACEPARENT, UBER_TRACE_ID};
use kafkaesk::{Application, Record, Subscriber, Subscription};
use kafkaesk_tests::{app_builder, require_broker, unique_prefix};
use opentelemetry::trace::{SpanId, TraceContextExt, TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Parcel {
    pub id: u32,
}

impl kafkaesk::Schema for Parcel {
    const ID: &'static str = "TraceParcel";
}

fn exporter() -> &'static (InMemorySpanExporter, SdkTracerProvider) {
    static TRACING: OnceLock<(InMemorySpanExporter, SdkTracerProvider)> = OnceLock::new();
    TRACING.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("kafkaesk-tests"));
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
            .expect("the only global subscriber of this test binary");
        (exporter, provider)
    })
}

/// What each handler saw: its span's ids, and the record's headers.
#[derive(Default)]
struct Seen {
    received: Vec<(TraceId, SpanId, Record)>,
    shipped: Vec<(TraceId, SpanId, Record)>,
}

fn ids(span: &tracing::Span) -> (TraceId, SpanId) {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    (span_context.trace_id(), span_context.span_id())
}

/// `parcels` republishes to `shipped` through its `Subscriber`; `shipped`
/// only records.
fn pipeline(prefix: &str, seen: Arc<Mutex<Seen>>) -> Application {
    let first = seen.clone();
    let second = seen;
    app_builder(prefix)
        .subscribe(
            Subscription::new(
                "parcels",
                move |parcel: Parcel,
                      record: Record,
                      span: tracing::Span,
                      subscriber: Subscriber| {
                    let seen = first.clone();
                    async move {
                        let (trace, id) = ids(&span);
                        seen.lock().unwrap().received.push((trace, id, record));
                        subscriber.publish("shipped", &parcel).await?.await?;
                        Ok::<(), kafkaesk::Error>(())
                    }
                },
            )
            .with_name("parcels")
            .with_group(format!("{prefix}parcels")),
        )
        .subscribe(
            Subscription::new(
                "shipped",
                move |_: Parcel, record: Record, span: tracing::Span| {
                    let seen = second.clone();
                    async move {
                        let (trace, id) = ids(&span);
                        seen.lock().unwrap().shipped.push((trace, id, record));
                    }
                },
            )
            .with_name("shipped")
            .with_group(format!("{prefix}shipped")),
        )
        .build()
        .unwrap()
}

async fn run_until_shipped(app: &Application, seen: &Arc<Mutex<Seen>>) {
    let run = tokio::spawn({
        let app = app.clone();
        async move { app.run().await }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.lock().unwrap().shipped.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the parcel never reached `shipped`"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.stop();
    run.await.unwrap().unwrap();
}

fn finished_span(spans: &[SpanData], id: SpanId) -> &SpanData {
    spans
        .iter()
        .find(|s| s.span_context.span_id() == id)
        .unwrap_or_else(|| panic!("span {id} was not exported: {spans:#?}"))
}

fn header_text(record: &Record, name: &str) -> String {
    String::from_utf8(record.headers().get(name).unwrap_or_default().to_vec()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traceparent_links_publish_handler_and_republish() {
    require_broker();
    let (exporter, provider) = exporter();
    let prefix = unique_prefix("trace-w3c");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let app = pipeline(&prefix, seen.clone());

    let request = tracing::info_span!("request");
    let (request_trace, request_id) = ids(&request);
    {
        let _inside = request.enter();
        let ack = app.publish("parcels", &Parcel { id: 1 }).await.unwrap();
        ack.await.unwrap();
    }
    drop(request);
    run_until_shipped(&app, &seen).await;
    provider.force_flush().unwrap();

    let seen = seen.lock().unwrap();
    let (trace_1, handler_1, record_1) = &seen.received[0];
    let (trace_2, handler_2, record_2) = &seen.shipped[0];
    assert!(header_text(record_1, TRACEPARENT).contains(&format!("{request_trace}-{request_id}")));
    // The republished message names the first handler's span, not the request's.
    assert!(header_text(record_2, TRACEPARENT).contains(&format!("{trace_1}-{handler_1}")));
    assert_eq!(
        record_2
            .headers()
            .iter()
            .filter(|h| h.key == TRACEPARENT)
            .count(),
        1
    );

    assert_eq!(
        (trace_1, trace_2),
        (&request_trace, &request_trace),
        "one trace"
    );
    let spans = exporter.get_finished_spans().unwrap();
    let first = finished_span(&spans, *handler_1);
    assert_eq!(first.parent_span_id, request_id);
    assert_eq!(first.name, "kafkaesk.consume");
    let second = finished_span(&spans, *handler_2);
    assert_eq!(second.parent_span_id, *handler_1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jaeger_uber_trace_id_from_python_continues_in_rust() {
    require_broker();
    let (exporter, provider) = exporter();
    let prefix = unique_prefix("trace-jaeger");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let app = pipeline(&prefix, seen.clone());

    // As Python kafkaesk with a Jaeger tracer publishes: a 64-bit trace id,
    // no parent, sampled; the envelope is Python's.
    let payload = br#"{"schema": "TraceParcel:1", "data": {"id": 7}}"#.to_vec();
    app.raw_publish("parcels", payload)
        .header(UBER_TRACE_ID, "7b8d3f2a9c1e4d56:1a2b3c4d5e6f7081:0:1")
        .wait()
        .await
        .unwrap();
    run_until_shipped(&app, &seen).await;
    provider.force_flush().unwrap();

    let python_trace = TraceId::from_hex("00000000000000007b8d3f2a9c1e4d56").unwrap();
    let python_span = SpanId::from_hex("1a2b3c4d5e6f7081").unwrap();
    let seen = seen.lock().unwrap();
    let (trace_1, handler_1, _) = &seen.received[0];
    let (trace_2, handler_2, record_2) = &seen.shipped[0];
    assert_eq!(
        (*trace_1, *trace_2),
        (python_trace, python_trace),
        "one trace"
    );
    // The republished message names the handler's span, in W3C's form and
    // in Jaeger's, so a Python consumer with Jaeger continues the trace.
    assert!(header_text(record_2, TRACEPARENT).contains(&format!("{python_trace}-{handler_1}")));
    assert_eq!(
        header_text(record_2, UBER_TRACE_ID),
        format!("{python_trace}:{handler_1}:0:1")
    );
    assert_eq!(
        record_2
            .headers()
            .iter()
            .filter(|h| h.key == UBER_TRACE_ID)
            .count(),
        1
    );

    let spans = exporter.get_finished_spans().unwrap();
    assert_eq!(
        finished_span(&spans, *handler_1).parent_span_id,
        python_span
    );
    assert_eq!(finished_span(&spans, *handler_2).parent_span_id, *handler_1);
}
