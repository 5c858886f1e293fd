//! Finalizing the application, or dropping the flush guard, delivers every
//! record queued before it.

use std::time::Duration;

use kafkaesk::logging::KafkaLayer;
use kafkaesk::Application;
use kafkaesk_tests::{app_builder, read_all, require_broker, unique_prefix};
use serde_json::Value;
use tracing::Dispatch;
use tracing_subscriber::prelude::*;

use crate::logging_resumes_when_broker_returns::{forward, refused_port};

const EVENTS: u64 = 2_000;

fn shipped_indexes(topic: &str) -> Vec<u64> {
    read_all(topic, Duration::from_secs(3))
        .iter()
        .map(|bytes| {
            let envelope: Value = serde_json::from_slice(bytes).unwrap();
            envelope["data"]["i"].as_u64().unwrap()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalize_delivers_everything_queued() {
    let broker = require_broker();
    // The broker answers only once finalize is about to run, so records are
    // still in the layer's queue, out of reach of the producer's own flush.
    let port = refused_port();
    let prefix = unique_prefix("log-finalize");
    let app = Application::builder()
        .kafka_servers([format!("127.0.0.1:{port}")])
        .topic_prefix(&prefix)
        .build()
        .unwrap();
    let layer = KafkaLayer::new(&app, "logging.test")
        .with_flush_timeout(Duration::from_secs(90))
        .with_warnings_to(|_| {});
    let stats = layer.flush_guard();
    let dispatch = Dispatch::new(tracing_subscriber::registry().with(layer));
    let _default = tracing::dispatcher::set_default(&dispatch);

    for i in 0..EVENTS {
        tracing::info!(i, "queued before finalize");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = stats.stats();
    assert_eq!(
        (before.queued, before.pending()),
        (EVENTS, EVENTS),
        "{before:?}"
    );

    forward(port, broker);
    app.finalize().await.unwrap();
    drop(_default);

    // Finalize waited: nothing is left, before any guard flushes.
    let after = stats.stats();
    assert_eq!(after.shipped, EVENTS, "{after:?}");
    assert_eq!(after.pending(), 0, "{after:?}");
    assert_eq!(
        shipped_indexes(&format!("{prefix}logging.test")),
        (0..EVENTS).collect::<Vec<_>>()
    );
}

#[test]
fn dropping_the_guard_delivers_everything_queued() {
    let prefix = unique_prefix("log-guard");
    let app = app_builder(&prefix).build().unwrap();
    let layer = KafkaLayer::new(&app, "logging.test").with_flush_timeout(Duration::from_secs(60));
    let guard = layer.flush_guard();
    // No tokio runtime on this thread: the layer brings its own.
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        for i in 0..500 {
            tracing::info!(i, "queued before the guard is dropped");
        }
    });
    drop(guard);
    assert_eq!(
        shipped_indexes(&format!("{prefix}logging.test")),
        (0..500).collect::<Vec<_>>()
    );
}
