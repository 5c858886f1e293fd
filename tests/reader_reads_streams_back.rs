//! `app.reader(...)` reads streams back without a consumer group: forward in
//! timestamp order to the end, backward newest first, the last record and
//! the last for a key, a pattern of streams, from an offset or a time, as an
//! async stream that ends or follows, and with undecodable records as error
//! items in their place.

use std::time::{Duration, SystemTime};

use futures::StreamExt;
use kafkaesk::reader::Position;
use kafkaesk::{Application, Error};
use kafkaesk_tests::{app_builder, create_topic, require_broker, unique_prefix};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Entry {
    pub n: u32,
}

impl kafkaesk::Schema for Entry {
    const ID: &'static str = "ReaderEntry";
}

/// Publishes `Entry { n }` for each n, keyed `k{n % 3}`, one after another.
async fn publish(app: &Application, stream: &str, ns: std::ops::Range<u32>) {
    for n in ns {
        app.publish(stream, &Entry { n })
            .key(format!("k{}", n % 3))
            .wait()
            .await
            .unwrap();
    }
}

fn numbers(items: Vec<kafkaesk::Result<kafkaesk::reader::Item<Entry>>>) -> Vec<u32> {
    items.into_iter().map(|item| item.unwrap().data.n).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_forward_backward_last_and_by_key() {
    let prefix = unique_prefix("reader");
    let app = app_builder(&prefix).build().unwrap();
    publish(&app, "ledger", 0..12).await;

    let all = app.reader("ledger").read::<Entry>().await.unwrap();
    assert_eq!(
        numbers(all),
        (0..12).collect::<Vec<_>>(),
        "timestamp order across partitions"
    );
    let first = app.reader("ledger").limit(4).read::<Entry>().await.unwrap();
    assert_eq!(numbers(first), [0, 1, 2, 3]);
    let newest = app
        .reader("ledger")
        .backward()
        .limit(3)
        .read::<Entry>()
        .await
        .unwrap();
    assert_eq!(numbers(newest), [11, 10, 9]);

    let last = app.reader("ledger").last::<Entry>().await.unwrap();
    assert_eq!(last.unwrap().unwrap().data.n, 11);
    let for_key = app
        .reader("ledger")
        .last_for_key::<Entry>("k1")
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(for_key.data.n, 10);
    assert_eq!(for_key.record.key(), Some(&b"k1"[..]));
    assert!(app
        .reader("ledger")
        .last_for_key::<Entry>("nobody")
        .await
        .unwrap()
        .is_none());

    // From an offset of one partition: that record and those after it.
    let partition = for_key.record.partition();
    let offset = for_key.record.offset();
    let tail = app
        .reader("ledger")
        .partitions([partition])
        .from(Position::Offset(offset))
        .read::<Entry>()
        .await
        .unwrap();
    let tail = numbers(tail);
    assert_eq!(tail.first(), Some(&10));
    assert!(tail.iter().all(|n| n % 3 == 1), "{tail:?}");

    // Nothing matches: a clear error.
    let missing = app.reader("nothing-here").read::<Entry>().await;
    assert!(matches!(missing, Err(Error::Topic { .. })), "{missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_a_pattern_and_surfaces_undecodable_records_in_place() {
    let prefix = unique_prefix("reader-pattern");
    let app = app_builder(&prefix).partitions(1).build().unwrap();
    publish(&app, "accounts.a", 0..2).await;
    app.raw_publish("accounts.a", b"not json".to_vec())
        .wait()
        .await
        .unwrap();
    publish(&app, "accounts.b", 2..4).await;
    publish(&app, "other", 9..10).await;

    let items = app.reader("accounts.*").read::<Entry>().await.unwrap();
    assert_eq!(items.len(), 5, "{items:?}");
    match &items[2] {
        Err(Error::Undecodable { position, reason }) => {
            assert!(position.topic.ends_with("accounts.a"));
            assert_eq!(position.offset, 2);
            assert!(!reason.is_empty());
        }
        other => panic!("expected the undecodable record third, got {other:?}"),
    }
    let decoded: Vec<u32> = items
        .into_iter()
        .filter_map(Result::ok)
        .map(|item| item.data.n)
        .collect();
    assert_eq!(decoded, [0, 1, 2, 3]);
}

/// Records produced with timestamps of our choosing: Apache Kafka looks a
/// time up by the records' own timestamps (the embedded broker, by when
/// each batch was stored).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_at_a_time_or_a_time_ago() {
    let servers = require_broker();
    let prefix = unique_prefix("reader-time");
    let app = Application::builder()
        .kafka_servers([servers.as_str()])
        .topic_prefix(&prefix)
        .build()
        .unwrap();
    let topic = format!("{prefix}events");
    create_topic(&servers, &topic).await;
    // Records stamped 3 h, 2 h and 10 min ago, in that order.
    let producer: FutureProducer = ClientConfig::new()
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
        let value = serde_json::json!({"schema": "ReaderEntry:1", "data": {"n": n}}).to_string();
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
    async fn read_from(app: &Application, position: Position) -> Vec<u32> {
        numbers(
            app.reader("events")
                .from(position)
                .read::<Entry>()
                .await
                .unwrap(),
        )
    }
    let stored: Vec<Option<i64>> = app
        .reader("events")
        .read::<Entry>()
        .await
        .unwrap()
        .into_iter()
        .map(|item| item.unwrap().record.timestamp())
        .collect();
    assert_eq!(
        stored,
        [
            Some(stamp(3 * 3600)),
            Some(stamp(2 * 3600)),
            Some(stamp(600))
        ],
        "the records keep the timestamps they were produced with"
    );
    let hour = Duration::from_secs(3600);
    assert_eq!(read_from(&app, Position::Since(hour)).await, [3]);
    assert_eq!(read_from(&app, Position::Since(5 * hour)).await, [1, 2, 3]);
    assert_eq!(
        read_from(&app, Position::Timestamp(now - hour * 5 / 2)).await,
        [2, 3]
    );
    // A time after every record is the end (the broker's lookup answers -1).
    assert_eq!(
        read_from(&app, Position::Timestamp(now + hour)).await,
        Vec::<u32>::new()
    );
    assert_eq!(read_from(&app, Position::Latest).await, Vec::<u32>::new());
    assert_eq!(read_from(&app, Position::Offset(1)).await, [2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iter_ends_at_the_end_or_follows_live_records() {
    let prefix = unique_prefix("reader-iter");
    let app = app_builder(&prefix).build().unwrap();
    publish(&app, "feed", 0..5).await;

    let ended: Vec<u32> = app
        .reader("feed")
        .iter::<Entry>()
        .map(|item| item.unwrap().data.n)
        .collect()
        .await;
    assert_eq!(ended, [0, 1, 2, 3, 4]);

    let mut live = app
        .reader("feed")
        .from(Position::Latest)
        .follow()
        .iter::<Entry>();
    let publisher = app.clone();
    let later = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        publish(&publisher, "feed", 5..8).await;
    });
    let mut followed = Vec::new();
    while followed.len() < 3 {
        let item = tokio::time::timeout(Duration::from_secs(30), live.next())
            .await
            .expect("a live record within 30 s")
            .expect("the stream follows");
        followed.push(item.unwrap().data.n);
    }
    later.await.unwrap();
    followed.sort_unstable();
    assert_eq!(followed, [5, 6, 7]);
}
