//! A handler that never returns, with no `timeout`, holds its partition
//! forever while the process looks busy. With a `stall_timeout` the
//! partition is reported: `/health` turns 503 within the stall timeout and
//! a look (once a second), `/live` stays 200, the
//! `kafkaesk_consumer_oldest_unfinished_seconds` gauge shows the wait, and
//! the stuck record's offset is in the body. With `cancel_stalled`, the
//! handler is cancelled at the stall timeout and its record goes through
//! the error policy, so the records behind it are handled and committed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafkaesk::worker::{ConnectionOptions, WorkerOptions};
use kafkaesk::{Application, ErrorPolicy, Subscription};
use kafkaesk_tests::{
    app_builder, committed_total, free_port, http_get, require_broker, unique_prefix,
};

const STALL_TIMEOUT: Duration = Duration::from_secs(3);

/// The value of `name` for the series whose labels include `label`.
fn sample(text: &str, name: &str, label: &str) -> Option<f64> {
    text.lines()
        .filter(|line| line.starts_with(&format!("{name}{{")) && line.contains(label))
        .find_map(|line| line.rsplit(' ').next()?.parse().ok())
}

/// An application whose handler never returns on `hang`, and counts the
/// other records; `hanging_since` is set when the handler starts to hang.
fn hanging_app(
    prefix: &str,
    group: &str,
    handled: Arc<AtomicU64>,
    hanging_since: Arc<Mutex<Option<Instant>>>,
    configure: impl FnOnce(Subscription) -> Subscription,
) -> Application {
    let subscription = Subscription::new("jobs", move |raw: Vec<u8>| {
        let handled = handled.clone();
        let hanging_since = hanging_since.clone();
        async move {
            if raw == b"hang" {
                hanging_since
                    .lock()
                    .unwrap()
                    .get_or_insert_with(Instant::now);
                std::future::pending::<()>().await;
            }
            handled.fetch_add(1, Ordering::SeqCst);
            Ok::<(), std::io::Error>(())
        }
    })
    .with_name("jobs")
    .with_group(group)
    .with_stall_timeout(STALL_TIMEOUT);
    app_builder(prefix)
        .partitions(1)
        .shutdown_timeout(Duration::from_secs(1))
        .subscribe(configure(subscription))
        .build()
        .unwrap()
}

