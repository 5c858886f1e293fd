//! A stop that comes while `run` is still initializing ends that run: it is
//! not lost. A stop while nothing runs is not kept for a later run.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kafkaesk::Subscription;
use kafkaesk_tests::{app_builder, unique_prefix};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_while_initializing_ends_the_run_before_any_consumer_starts() {
    let prefix = unique_prefix("stop-startup");
    let handled = Arc::new(AtomicUsize::new(0));
    let initializing = Arc::new(tokio::sync::Notify::new());
    let app = app_builder(&prefix)
        .subscribe(
            Subscription::new("ticks", {
                let handled = handled.clone();
                move |_: Vec<u8>| {
                    handled.fetch_add(1, Ordering::SeqCst);
                    async {}
                }
            })
            .with_name("ticks"),
        )
        .on_initialize({
            let initializing = initializing.clone();
            move |_| {
                let initializing = initializing.clone();
                async move {
                    initializing.notify_one();
                    // Still initializing when the stop comes.
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    Ok(())
                }
            }
        })
        .build()
        .unwrap();
    app.raw_publish("ticks", b"1".to_vec())
        .wait()
        .await
        .unwrap();

    let run = tokio::spawn({
        let app = app.clone();
        async move { app.run().await }
    });
    initializing.notified().await;
    app.stop();
    let ended = tokio::time::timeout(Duration::from_secs(30), run).await;
    let result = ended.expect("the run ignored the stop it got while initializing");
    result.unwrap().unwrap();
    assert_eq!(handled.load(Ordering::SeqCst), 0);
    assert!(
        app.health_check().await.consumers.is_empty(),
        "no consumer started"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_while_nothing_runs_does_not_end_the_next_run() {
    let prefix = unique_prefix("stop-idle");
    let app = app_builder(&prefix)
        .subscribe(Subscription::new("ticks", |_: Vec<u8>| async {}).with_name("idle-ticks"))
        .build()
        .unwrap();
    app.raw_publish("ticks", b"1".to_vec())
        .wait()
        .await
        .unwrap();
    app.stop();
    let consumed = app.consume_for(1, Duration::from_secs(30)).await.unwrap();
    assert_eq!(consumed, 1);
}
