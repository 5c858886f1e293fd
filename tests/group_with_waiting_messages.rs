use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kafkaesk::{Application, Subscription};
use kafkaesk_tests::{app_builder, committed_total, unique_prefix};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Item {
    pub n: u32,
}

impl kafkaesk::Schema for Item {
    const ID: &'static str = "Item";
}

fn counting_app(prefix: &str, count: Arc<AtomicUsize>) -> Application {
    app_builder(prefix)
        .subscribe(
            Subscription::new("items", move |_: Item| {
                let count = count.clone();
                async move {
                    count.fetch_add(1, Ordering::SeqCst);
                }
            })
            .with_group("waiting")
            .with_concurrency(5),
        )
        .build()
        .unwrap()
}

async fn publish(app: &Application, range: std::ops::Range<u32>) {
    for n in range {
        app.publish("items", &Item { n }).await.unwrap();
    }
    app.flush().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_group_reads_messages_published_before_it_joined_and_restart_resumes() {
    let prefix = unique_prefix("waiting");
    let count = Arc::new(AtomicUsize::new(0));
    let app = counting_app(&prefix, count.clone());
    publish(&app, 0..10).await;

    assert_eq!(
        app.consume_for(10, Duration::from_secs(30)).await.unwrap(),
        10
    );
    assert_eq!(count.load(Ordering::SeqCst), 10);
    let topic = format!("{prefix}items");
    assert_eq!(committed_total("waiting", &topic, 7), 10);

    // A second application in the same group sees only what came after.
    publish(&app, 10..15).await;
    let again = Arc::new(AtomicUsize::new(0));
    let restarted = counting_app(&prefix, again.clone());
    assert_eq!(
        restarted
            .consume_for(5, Duration::from_secs(30))
            .await
            .unwrap(),
        5
    );
    // Nothing else is waiting: a further run finds no message.
    assert_eq!(
        restarted
            .consume_for(1, Duration::from_secs(3))
            .await
            .unwrap(),
        0
    );
    assert_eq!(again.load(Ordering::SeqCst), 5);
    assert_eq!(committed_total("waiting", &topic, 7), 15);
}
