//! Helpers shared by the integration tests in `tests/`.
//!
//! Every test talks to a real Kafka-protocol broker at `KAFKA` (default
//! `127.0.0.1:9092`; start one with `scripts/broker.sh`) and uses its own
//! topic prefix, so tests run in parallel without seeing each other's data.

use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kafkaesk::ApplicationBuilder;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// The broker address the tests use.
pub fn kafka() -> String {
    std::env::var("KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

/// Fails the test, saying how to start a broker, when none answers at `KAFKA`.
pub fn require_broker() -> String {
    let address = kafka();
    let reachable = address
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .is_some_and(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok());
    assert!(
        reachable,
        "no Kafka broker answers at {address}. Start one with `scripts/broker.sh` \
         (installs and runs tansu), or `docker compose up -d`, or point KAFKA at yours."
    );
    address
}

/// A topic prefix no other test (or earlier run) uses.
pub fn unique_prefix(test: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("t-{test}-{}-{nanos}-{n}.", std::process::id())
}

/// An application builder pointed at the test broker, with a fresh prefix and
/// quick commits.
pub fn app_builder(prefix: &str) -> ApplicationBuilder {
    kafkaesk::Application::builder()
        .kafka_servers([require_broker()])
        .topic_prefix(prefix)
        .auto_commit_interval(Duration::from_millis(500))
}

/// Committed offsets of `group` on every partition of `topic`, as `(partition, offset)`,
/// for partitions with a commit.
pub fn committed_offsets(group: &str, topic: &str, partitions: i32) -> Vec<(i32, i64)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer for reading offsets");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    committed
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
}

/// Sum of committed offsets of `group` on `topic`: the number of records
/// committed past, when the topic started empty.
pub fn committed_total(group: &str, topic: &str, partitions: i32) -> i64 {
    committed_offsets(group, topic, partitions)
        .iter()
        .map(|(_, o)| o)
        .sum()
}

/// Every record currently in `topic`, read from the start with a throw-away
/// group, as raw values. Stops after `idle` without new records.
pub fn read_all(topic: &str, idle: Duration) -> Vec<Vec<u8>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .set("group.id", unique_prefix("reader"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("reader consumer");
    consumer.subscribe(&[topic]).expect("subscribe reader");
    let mut values = Vec::new();
    let mut last = std::time::Instant::now();
    while last.elapsed() < idle {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
            use rdkafka::Message;
            values.push(message.payload().unwrap_or_default().to_vec());
            last = std::time::Instant::now();
        }
    }
    values
}

/// Topic configuration values read back through the admin API.
pub async fn topic_config(topic: &str, key: &str) -> Option<String> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .create()
        .expect("admin client");
    let results = admin
        .describe_configs([&ResourceSpecifier::Topic(topic)], &AdminOptions::new())
        .await
        .expect("describe configs");
    results
        .into_iter()
        .flatten()
        .flat_map(|resource| resource.entries)
        .find(|entry| entry.name == key)
        .and_then(|entry| entry.value)
}
