use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kafkaesk::{Application, Error, Subscriber, Subscription};
use kafkaesk_tests::{app_builder, committed_offsets, committed_total, unique_prefix};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Tick {
    pub n: u32,
}

impl kafkaesk::Schema for Tick {
    const ID: &'static str = "Tick";
}

#[tokio::test]
async fn application_without_servers_is_not_configured() {
    let app = Application::builder()
        .subscribe(Subscription::new("x", |_: Tick| async {}))
        .build()
        .unwrap();
    let err = app.publish_and_wait("x", &Tick { n: 1 }).await.unwrap_err();
    assert!(matches!(err, Error::AppNotConfigured(_)), "{err}");
    assert!(err.to_string().contains("kafka_servers"), "{err}");
    let err = app
        .consume_for(1, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AppNotConfigured(_)), "{err}");
    assert!(!app.health_check().await.producer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_reports_health_and_stops_cleanly_with_commits() {
    let prefix = unique_prefix("lifecycle");
    let handled = Arc::new(AtomicUsize::new(0));
    let count = handled.clone();
    let initialized = Arc::new(AtomicUsize::new(0));
    let finalized = Arc::new(AtomicUsize::new(0));
    let (i, f) = (initialized.clone(), finalized.clone());
    let app = app_builder(&prefix)
        .subscribe(
            Subscription::new("ticks", move |_: Tick| {
                let count = count.clone();
                async move {
                    count.fetch_add(1, Ordering::SeqCst);
                }
            })
            .with_name("ticks")
            .with_group("lifecycle"),
        )
        .on_initialize(move |_| {
            let i = i.clone();
            async move {
                i.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        })
        .on_finalize(move |_| {
            let f = f.clone();
            async move {
                f.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        })
        .build()
        .unwrap();
    assert!(!app.health_check().await.is_healthy(), "not started yet");

    let running = tokio::spawn({
        let app = app.clone();
        async move { app.run().await }
    });
    for n in 0..5 {
        app.publish("ticks", &Tick { n }).await.unwrap();
    }
    app.flush().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while handled.load(Ordering::SeqCst) < 5 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "messages not handled"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let health = app.health_check().await;
    assert!(health.is_healthy(), "{health:?}");
    assert_eq!(health.consumers.len(), 1);
    assert!(!health.consumers[0].assigned.is_empty(), "{health:?}");

    let stopped_at = std::time::Instant::now();
    app.stop();
    running.await.unwrap().unwrap();
    assert!(stopped_at.elapsed() < Duration::from_secs(10));
    assert_eq!(initialized.load(Ordering::SeqCst), 1);
    assert_eq!(finalized.load(Ordering::SeqCst), 1);
    assert!(!app.health_check().await.consumers[0].running);
    // The shutdown commit covers everything handled.
    assert_eq!(
        committed_total("lifecycle", &format!("{prefix}ticks"), 7),
        5
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_auto_commit_only_what_the_handler_commits_is_committed() {
    let prefix = unique_prefix("manual");
    let app = app_builder(&prefix)
        .auto_commit(false)
        .partitions(1)
        .subscribe(
            Subscription::new("manual", |tick: Tick, subscriber: Subscriber| async move {
                if tick.n < 3 {
                    subscriber.commit().await?;
                }
                Ok::<_, Error>(())
            })
            .with_group("manual"),
        )
        .build()
        .unwrap();
    for n in 0..5 {
        app.publish("manual", &Tick { n }).await.unwrap();
    }
    app.flush().await.unwrap();
    assert_eq!(
        app.consume_for(5, Duration::from_secs(30)).await.unwrap(),
        5
    );
    assert_eq!(
        committed_offsets("manual", &format!("{prefix}manual"), 1),
        vec![(0, 3)]
    );
    assert_eq!(committed_total("manual", &format!("{prefix}manual"), 1), 3);
}
