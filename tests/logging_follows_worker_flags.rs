//! A log layer made from an application ships with the settings the worker's
//! flags give that application, not with those it was built with.

use std::time::Duration;

use kafkaesk::logging::KafkaLayer;
use kafkaesk::worker::{ConnectionOptions, WorkerOptions};
use kafkaesk::Application;
use kafkaesk_tests::{read_all, require_broker, unique_prefix};
use tracing::Dispatch;
use tracing_subscriber::prelude::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_logs_use_the_servers_and_prefix_of_the_flags() {
    let broker = require_broker();
    let prefix = unique_prefix("log-flags");
    // Built without servers and with another prefix: only the flags say
    // where the logs go.
    let app = Application::builder()
        .topic_prefix("built-with.")
        .build()
        .unwrap();
    let layer = KafkaLayer::new(&app, "logs").with_warnings_to(|_| {});
    let dispatch = Dispatch::new(tracing_subscriber::registry().with(layer));
    let _default = tracing::dispatcher::set_default(&dispatch);

    let options = WorkerOptions {
        connection: ConnectionOptions {
            kafka_servers: vec![broker],
            topic_prefix: Some(prefix.clone()),
            ..ConnectionOptions::default()
        },
        ..WorkerOptions::default()
    };
    let worker = tokio::spawn({
        let app = app.clone();
        async move { kafkaesk::worker::run(app, &options).await }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while app.settings().topic_prefix != prefix {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the flags were not applied"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let marker = prefix.trim_end_matches('.').to_owned();
    tracing::info!(marker = %marker, "shipped where the flags say");
    // Let the worker's run start before stopping it, so finalize flushes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    app.stop();
    tokio::time::timeout(Duration::from_secs(60), worker)
        .await
        .expect("the worker stopped")
        .unwrap()
        .unwrap();
    drop(_default);

    let shipped: Vec<serde_json::Value> =
        read_all(&format!("{prefix}logs"), Duration::from_secs(3))
            .iter()
            .map(|bytes| serde_json::from_slice(bytes).unwrap())
            .collect();
    assert!(
        shipped
            .iter()
            .any(|record| record["data"]["marker"] == marker.as_str()),
        "the event was not shipped to {prefix}logs: {shipped:?}"
    );
}
