//! Where subscriptions start: `start_at` for a group with nothing committed,
//! commits winning over it afterwards, `replay_from` over the commits once,
//! and chosen partitions.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use kafkaesk::subscription::Position;
use kafkaesk::{Application, Subscription};
use kafkaesk_tests::{app_builder, committed_offsets, unique_prefix};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Item {
    pub n: u32,
}

impl kafkaesk::Schema for Item {
    const ID: &'static str = "Item";
}

type Seen = Arc<Mutex<Vec<u32>>>;

fn recording(seen: &Seen, group: &str) -> Subscription {
    let seen = seen.clone();
    Subscription::new("items", move |item: Item| {
        let seen = seen.clone();
        async move {
            seen.lock().unwrap().push(item.n);
        }
    })
    .with_name("record")
    .with_group(group)
}

fn app(prefix: &str, subscription: Subscription) -> Application {
    app_builder(prefix).subscribe(subscription).build().unwrap()
}

/// Publishes `range`, all with one key so they share a partition and their
/// offsets are 0, 1, 2... in order. Returns that partition.
async fn publish(app: &Application, range: std::ops::Range<u32>) -> i32 {
    let mut partition = -1;
    for n in range {
        let delivery = app.publish("items", &Item { n }).key("one").await.unwrap();
        partition = delivery.await.unwrap().partition;
    }
    partition
}

