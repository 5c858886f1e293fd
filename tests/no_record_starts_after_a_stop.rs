//! Once a run is asked to stop, no record starts: only the handlers already
//! running finish, and what they handled is committed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kafkaesk::{Application, Subscription};
use kafkaesk_tests::{app_builder, committed_total, unique_prefix};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grace_period_finishes_in_flight_handlers_and_starts_nothing() {
    let prefix = unique_prefix("stop-grace");
    let started = Arc::new(AtomicUsize::new(0));
    let first_started = Arc::new(tokio::sync::Notify::new());
    let app = app_builder(&prefix)
        .partitions(1)
        .shutdown_timeout(Duration::from_secs(5))
        .subscribe(
            Subscription::new("slow", {
                let started = started.clone();
                let first_started = first_started.clone();
                move |_: Vec<u8>| {
                    started.fetch_add(1, Ordering::SeqCst);
                    first_started.notify_one();
                    tokio::time::sleep(Duration::from_millis(300))
                }
            })
            .with_name("slow")
            .with_group("slow-grace"),
        )
        .build()
        .unwrap();
    for i in 0..20 {
        app.raw_publish("slow", format!("{i}").into_bytes())
            .wait()
            .await
            .unwrap();
    }
    let consuming = tokio::spawn({
        let app = app.clone();
        async move { app.consume_forever().await }
    });
    first_started.notified().await;
    app.stop();
    tokio::time::timeout(Duration::from_secs(30), consuming)
        .await
        .expect("the consumer stopped")
        .unwrap()
        .unwrap();
    // The grace period (5 s) would have room for 16 more 300 ms handlers.
    assert_eq!(
        started.load(Ordering::SeqCst),
        1,
        "records started after the stop"
    );
    assert_eq!(
        committed_total("slow-grace", &format!("{prefix}slow"), 1),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_handlers_after_the_stop_do_not_start() {
    let prefix = unique_prefix("stop-quick");
    let started = Arc::new(AtomicUsize::new(0));
    let app = app_builder(&prefix)
        .partitions(1)
        .subscribe(
            Subscription::new("quick", {
                let started = started.clone();
                // Handlers that finish at once run back to back in one batch;
                // the fifth asks the application to stop.
                move |_: Vec<u8>, app: Application| {
                    if started.fetch_add(1, Ordering::SeqCst) + 1 == 5 {
                        app.stop();
                    }
                    async {}
                }
            })
            .with_name("quick")
            .with_group("quick-stop"),
        )
        .build()
        .unwrap();
    let mut acks = Vec::new();
    for i in 0..30 {
        acks.push(
            app.raw_publish("quick", format!("{i}").into_bytes())
                .await
                .unwrap(),
        );
    }
    for ack in acks {
        ack.await.unwrap();
    }
    tokio::time::timeout(Duration::from_secs(60), app.consume_forever())
        .await
        .expect("the consumer stopped")
        .unwrap();
    assert_eq!(
        started.load(Ordering::SeqCst),
        5,
        "records started after the stop"
    );
    assert_eq!(
        committed_total("quick-stop", &format!("{prefix}quick"), 1),
        5
    );
}
