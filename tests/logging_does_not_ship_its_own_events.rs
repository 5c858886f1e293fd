//! What kafkaesk and librdkafka log while logs are shipped is not shipped
//! again: no loop, no amplification. The console still sees it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafkaesk::logging::KafkaLayer;
use kafkaesk_tests::{app_builder, read_all, unique_prefix};
use serde_json::Value;
use tracing::{Dispatch, Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

/// Stands in for the console: every event, with the thread it came from.
#[derive(Clone, Default)]
struct Console(Arc<Mutex<Vec<(String, String)>>>);

impl<S: Subscriber> Layer<S> for Console {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let thread = std::thread::current().name().unwrap_or("").to_owned();
        self.0
            .lock()
            .unwrap()
            .push((event.metadata().target().to_owned(), thread));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_events_are_not_shipped() {
    let prefix = unique_prefix("log-self");
    let app = app_builder(&prefix).build().unwrap();
    // Every level: kafkaesk's debug events while creating the topic included.
    let layer = KafkaLayer::new(&app, "logging.test").with_max_level(tracing::Level::TRACE);
    let guard = layer.flush_guard();
    let console = Console::default();
    let dispatch = Dispatch::new(
        tracing_subscriber::registry()
            .with(console.clone())
            .with(layer),
    );
    let _default = tracing::dispatcher::set_default(&dispatch);

    for i in 0..5 {
        tracing::info!(i, "application event");
    }
    // What librdkafka's log callback and rdkafka's own code emit.
    tracing::warn!(target: "librdkafka", "librdkafka: FAIL [thrd:127.0.0.1:9092]: connection refused");
    tracing::debug!(target: "rdkafka::producer::base_producer", "polling");

    assert!(
        guard.flush_async(Duration::from_secs(60)).await,
        "{:?}",
        guard.stats()
    );
    // The reader below polls on this thread; only what was logged above counts.
    drop(_default);
    let shipped: Vec<Value> = read_all(&format!("{prefix}logging.test"), Duration::from_secs(3))
        .iter()
        .map(|bytes| serde_json::from_slice::<Value>(bytes).unwrap()["data"].clone())
        .collect();
    let messages: Vec<&str> = shipped
        .iter()
        .map(|r| r["message"].as_str().unwrap())
        .collect();
    assert_eq!(messages, ["application event"; 5], "{shipped:#?}");
    assert!(shipped.iter().all(|r| r["logger"]
        .as_str()
        .is_some_and(|l| !l.starts_with("kafkaesk") && !l.contains("rdkafka"))));

    // The shipping thread did emit events of its own, and the console got them.
    let console = console.0.lock().unwrap();
    let from_shipping: Vec<&(String, String)> = console
        .iter()
        .filter(|(target, thread)| target.starts_with("kafkaesk") && thread == "kafkaesk-logging")
        .collect();
    assert!(
        !from_shipping.is_empty(),
        "kafkaesk logged nothing while shipping; the test proves nothing: {console:?}"
    );
    assert_eq!(guard.stats().shipped, 5);
}