/// Runs `app` until `wanted` records are handled, or for `at_most`, in the
/// background; returns when its partitions are assigned.
async fn run_until(
    app: &Application,
    wanted: usize,
    at_most: Duration,
) -> tokio::task::JoinHandle<usize> {
    let running = app.clone();
    let run = tokio::spawn(async move { running.consume_for(wanted, at_most).await.unwrap() });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let health = app.health_check().await;
        if health.consumers.iter().any(|c| !c.assigned.is_empty()) {
            return run;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never assigned: {health:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn committed_at(group: &str, topic: &str, partition: i32) -> Option<i64> {
    committed_offsets(group, topic, 7)
        .into_iter()
        .find_map(|(p, offset)| (p == partition).then_some(offset))
}

fn taken(seen: &Seen) -> Vec<u32> {
    std::mem::take(&mut *seen.lock().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_group_starts_at_its_position_and_then_follows_its_commits() {
    let prefix = unique_prefix("start-at");
    let seen = Seen::default();
    let publisher = app_builder(&prefix).build().unwrap();
    let partition = publish(&publisher, 0..10).await;
    let topic = format!("{prefix}items");

    // Latest: nothing of the ten, then what comes next.
    let latest = app(
        &prefix,
        recording(&seen, "latest").with_start_at(Position::Latest),
    );
    let run = run_until(&latest, 3, Duration::from_secs(30)).await;
    // The placement is committed at once, in every partition (the empty ones
    // at 0): the group holds it already.
    assert_eq!(committed_at("latest", &topic, partition), Some(10));
    assert_eq!(committed_offsets("latest", &topic, 7).len(), 7);
    publish(&publisher, 10..13).await;
    assert_eq!(run.await.unwrap(), 3);
    assert_eq!(taken(&seen), vec![10, 11, 12]);

    // Now the group has commits, and they win over the position: a restart
    // gets what was published while it was away, not only what comes next.
    publish(&publisher, 13..15).await;
    let restarted = app(
        &prefix,
        recording(&seen, "latest").with_start_at(Position::Latest),
    );
    assert_eq!(
        restarted
            .consume_for(2, Duration::from_secs(30))
            .await
            .unwrap(),
        2
    );
    assert_eq!(taken(&seen), vec![13, 14]);

    // An offset, in every partition.
    let at_offset = app(
        &prefix,
        recording(&seen, "offset").with_start_at(Position::Offset(12)),
    );
    assert_eq!(
        at_offset
            .consume_for(3, Duration::from_secs(30))
            .await
            .unwrap(),
        3
    );
    assert_eq!(taken(&seen), vec![12, 13, 14]);

    // An offset past the end is the end, not a reset to the earliest.
    let past_end = app(
        &prefix,
        recording(&seen, "past-end").with_start_at(Position::Offset(1_000)),
    );
    let run = run_until(&past_end, 1, Duration::from_secs(30)).await;
    publish(&publisher, 15..16).await;
    assert_eq!(run.await.unwrap(), 1);
    assert_eq!(taken(&seen), vec![15]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn positions_by_time_use_the_brokers_lookup() {
    let prefix = unique_prefix("start-time");
    let seen = Seen::default();
    let publisher = app_builder(&prefix).build().unwrap();
    publish(&publisher, 0..5).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let between = SystemTime::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    publish(&publisher, 5..8).await;

    let at_time = app(
        &prefix,
        recording(&seen, "time").with_start_at(Position::Timestamp(between)),
    );
    assert_eq!(
        at_time
            .consume_for(3, Duration::from_secs(30))
            .await
            .unwrap(),
        3
    );
    // Nothing before the time comes after either.
    assert_eq!(
        at_time
            .consume_for(1, Duration::from_secs(2))
            .await
            .unwrap(),
        0
    );
    assert_eq!(taken(&seen), vec![5, 6, 7]);

    let ago = SystemTime::now().duration_since(between).unwrap();
    let since = app(
        &prefix,
        recording(&seen, "since").with_start_at(Position::Since(ago)),
    );
    assert_eq!(
        since.consume_for(3, Duration::from_secs(30)).await.unwrap(),
        3
    );
    assert_eq!(taken(&seen), vec![5, 6, 7]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_passes_over_the_commits_once_per_application() {
    let prefix = unique_prefix("replay");
    let seen = Seen::default();
    let publisher = app_builder(&prefix).build().unwrap();
    let partition = publish(&publisher, 0..6).await;
    let topic = format!("{prefix}items");

    let first = app(&prefix, recording(&seen, "replayed"));
    assert_eq!(
        first.consume_for(6, Duration::from_secs(30)).await.unwrap(),
        6
    );
    assert_eq!(committed_at("replayed", &topic, partition), Some(6));
    taken(&seen);

    let replaying = app(
        &prefix,
        recording(&seen, "replayed").replay_from(Position::Offset(2)),
    );
    assert_eq!(
        replaying
            .consume_for(4, Duration::from_secs(30))
            .await
            .unwrap(),
        4
    );
    assert_eq!(taken(&seen), vec![2, 3, 4, 5]);
    // Once: the same application's next run, with its consumer made anew
    // and its partition assigned again, goes on from the commits.
    publish(&publisher, 6..7).await;
    assert_eq!(
        replaying
            .consume_for(2, Duration::from_secs(5))
            .await
            .unwrap(),
        1
    );
    assert_eq!(taken(&seen), vec![6]);
    assert_eq!(committed_at("replayed", &topic, partition), Some(7));
}

/// Apache Kafka keeps commit metadata, and with it the replay's mark, so a
/// second instance (or a restart) of a replaying service goes on from the
/// commits (`broker_keeps_commit_metadata` below pins the broker's part).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_happens_once_per_group_across_instances() {
    let prefix = unique_prefix("replay-group");
    let seen = Seen::default();
    let publisher = app_builder(&prefix).build().unwrap();
    publish(&publisher, 0..4).await;
    let replay = || recording(&seen, "replayed").replay_from(Position::Earliest);
    let first = app(&prefix, replay());
    assert_eq!(
        first.consume_for(4, Duration::from_secs(30)).await.unwrap(),
        4
    );
    assert_eq!(taken(&seen), vec![0, 1, 2, 3]);
    let second = app(&prefix, replay());
    assert_eq!(
        second.consume_for(1, Duration::from_secs(5)).await.unwrap(),
        0
    );
    // A new replay id replays again.
    let named = app(&prefix, replay().with_replay_id("second"));
    assert_eq!(
        named.consume_for(4, Duration::from_secs(30)).await.unwrap(),
        4
    );
}

/// The minimal reproduction: commit an offset with metadata, read it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_keeps_commit_metadata() {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};
    let prefix = unique_prefix("metadata");
    let publisher = app_builder(&prefix).build().unwrap();
    let partition = publish(&publisher, 0..1).await;
    let topic = format!("{prefix}items");
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafkaesk_tests::kafka())
        .set("group.id", format!("{prefix}metadata"))
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, partition, Offset::Offset(1))
        .unwrap();
    for mut elem in tpl.elements() {
        elem.set_metadata("kafkaesk-replay:earliest");
    }
    consumer.commit(&tpl, CommitMode::Sync).unwrap();
    let mut query = TopicPartitionList::new();
    query.add_partition(&topic, partition);
    let committed = consumer
        .committed_offsets(query, Duration::from_secs(10))
        .unwrap();
    let elem = committed.find_partition(&topic, partition).unwrap();
    assert_eq!(elem.offset(), Offset::Offset(1));
    assert_eq!(elem.metadata(), "kafkaesk-replay:earliest");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chosen_partitions_are_the_only_ones_consumed_and_committed() {
    let prefix = unique_prefix("chosen");
    let seen = Seen::default();
    let publisher = app_builder(&prefix).build().unwrap();
    let mut on_partition: std::collections::BTreeMap<i32, Vec<u32>> = Default::default();
    for n in 0..30 {
        let key = format!("key-{n}");
        let delivery = publisher
            .publish("items", &Item { n })
            .key(key.as_str())
            .await
            .unwrap();
        on_partition
            .entry(delivery.await.unwrap().partition)
            .or_default()
            .push(n);
    }
    let chosen: Vec<i32> = on_partition.keys().copied().take(2).collect();
    let expected: Vec<u32> = chosen
        .iter()
        .flat_map(|p| on_partition[p].clone())
        .collect();

    let shard = app(
        &prefix,
        recording(&seen, "shard").with_partitions(chosen.clone()),
    );
    assert_eq!(
        shard
            .consume_for(expected.len(), Duration::from_secs(30))
            .await
            .unwrap(),
        expected.len()
    );
    assert_eq!(
        shard.consume_for(1, Duration::from_secs(3)).await.unwrap(),
        0
    );
    let mut got = taken(&seen);
    got.sort_unstable();
    let mut expected_sorted = expected.clone();
    expected_sorted.sort_unstable();
    assert_eq!(got, expected_sorted);
    let health = shard.health_check().await;
    let committed: Vec<i32> = committed_offsets("shard", &format!("{prefix}items"), 7)
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(committed, chosen, "{health:?}");
}

/// Records produced with timestamps of our choosing: Apache Kafka looks
/// times up by the records' own timestamps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_time_ago_counts_from_the_records_timestamps() {
    use kafkaesk_tests::{create_topic, require_broker};
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let servers = require_broker();
    let prefix = unique_prefix("start-since");
    let topic = format!("{prefix}items");
    create_topic(&servers, &topic).await;
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &servers)
        .create()
        .unwrap();
    let now = SystemTime::now();
    let stamp = |ago: u64| {
        (now - Duration::from_secs(ago))
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    };
    for (n, ago) in [(1, 3 * 3600), (2, 2 * 3600), (3, 600)] {
        let value = serde_json::json!({"schema": "Item:1", "data": {"n": n}}).to_string();
        producer
            .send(
                FutureRecord::<(), _>::to(&topic)
                    .payload(&value)
                    .timestamp(stamp(ago)),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
    }
    let seen = Seen::default();
    for (group, ago, expected) in [
        ("last-hour", 3600, vec![3]),
        ("last-150-min", 150 * 60, vec![2, 3]),
        ("last-day", 24 * 3600, vec![1, 2, 3]),
    ] {
        let app = kafkaesk::Application::builder()
            .kafka_servers([servers.as_str()])
            .topic_prefix(&prefix)
            .subscribe(
                recording(&seen, group).with_start_at(Position::Since(Duration::from_secs(ago))),
            )
            .build()
            .unwrap();
        let n = expected.len();
        assert_eq!(
            app.consume_for(n, Duration::from_secs(30)).await.unwrap(),
            n
        );
        assert_eq!(
            app.consume_for(1, Duration::from_secs(2)).await.unwrap(),
            0,
            "{group}"
        );
        assert_eq!(taken(&seen), expected, "{group}");
    }
}
