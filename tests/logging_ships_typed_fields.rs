//! Events logged through `KafkaLayer` arrive as `PydanticLogModel:1` records
//! with Python's fields, the event's and its spans' fields typed, in order.

use std::error::Error as StdError;
use std::time::Duration;

use kafkaesk::logging::{json, KafkaLayer, LogRecord};
use kafkaesk_tests::{app_builder, read_all, unique_prefix};
use serde_json::Value;
use tracing::Dispatch;
use tracing_subscriber::prelude::*;

const PER_THREAD: u64 = 40;

#[derive(serde::Serialize)]
struct Cart {
    items: Vec<&'static str>,
    total: f64,
}

fn log_events(thread: &str) {
    let span = tracing::info_span!(
        "request",
        request_id = "r-1",
        attempt = 2_u64,
        route = "/outer"
    );
    let _outer = span.enter();
    let inner = tracing::info_span!("handler", route = "/inner");
    let _inner = inner.enter();
    for i in 0..PER_THREAD {
        tracing::info!(
            target: "orders",
            thread,
            i,
            delta = -(i as i64),
            ratio = i as f64 / 4.0,
            even = i % 2 == 0,
            user = "kafkaesk",
            cart = json(&Cart { items: vec!["book", "pen"], total: 12.5 }),
            "event {i}"
        );
    }
}

fn data(values: &[Vec<u8>]) -> Vec<Value> {
    values
        .iter()
        .map(|bytes| {
            let envelope: Value = serde_json::from_slice(bytes).expect("a JSON envelope");
            assert_eq!(envelope["schema"], "PydanticLogModel:1", "{envelope}");
            envelope["data"].clone()
        })
        .collect()
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ`
fn is_iso8601_utc(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 27
        && text.ends_with('Z')
        && bytes.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            10 => *b == b'T',
            13 | 16 => *b == b':',
            19 => *b == b'.',
            26 => *b == b'Z',
            _ => b.is_ascii_digit(),
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arrive_with_typed_fields_in_order() {
    let prefix = unique_prefix("log-typed");
    let app = app_builder(&prefix).build().unwrap();
    let layer = KafkaLayer::new(&app, "logging.test");
    let guard = layer.flush_guard();
    let dispatch = Dispatch::new(tracing_subscriber::registry().with(layer));
    let _default = tracing::dispatcher::set_default(&dispatch);

    // One producer inside the runtime, one on a plain thread outside it.
    log_events("runtime");
    let other = dispatch.clone();
    std::thread::spawn(move || tracing::dispatcher::with_default(&other, || log_events("plain")))
        .join()
        .unwrap();
    let err = std::io::Error::new(std::io::ErrorKind::NotFound, "config.toml is missing");
    tracing::error!(error = &err as &dyn StdError, code = 7, "cannot start");

    assert!(
        guard.flush_async(Duration::from_secs(60)).await,
        "{:?}",
        guard.stats()
    );
    drop(_default);
    let records = data(&read_all(
        &format!("{prefix}logging.test"),
        Duration::from_secs(3),
    ));
    assert_eq!(records.len() as u64, 2 * PER_THREAD + 1, "{records:#?}");

    for thread in ["runtime", "plain"] {
        let mine: Vec<&Value> = records.iter().filter(|r| r["thread"] == thread).collect();
        let order: Vec<u64> = mine.iter().map(|r| r["i"].as_u64().unwrap()).collect();
        assert_eq!(order, (0..PER_THREAD).collect::<Vec<_>>(), "{thread}");
        let times: Vec<&str> = mine
            .iter()
            .map(|r| r["timestamp"].as_str().unwrap())
            .collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    }

    let first = &records[0];
    let i = first["i"].as_u64().unwrap();
    assert_eq!(first["message"], format!("event {i}"));
    assert_eq!(first["logger"], "orders");
    assert_eq!(first["severity"], "INFO");
    assert_eq!(first["level"], 20);
    assert!(
        is_iso8601_utc(first["timestamp"].as_str().unwrap()),
        "{first}"
    );
    assert!(first["delta"].is_i64() && first["delta"].as_i64() == Some(-(i as i64)));
    assert!(first["ratio"].is_f64(), "{first}");
    assert_eq!(first["even"], Value::Bool(matches!(i % 2, 0)));
    assert_eq!(first["user"], "kafkaesk");
    assert_eq!(
        first["cart"],
        serde_json::json!({"items": ["book", "pen"], "total": 12.5})
    );
    // Span fields, the inner span's winning over the outer's.
    assert_eq!(first["request_id"], "r-1");
    assert_eq!(first["attempt"], 2);
    assert_eq!(first["route"], "/inner");
    // Python's fields, present even when empty.
    let hostname = first["hostname"].as_str().unwrap();
    assert!(!hostname.is_empty());
    assert!(first["service"].is_string());
    for key in ["exception", "stack", "trace", "namespace", "cluster"] {
        assert!(first.get(key).is_some(), "no `{key}` in {first}");
    }
    assert_eq!(first["exception"], Value::Null);
    assert_eq!(
        first["cluster"].as_str(),
        std::env::var("CLUSTER").ok().as_deref()
    );

    let failure = records.last().unwrap();
    assert_eq!(failure["message"], "cannot start");
    assert_eq!(failure["severity"], "ERROR");
    assert_eq!(failure["level"], 40);
    assert_eq!(failure["exception"], "std::io::Error");
    assert_eq!(failure["stack"], "config.toml is missing");
    assert_eq!(failure["error"], "config.toml is missing");
    assert_eq!(failure["code"], 7);

    // A typed consumer reads the same records.
    let typed: LogRecord = serde_json::from_value(first.clone()).unwrap();
    assert_eq!(typed.hostname, hostname);
    assert_eq!(typed.fields["user"], "kafkaesk");
    assert_eq!(guard.stats().shipped, 2 * PER_THREAD + 1);
}
