//! A subscription's timeout counts from the handler's start, including work
//! done before its first `.await`, and a handler that computes for long
//! before awaiting does not hold back the consumer's commits.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafkaesk::{Error, Headers, Record, Subscription};
use kafkaesk_tests::{app_builder, committed_total, unique_prefix};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_before_the_first_await_counts_toward_the_timeout() {
    // 300 ms of work before the first await, then 300 ms of waiting: 600 ms
    // in all, past the 400 ms timeout, though the wait alone is within it.
    async fn slow_start(_: Vec<u8>) {
        std::thread::sleep(Duration::from_millis(300));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let sub = Subscription::new("x", slow_start).with_timeout(Duration::from_millis(400));
    let app = kafkaesk::Application::builder().build().unwrap();
    let record = Record::new("x", 0, 0, None, Some(b"1".to_vec()), Headers::new(), None);
    let err = sub.handle_record(&app, record).await.unwrap_err();
    assert!(matches!(err, Error::HandlerTimeout { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_computing_handler_does_not_hold_back_commits() {
    let prefix = unique_prefix("heavy-handler");
    let topic = format!("{prefix}work");
    // Set by the test once it sees the first records committed; the last
    // record computes until then (at most 30 s).
    let committed_meanwhile = Arc::new(AtomicBool::new(false));
    let app = app_builder(&prefix)
        .partitions(1)
        .auto_commit_interval(Duration::from_millis(200))
        .subscribe(
            Subscription::new("work", {
                let committed_meanwhile = committed_meanwhile.clone();
                move |raw: Vec<u8>| {
                    let committed_meanwhile = committed_meanwhile.clone();
                    async move {
                        // Work without awaiting: what a CPU-bound handler does.
                        if raw == b"last" {
                            let until = Instant::now() + Duration::from_secs(30);
                            while !committed_meanwhile.load(Ordering::SeqCst)
                                && Instant::now() < until
                            {
                                std::thread::sleep(Duration::from_millis(20));
                            }
                        } else {
                            std::thread::sleep(Duration::from_millis(300));
                        }
                    }
                }
            })
            .with_name("work")
            .with_group("heavy-work"),
        )
        .build()
        .unwrap();
    for value in ["first", "second", "last"] {
        app.raw_publish("work", value.as_bytes().to_vec())
            .wait()
            .await
            .unwrap();
    }
    let consuming = tokio::spawn({
        let app = app.clone();
        async move { app.consume_for(3, Duration::from_secs(90)).await }
    });
    let watcher = {
        let committed_meanwhile = committed_meanwhile.clone();
        tokio::task::spawn_blocking(move || {
            let until = Instant::now() + Duration::from_secs(30);
            while Instant::now() < until {
                if committed_total("heavy-work", &topic, 1) >= 2 {
                    committed_meanwhile.store(true, Ordering::SeqCst);
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    watcher.await.unwrap();
    assert_eq!(consuming.await.unwrap().unwrap(), 3);
    assert!(
        committed_meanwhile.load(Ordering::SeqCst),
        "the first two records were not committed while the last one computed"
    );
}
