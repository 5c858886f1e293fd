//! With the broker unreachable, logging calls stay quick: records fill the
//! bounded queue, the rest are dropped, and one warning says so.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafkaesk::logging::KafkaLayer;
use kafkaesk::Application;
use tracing_subscriber::prelude::*;

const EVENTS: u64 = 50_000;
const CAPACITY: usize = 1_000;

#[test]
fn full_queue_drops_and_warns_without_blocking() {
    // Nothing listens on port 1: every connection attempt is refused.
    let app = Application::builder()
        .kafka_servers(["127.0.0.1:1"])
        .build()
        .unwrap();
    let warnings = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = warnings.clone();
    let layer = KafkaLayer::new(&app, "logging.test")
        .with_queue_capacity(CAPACITY)
        .with_flush_timeout(Duration::from_millis(100))
        .with_warnings_to(move |w| sink.lock().unwrap().push(w.to_owned()));
    let guard = layer.flush_guard();

    let started = Instant::now();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        for i in 0..EVENTS {
            tracing::info!(i, user = "kafkaesk", ok = true, "event {i}");
        }
    });
    let elapsed = started.elapsed();
    println!("{EVENTS} logging calls took {elapsed:?}");
    // A generous bound: a call that waited for the broker (a refused
    // connection, a 30 s request timeout) would blow it many times over.
    assert!(
        elapsed < Duration::from_secs(5),
        "{EVENTS} logging calls took {elapsed:?}"
    );

    let stats = guard.stats();
    assert_eq!(stats.queued + stats.dropped, EVENTS, "{stats:?}");
    // The queue holds CAPACITY and the shipping thread at most one more.
    assert!(stats.dropped >= EVENTS - CAPACITY as u64 - 1, "{stats:?}");
    assert_eq!(stats.shipped, 0, "{stats:?}");
    assert!(!guard.flush(Duration::from_millis(200)));

    let warnings = warnings.lock().unwrap();
    let drops: Vec<&String> = warnings.iter().filter(|w| w.contains("is full")).collect();
    assert_eq!(drops.len(), 1, "one warning per 30 s, got {warnings:#?}");
    assert!(
        drops[0].contains("logging.test") && drops[0].contains(&format!("{CAPACITY} records")),
        "{}",
        drops[0]
    );
}
