use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafkaesk::{Error, Subscription};
use kafkaesk_tests::{app_builder, committed_total, unique_prefix};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Work {
    pub slow: bool,
}

impl kafkaesk::Schema for Work {
    const ID: &'static str = "Work";
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_run_concurrently_and_slow_ones_are_cancelled() {
    let prefix = unique_prefix("timeout");
    let finished = Arc::new(AtomicUsize::new(0));
    let done = finished.clone();
    let app = app_builder(&prefix)
        .partitions(1)
        .subscribe(
            Subscription::new("work", move |work: Work| {
                let done = done.clone();
                async move {
                    let pause = if work.slow { 30_000 } else { 500 };
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                    done.fetch_add(1, Ordering::SeqCst);
                }
            })
            .with_name("work")
            .with_group("timeout")
            .with_concurrency(10)
            .with_timeout(Duration::from_secs(2)),
        )
        .build()
        .unwrap();
    for i in 0..10 {
        app.publish("work", &Work { slow: i == 9 }).await.unwrap();
    }
    app.flush().await.unwrap();

    let started = Instant::now();
    let err = app
        .consume_for(10, Duration::from_secs(60))
        .await
        .expect_err("the slow handler times out");
    assert!(
        matches!(err, Error::HandlerTimeout { timeout, .. } if timeout == Duration::from_secs(2)),
        "{err:?}"
    );
    // Ten half-second handlers in sequence would take five seconds; together, well under.
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(finished.load(Ordering::SeqCst), 9);
    // The batch with the timed-out record is not committed.
    let committed = committed_total("timeout", &format!("{prefix}work"), 1);
    assert!(committed < 10, "committed {committed}");
}
