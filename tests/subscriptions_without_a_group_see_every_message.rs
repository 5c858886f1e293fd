//! Subscriptions without a consumer group: every application sees every
//! message from its position, reads history then live records, commits
//! nothing, picks up streams created later, and handles failures as group
//! subscriptions do.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafkaesk::subscription::Position;
use kafkaesk::{Application, ErrorPolicy, Subscriber, Subscription};
use kafkaesk_tests::{app_builder, committed_offsets, create_topic, kafka, unique_prefix};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Item {
    pub n: u32,
}

impl kafkaesk::Schema for Item {
    const ID: &'static str = "Item";
}

type Seen = Arc<Mutex<Vec<u32>>>;

fn recording(pattern: &str, seen: &Seen) -> Subscription {
    let seen = seen.clone();
    Subscription::new(pattern, move |item: Item| {
        let seen = seen.clone();
        async move {
            seen.lock().unwrap().push(item.n);
        }
    })
    .with_name("everything")
    .without_group()
}

fn app(prefix: &str, subscription: Subscription) -> Application {
    app_builder(prefix).subscribe(subscription).build().unwrap()
}

/// Publishes `range`, all queued at once, so batches hold several records.
async fn publish(app: &Application, stream: &str, range: std::ops::Range<u32>) {
    let mut deliveries = Vec::new();
    for n in range {
        let delivery = app
            .publish(stream, &Item { n })
            .key(format!("k{}", n % 5).as_str())
            .await
            .unwrap();
        deliveries.push(delivery);
    }
    for delivery in deliveries {
        delivery.await.unwrap();
    }
}

fn sorted(seen: &Seen) -> Vec<u32> {
    let mut all = std::mem::take(&mut *seen.lock().unwrap());
    all.sort_unstable();
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_applications_each_see_every_message_and_commit_nothing() {
    let prefix = unique_prefix("no-group");
    let publisher = app_builder(&prefix).build().unwrap();
    publish(&publisher, "items", 0..10).await;

    let (one, two) = (Seen::default(), Seen::default());
    let first = app(&prefix, recording("items", &one));
    let second = app(&prefix, recording("items", &two));
    let (a, b) = tokio::join!(
        first.consume_for(10, Duration::from_secs(30)),
        second.consume_for(10, Duration::from_secs(30)),
    );
    assert_eq!((a.unwrap(), b.unwrap()), (10, 10));
    assert_eq!(sorted(&one), (0..10).collect::<Vec<_>>());
    assert_eq!(sorted(&two), (0..10).collect::<Vec<_>>());

    // History, then live records.
    let running = first.clone();
    let live = tokio::spawn(async move { running.consume_for(13, Duration::from_secs(30)).await });
    tokio::time::sleep(Duration::from_secs(2)).await;
    publish(&publisher, "items", 10..13).await;
    assert_eq!(live.await.unwrap().unwrap(), 13);
    assert_eq!(sorted(&one), (0..13).collect::<Vec<_>>());

    // Nothing was committed under a group named for the subscription.
    let topic = format!("{prefix}items");
    assert!(committed_offsets("everything", &topic, 7).is_empty());
    let health = first.health_check().await;
    assert_eq!(health.consumers[0].group, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_position_applies_and_new_streams_are_read_from_their_start() {
    let prefix = unique_prefix("no-group-pos");
    let publisher = app_builder(&prefix).build().unwrap();
    publish(&publisher, "feed.a", 0..5).await;

    let seen = Seen::default();
    let latest = app(
        &prefix,
        recording("feed.*", &seen).with_start_at(Position::Latest),
    );
    let running = latest.clone();
    let run = tokio::spawn(async move { running.consume_for(5, Duration::from_secs(40)).await });
    tokio::time::sleep(Duration::from_secs(2)).await;
    publish(&publisher, "feed.a", 100..102).await;
    // A stream created after the start is read from its first record, not
    // from the latest at the time it was found.
    create_topic(&kafka(), &format!("{prefix}feed.b")).await;
    publish(&publisher, "feed.b", 200..203).await;
    assert_eq!(run.await.unwrap().unwrap(), 5);
    assert_eq!(sorted(&seen), vec![100, 101, 200, 201, 202]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_follow_the_error_policy_and_commits_are_refused() {
    let prefix = unique_prefix("no-group-fail");
    let publisher = app_builder(&prefix).build().unwrap();
    publish(&publisher, "items", 0..6).await;

    let attempts = Arc::new(Mutex::new(Vec::<u32>::new()));
    let commit_errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let (tries, errors) = (attempts.clone(), commit_errors.clone());
    let subscription = Subscription::new("items", move |item: Item, subscriber: Subscriber| {
        let (tries, errors) = (tries.clone(), errors.clone());
        async move {
            let first_try = {
                let mut tries = tries.lock().unwrap();
                tries.push(item.n);
                tries.iter().filter(|&&n| n == item.n).count() == 1
            };
            if item.n == 0 {
                let refused = subscriber.commit().await.unwrap_err();
                errors.lock().unwrap().push(refused.to_string());
            }
            if item.n == 3 && first_try {
                return Err(std::io::Error::other("first try fails"));
            }
            Ok(())
        }
    })
    .with_name("items")
    .without_group()
    .on_error(ErrorPolicy::retry(2, Duration::from_millis(50)).then_skip());
    let consumer = app(&prefix, subscription);
    assert_eq!(
        consumer
            .consume_for(6, Duration::from_secs(30))
            .await
            .unwrap(),
        6
    );
    let attempts = attempts.lock().unwrap().clone();
    assert_eq!(
        attempts.iter().filter(|&&n| n == 3).count(),
        2,
        "{attempts:?}"
    );
    let errors = commit_errors.lock().unwrap().clone();
    assert_eq!(errors.len(), 1);
    assert!(errors[0].contains("without a group"), "{errors:?}");
    let stats = consumer.stats();
    assert_eq!(stats["items"].retried, 1, "{stats:?}");
}

#[test]
fn a_group_is_refused_where_it_cannot_work() {
    async fn handler(_: Vec<u8>) {}
    for (subscription, says) in [
        (
            Subscription::new("items", handler)
                .without_group()
                .exactly_once(),
            "needs a consumer group",
        ),
        (
            Subscription::new("items", handler)
                .without_group()
                .replay_from(Position::Earliest),
            "use start_at",
        ),
        (
            Subscription::new("items", handler)
                .without_group()
                .with_group("g"),
            "cannot also name a group",
        ),
    ] {
        let err = kafkaesk::Application::builder()
            .kafka_servers(["127.0.0.1:1"])
            .subscribe(subscription)
            .build()
            .unwrap_err()
            .to_string();
        assert!(err.contains(says), "{err}");
    }
}
