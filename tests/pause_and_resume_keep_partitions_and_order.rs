//! Pausing and resuming a running subscription: from the application and
//! from a handler, all partitions or chosen ones. A paused subscription
//! keeps its partitions, handles nothing of the paused ones, commits what it
//! handled, and resumes in order.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafkaesk::{Application, Error, Subscriber, Subscription};
use kafkaesk_tests::{app_builder, committed_offsets, unique_prefix};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Item {
    pub n: u32,
}

impl kafkaesk::Schema for Item {
    const ID: &'static str = "Item";
}

type Seen = Arc<Mutex<Vec<(i32, u32)>>>;

/// Publishes `range` under `key`; returns the partition they went to.
async fn publish(app: &Application, key: &str, range: std::ops::Range<u32>) -> i32 {
    let mut partition = -1;
    for n in range {
        let delivery = app.publish("items", &Item { n }).key(key).await.unwrap();
        partition = delivery.await.unwrap().partition;
    }
    partition
}

fn seen_on(seen: &Seen, partition: i32) -> Vec<u32> {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|(p, _)| *p == partition)
        .map(|(_, n)| *n)
        .collect()
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited too long for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Keys that land on two different partitions.
async fn two_partitions(app: &Application) -> ((String, i32), (String, i32)) {
    let mut found: Vec<(String, i32)> = Vec::new();
    for i in 0.. {
        let key = format!("probe-{i}");
        let partition = app
            .publish("probe", &Item { n: i })
            .key(key.as_str())
            .await
            .unwrap()
            .await
            .unwrap()
            .partition;
        if found.iter().all(|(_, p)| *p != partition) {
            found.push((key, partition));
        }
        if found.len() == 2 {
            break;
        }
    }
    (found[0].clone(), found[1].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_pauses_its_partition_and_the_application_resumes_it() {
    let prefix = unique_prefix("pause");
    let seen = Seen::default();
    let recorder = seen.clone();
    let subscription = Subscription::new("items", move |item: Item, subscriber: Subscriber| {
        let recorder = recorder.clone();
        async move {
            recorder
                .lock()
                .unwrap()
                .push((subscriber.record().partition(), item.n));
            if item.n == 3 {
                subscriber.pause_partition()?;
            }
            Ok::<_, Error>(())
        }
    })
    .with_name("pausing")
    .with_group("pausing");
    let app = app_builder(&prefix)
        .subscribe(subscription)
        .build()
        .unwrap();
    let ((key_a, a), (key_b, b)) = two_partitions(&app).await;
    assert_eq!(publish(&app, &key_a, 0..10).await, a);
    assert_eq!(publish(&app, &key_b, 100..105).await, b);

    let running = app.clone();
    let run = tokio::spawn(async move { running.consume_for(15, Duration::from_secs(60)).await });
    wait_for("the other partition", || seen_on(&seen, b).len() == 5).await;
    wait_for("the pause", || seen_on(&seen, a).contains(&3)).await;
    // Paused after 3: nothing more of its partition, however long we wait.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(seen_on(&seen, a), vec![0, 1, 2, 3]);
    assert!(app.is_paused("pausing", "items", a).unwrap());
    let health = app.health_check().await;
    let consumer = &health.consumers[0];
    let topic = format!("{prefix}items");
    assert!(
        consumer.assigned.contains(&(topic.clone(), a)),
        "{health:?}"
    );
    assert_eq!(consumer.paused, vec![(topic.clone(), a)]);
    // What was handled is committed while paused.
    let committed = committed_offsets("pausing", &topic, 7);
    assert!(committed.contains(&(a, 4)), "{committed:?}");

    app.resume_partitions("pausing", [("items", a)]).unwrap();
    assert!(!app.is_paused("pausing", "items", a).unwrap());
    assert_eq!(run.await.unwrap().unwrap(), 15);
    // In order, each once: the records fetched before the pause ran first.
    assert_eq!(seen_on(&seen, a), (0..10).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_subscription_handles_nothing_until_resumed_but_the_partitions_resumed() {
    let prefix = unique_prefix("pause-all");
    let seen = Seen::default();
    let recorder = seen.clone();
    let subscription = Subscription::new("items", move |item: Item, subscriber: Subscriber| {
        let recorder = recorder.clone();
        async move {
            recorder
                .lock()
                .unwrap()
                .push((subscriber.record().partition(), item.n));
        }
    })
    .with_name("paused")
    .with_group("paused")
    .with_concurrency(4);
    let app = app_builder(&prefix)
        .subscribe(subscription)
        .build()
        .unwrap();
    let ((key_a, a), (key_b, b)) = two_partitions(&app).await;
    publish(&app, &key_a, 0..5).await;
    publish(&app, &key_b, 100..105).await;

    // Paused before it runs: it joins, gets its partitions, handles nothing.
    app.pause("paused").unwrap();
    let running = app.clone();
    let run = tokio::spawn(async move { running.consume_for(10, Duration::from_secs(60)).await });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let health = app.health_check().await;
        if health
            .consumers
            .first()
            .is_some_and(|c| !c.assigned.is_empty())
        {
            assert_eq!(
                health.consumers[0].paused.len(),
                health.consumers[0].assigned.len()
            );
            break;
        }
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(seen.lock().unwrap().is_empty());

    // One partition resumed: only it goes on.
    app.resume_partitions("paused", [("items", b)]).unwrap();
    wait_for("the resumed partition", || seen_on(&seen, b).len() == 5).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(seen_on(&seen, a).is_empty());
    app.resume("paused").unwrap();
    assert_eq!(run.await.unwrap().unwrap(), 10);
    assert_eq!(seen_on(&seen, a), (0..5).collect::<Vec<_>>());
    assert_eq!(seen_on(&seen, b), (100..105).collect::<Vec<_>>());
}

#[test]
fn an_unknown_subscription_is_named_in_the_error() {
    async fn handler(_: Vec<u8>) {}
    let app = kafkaesk::Application::builder()
        .kafka_servers(["127.0.0.1:1"])
        .subscribe(Subscription::new("items", handler).with_name("known"))
        .build()
        .unwrap();
    let err = app.pause("unknown").unwrap_err();
    assert!(matches!(err, Error::UnknownSubscription { .. }));
    assert!(err.to_string().contains("has: known"), "{err}");
}
