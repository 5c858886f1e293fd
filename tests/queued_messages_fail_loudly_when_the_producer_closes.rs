//! A message still queued when its application is dropped is reported as a
//! failure: the awaited handle gets an error instead of hanging, and a
//! fire-and-forget publish is logged. Nothing disappears silently.

use std::time::Duration;

use kafkaesk::Error;
use kafkaesk_tests::{app_builder, captured_warnings, unique_prefix};

#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct Parcel {
    pub id: i64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_messages_fail_loudly_when_the_producer_closes() {
    let warnings = captured_warnings();
    let prefix = unique_prefix("closing");
    // A long linger keeps the messages in librdkafka's queue until the drop.
    let app = app_builder(&prefix)
        .kafka_settings([("linger.ms", "60000")])
        .build()
        .unwrap();
    let awaited = app.publish("parcels", &Parcel { id: 1 }).await.unwrap();
    let unawaited = app.publish("parcels", &Parcel { id: 2 }).await.unwrap();
    drop(unawaited);

    // Dropping the producer purges its queue and flushes; that blocks.
    tokio::task::spawn_blocking(move || drop(app))
        .await
        .unwrap();

    let result = tokio::time::timeout(Duration::from_secs(10), awaited)
        .await
        .expect("the handle resolves once the producer is gone");
    match result {
        Err(Error::Delivery { topic, .. }) => assert_eq!(topic, format!("{prefix}parcels")),
        other => panic!("expected a delivery error, got {other:?}"),
    }

    let topic = format!("{prefix}parcels");
    let logged = warnings
        .lock()
        .unwrap()
        .iter()
        .filter(|line| line.contains("unawaited publish failed") && line.contains(&topic))
        .count();
    assert_eq!(logged, 1, "the unawaited failure is logged once");
}
