//! Keyed messages land on the partition the Java client and aiokafka (under
//! Python kafkaesk) pick, keyless ones spread; a publish can name its
//! partition, partitioner, ack policy and timeout.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kafkaesk::publish::{Partitioner, AIOKAFKA_MURMUR2};
use kafkaesk::{AckPolicy, Error};
use kafkaesk_tests::{app_builder, read_all, unique_prefix, PersistentBroker};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Item {
    pub n: u32,
}

impl kafkaesk::Schema for Item {
    const ID: &'static str = "PartitionedItem";
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_go_where_aiokafka_puts_them_and_keyless_messages_spread() {
    let prefix = unique_prefix("murmur2");
    let app = app_builder(&prefix).build().unwrap();
    for &(key, _, in_7, _) in AIOKAFKA_MURMUR2 {
        let delivery = app
            .publish("items", &Item { n: 1 })
            .key(key)
            .wait()
            .await
            .unwrap();
        assert_eq!(delivery.partition, in_7, "key {key:?}");
    }
    let mut keyless = BTreeMap::new();
    for n in 0..70 {
        let delivery = app.publish_and_wait("items", &Item { n }).await.unwrap();
        *keyless.entry(delivery.partition).or_insert(0) += 1;
    }
    assert!(keyless.len() >= 4, "keyless messages spread: {keyless:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_picks_its_partition_or_partitioner() {
    let prefix = unique_prefix("partitioners");
    let app = app_builder(&prefix).build().unwrap();
    let item = Item { n: 1 };

    let chosen = app
        .publish("items", &item)
        .key("k")
        .partition(3)
        .wait()
        .await
        .unwrap();
    assert_eq!(chosen.partition, 3);
    let missing = app.publish("items", &item).partition(99).wait().await;
    assert!(
        matches!(missing, Err(Error::Delivery { .. })),
        "{missing:?}"
    );

    let mut turns = BTreeMap::new();
    for _ in 0..14 {
        let delivery = app
            .publish("items", &item)
            .key("same key")
            .partitioner(Partitioner::RoundRobin)
            .wait()
            .await
            .unwrap();
        *turns.entry(delivery.partition).or_insert(0) += 1;
    }
    assert_eq!(turns, (0..7).map(|p| (p, 2)).collect::<BTreeMap<_, _>>());

    let by_length = Partitioner::custom(|key, count| key.map_or(0, |k| k.len() as i32) % count);
    let custom = app
        .raw_publish(
            "items",
            br#"{"schema":"PartitionedItem:1","data":{"n":1}}"#.to_vec(),
        )
        .key("abcde")
        .partitioner(by_length)
        .wait()
        .await
        .unwrap();
    assert_eq!(custom.partition, 5);
    let outside = app
        .publish("items", &item)
        .partitioner(Partitioner::custom(|_, count| count))
        .wait()
        .await;
    match outside {
        Err(Error::InvalidSetting { name, reason }) => {
            assert_eq!(name, "partitioner");
            assert!(
                reason.contains("partition 7") && reason.contains("0 to 6"),
                "{reason}"
            );
        }
        other => panic!("a partition outside the topic is refused: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_policies_map_to_acks_and_none_resolves_once_queued() {
    let prefix = unique_prefix("acks");
    let app = app_builder(&prefix)
        .ack_policy(AckPolicy::Leader)
        .build()
        .unwrap();
    let leader = app.publish_and_wait("items", &Item { n: 1 }).await.unwrap();
    assert!(leader.offset >= 0, "the leader acknowledged: {leader:?}");
    let all = app
        .publish("items", &Item { n: 2 })
        .ack_policy(AckPolicy::All)
        .wait()
        .await
        .unwrap();
    assert!(all.offset >= 0);
    let none = app
        .publish("items", &Item { n: 3 })
        .ack_policy(AckPolicy::None)
        .wait()
        .await
        .unwrap();
    assert_eq!(
        (none.partition, none.offset),
        (-1, -1),
        "nothing comes back"
    );
    app.flush().await.unwrap();
    let stored = read_all(&format!("{prefix}items"), Duration::from_secs(3));
    assert_eq!(stored.len(), 3, "every policy stored its message");

    let refused = kafkaesk::Application::builder()
        .kafka_setting("acks", "1")
        .build()
        .unwrap_err();
    assert!(refused.to_string().contains("ack_policy"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_timeout_bounds_the_wait_for_an_absent_broker() {
    let mut broker = PersistentBroker::start("publish-timeout");
    let prefix = unique_prefix("publish-timeout");
    let app = kafkaesk::Application::builder()
        .kafka_servers([broker.address()])
        .topic_prefix(&prefix)
        .build()
        .unwrap();
    app.publish_and_wait("items", &Item { n: 1 }).await.unwrap();
    broker.stop();

    let started = Instant::now();
    let waited = app
        .publish("items", &Item { n: 2 })
        .timeout(Duration::from_millis(500))
        .wait()
        .await;
    match waited {
        Err(Error::DeliveryTimeout { timeout, .. }) => {
            assert_eq!(timeout, Duration::from_millis(500))
        }
        other => panic!("the wait ends at the timeout: {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}