async fn publish(app: &Application, values: &[&str]) {
    app.initialize().await.unwrap();
    for value in values {
        app.raw_publish("jobs", value.as_bytes().to_vec())
            .wait()
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_never_returns_turns_health_to_503() {
    let prefix = unique_prefix("stuck-handler");
    let group = format!("{prefix}group");
    let topic = format!("{prefix}jobs");
    let handled = Arc::new(AtomicU64::new(0));
    let hanging_since = Arc::new(Mutex::new(None));
    let app = hanging_app(
        &prefix,
        &group,
        handled.clone(),
        hanging_since.clone(),
        |s| s,
    );
    publish(&app, &["first", "hang", "behind"]).await;

    let addr = format!("127.0.0.1:{}", free_port());
    let options = WorkerOptions {
        connection: ConnectionOptions {
            kafka_servers: vec![require_broker()],
            topic_prefix: Some(prefix.clone()),
            ..ConnectionOptions::default()
        },
        metrics_addr: Some(addr.clone()),
        ..WorkerOptions::default()
    };
    let worker = tokio::spawn({
        let app = app.clone();
        async move { kafkaesk::worker::run(app, &options).await }
    });

    // The handler starts to hang once the first record is handled.
    let deadline = Instant::now() + Duration::from_secs(60);
    let since = loop {
        if let Some(since) = *hanging_since.lock().unwrap() {
            break since;
        }
        assert!(Instant::now() < deadline, "the handler never got `hang`");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let limit = since + STALL_TIMEOUT + Duration::from_secs(5);
    let body = loop {
        if let Ok((503, body)) =
            tokio::time::timeout(Duration::from_secs(2), http_get(&addr, "/health")).await
        {
            break body;
        }
        assert!(
            Instant::now() < limit,
            "/health did not turn 503 within the stall timeout + 5 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let unhealthy_after = since.elapsed();
    eprintln!("unhealthy {unhealthy_after:?} after the handler began to hang");
    assert!(
        unhealthy_after >= STALL_TIMEOUT - Duration::from_millis(100),
        "reported before the stall timeout: {unhealthy_after:?}"
    );
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    let stuck = &health["consumers"][0]["stuck"][0];
    assert_eq!(stuck["topic"], topic.as_str(), "{health}");
    assert_eq!(stuck["partition"], 0);
    assert_eq!(stuck["offset"], 1, "the record the handler hangs on");
    assert!(stuck["seconds"].as_u64().unwrap() >= STALL_TIMEOUT.as_secs() - 1);
    assert_eq!(health["consumers"][0]["running"], true);
    let (live, _) = http_get(&addr, "/live").await;
    assert_eq!(live, 200, "a stuck consumer is still live");

    let (_, metrics) = http_get(&addr, "/metrics").await;
    let waited = sample(
        &metrics,
        "kafkaesk_consumer_oldest_unfinished_seconds",
        &format!("stream_id=\"{topic}\""),
    )
    .unwrap_or_else(|| panic!("no oldest-unfinished gauge: {metrics}"));
    assert!(
        waited >= STALL_TIMEOUT.as_secs_f64() - 1.0,
        "the gauge shows {waited} s"
    );
    assert!(
        metrics.contains(&format!(
            "kafkaesk_consumer_health{{group_id=\"{group}\"}} 0"
        )),
        "{metrics}"
    );
    // Nothing behind the stuck record ran, and nothing from it on is
    // committed (the record before it settles with its batch, so it may
    // not be either).
    assert_eq!(handled.load(Ordering::SeqCst), 1);
    assert!(committed_total(&group, &topic, 1) <= 1);

    // A stop cancels the hung handler after the shutdown timeout.
    app.stop();
    tokio::time::timeout(Duration::from_secs(30), worker)
        .await
        .expect("the worker stops though its handler hangs")
        .unwrap()
        .unwrap();
    assert!(
        committed_total(&group, &topic, 1) <= 1,
        "the stuck record comes back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stalled_sends_the_stuck_record_through_the_error_policy() {
    let prefix = unique_prefix("stuck-cancelled");
    let group = format!("{prefix}group");
    let topic = format!("{prefix}jobs");
    let handled = Arc::new(AtomicU64::new(0));
    let hanging_since = Arc::new(Mutex::new(None));
    let app = hanging_app(
        &prefix,
        &group,
        handled.clone(),
        hanging_since.clone(),
        |s| s.cancel_stalled().on_error(ErrorPolicy::skip()),
    );
    publish(&app, &["first", "hang", "behind-1", "behind-2"]).await;
    let run = tokio::spawn({
        let app = app.clone();
        async move { app.run().await }
    });

    // Cancelled at the stall timeout, skipped, and the rest handled; the
    // next look (a second later at most) finds nothing waiting.
    let oldest = |metrics: &str| {
        sample(
            metrics,
            "kafkaesk_consumer_oldest_unfinished_seconds",
            &format!("stream_id=\"{topic}\""),
        )
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let health = app.health_check().await;
        let stats = app.stats();
        let done = handled.load(Ordering::SeqCst) == 3
            && stats.get("jobs").is_some_and(|s| s.skipped == 1)
            && committed_total(&group, &topic, 1) == 4
            && oldest(&app.metrics().encode()) == Some(0.0);
        if done && health.is_healthy() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "handled {}, {:?}, {health:?}",
            handled.load(Ordering::SeqCst),
            app.stats()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let since = hanging_since
        .lock()
        .unwrap()
        .expect("the handler got `hang`");
    assert!(since.elapsed() >= STALL_TIMEOUT);
    app.stop();
    run.await.unwrap().unwrap();
}
