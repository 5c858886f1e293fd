//! Hostile and bad input against the broker: oversized messages, binary keys
//! and headers, and a topic where half the records are garbage.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafkaesk::{Error, Header, Headers, Record, Subscription};
use kafkaesk_tests::{app_builder, committed_total, unique_prefix};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Numbered {
    pub n: u64,
    pub body: String,
}

impl kafkaesk::Schema for Numbered {
    const ID: &'static str = "Numbered";
}

fn assert_too_large(err: &Error, topic: &str) {
    let Error::MessageTooLarge {
        topic: t, source, ..
    } = err
    else {
        panic!("expected Error::MessageTooLarge, got {err:?}");
    };
    assert_eq!(t, topic);
    assert!(
        matches!(
            source,
            KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge)
        ),
        "{source:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains(topic) && text.contains("too large") && text.contains("message.max.bytes"),
        "{text}"
    );
}

/// Both the raw and the typed path refuse a message over `message.max.bytes`
/// before it leaves, naming the topic and the size problem, and the producer
/// stays usable for messages under the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_the_producer_limit_is_a_clear_error_to_the_publisher() {
    let prefix = unique_prefix("too-large");
    let topic = format!("{prefix}big");
    let app = app_builder(&prefix)
        .partitions(1)
        .kafka_setting("message.max.bytes", "10000")
        .build()
        .unwrap();

    let err = app
        .raw_publish("big", vec![b'x'; 20_000])
        .await
        .expect_err("a 20 kB raw message over a 10 kB limit");
    assert_too_large(&err, &topic);

    let data = Numbered {
        n: 1,
        body: "y".repeat(20_000),
    };
    let err = app
        .publish("big", &data)
        .await
        .expect_err("a 20 kB typed message over a 10 kB limit");
    assert_too_large(&err, &topic);

    let small = Numbered {
        n: 2,
        body: "fits".into(),
    };
    let delivered = app.publish_and_wait("big", &small).await.unwrap();
    assert_eq!(delivered.offset, 0, "nothing oversized reached the topic");
}

/// The text says which settings govern the limit and how big the message was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_too_large_error_names_the_setting_to_change_and_the_size() {
    let prefix = unique_prefix("too-large-hint");
    let app = app_builder(&prefix)
        .partitions(1)
        .kafka_setting("message.max.bytes", "10000")
        .build()
        .unwrap();
    let err = app
        .raw_publish("big", vec![b'x'; 20_000])
        .await
        .expect_err("over the limit");
    let text = err.to_string();
    assert!(
        text.contains("message.max.bytes") && text.contains("20000"),
        "{text}"
    );
}

/// librdkafka's default limit (1,000,000 bytes) applies when none is set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_producer_limit_refuses_a_two_megabyte_message() {
    let prefix = unique_prefix("too-large-default");
    let app = app_builder(&prefix).partitions(1).build().unwrap();
    let err = app
        .raw_publish("big", vec![0u8; 2 << 20])
        .await
        .expect_err("2 MiB over the default limit");
    assert_too_large(&err, &format!("{prefix}big"));
}

/// Typed publishes carry binary keys and header values as they are, like raw ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_keys_and_header_values_pass_through_a_typed_publish_untouched() {
    let prefix = unique_prefix("binary-key");
    let seen = Arc::new(Mutex::new(Vec::<Record>::new()));
    let sink = seen.clone();
    let app = app_builder(&prefix)
        .partitions(1)
        .subscribe(
            Subscription::new("bin", move |record: Record| {
                let sink = sink.clone();
                async move { sink.lock().unwrap().push(record) }
            })
            .with_group("binary-key"),
        )
        .build()
        .unwrap();
    // Invalid UTF-8 of every kind: a lone continuation byte, an overlong
    // encoding, a UTF-16 surrogate, a code point past U+10FFFF, and a NUL.
    let key = vec![
        0x80, 0xc0, 0xaf, 0xed, 0xa0, 0x80, 0xf4, 0x90, 0x80, 0x80, 0x00,
    ];
    let mut headers = Headers::new()
        .with("bin", [0xff_u8, 0xfe, 0x00, 0xc3])
        .with("bin", [0x00_u8])
        .with("empty", []);
    // A null value, distinct from the empty one above.
    headers.push(Header {
        key: "null".into(),
        value: None,
    });
    let data = Numbered {
        n: 3,
        body: "b".into(),
    };
    app.publish("bin", &data)
        .key(&key)
        .headers(&headers)
        .wait()
        .await
        .unwrap();
    app.raw_publish("bin", [0xffu8, 0x00])
        .key(&key)
        .headers(&headers)
        .wait()
        .await
        .unwrap();

    assert_eq!(
        app.consume_for(2, Duration::from_secs(30)).await.unwrap(),
        2
    );
    let seen = seen.lock().unwrap();
    for record in seen.iter() {
        assert_eq!(record.key(), Some(key.as_slice()));
        assert_eq!(record.headers(), &headers);
    }
    assert_eq!(
        seen[0].value(),
        br#"{"schema":"Numbered:1","data":{"n":3,"body":"b"}}"#
    );
    assert_eq!(seen[1].value(), [0xff, 0x00]);
}

/// Garbage of every shape the envelope decoder rejects.
const GARBAGE: [&[u8]; 10] = [
    b"",
    b"not json",
    &[0xff, 0xfe, 0xfd],
    b"{\"schema\":\"Numbered:1\"}",
    b"{\"schema\":\"Numbered:1\",\"data\":{\"n\":\"one\",\"body\":\"x\"}}",
    b"{\"schema\":\"Numbered:1\",\"data\":{\"n\":-1,\"body\":\"x\"}}",
    b"{\"schema\":\"Numbered:1\",\"data\":null}",
    b"{\"schema\":\"Numbered:1\",\"data\":{\"n\":1,\"body\":\"x\"}",
    b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
    b"{\"schema\":\"Numbered:1\",\"data\":{\"n\":1e999,\"body\":\"x\"}}",
];

/// 10,000 garbage records interleaved with 10,000 good ones: the consumer
/// handles every good one once, counts every bad one, and commits all 20,000.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_commits_past_ten_thousand_garbage_records_among_good_ones() {
    const EACH: u64 = 10_000;
    const PARTITIONS: i32 = 4;
    let prefix = unique_prefix("garbage");
    let topic = format!("{prefix}mixed");
    let handled = Arc::new(Mutex::new(vec![0u8; EACH as usize]));
    let calls = Arc::new(AtomicU64::new(0));
    let (sink, counter) = (handled.clone(), calls.clone());
    let app = app_builder(&prefix)
        .partitions(PARTITIONS)
        .subscribe(
            Subscription::new("mixed", move |data: Numbered| {
                let (sink, counter) = (sink.clone(), counter.clone());
                async move {
                    sink.lock().unwrap()[data.n as usize] += 1;
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
            .with_name("garbage")
            .with_group("garbage")
            .with_concurrency(100),
        )
        .build()
        .unwrap();

    let started = Instant::now();
    let mut acks = Vec::with_capacity(2 * EACH as usize);
    for n in 0..EACH {
        let data = Numbered {
            n,
            body: "good".into(),
        };
        // Keys spread both kinds over every partition.
        acks.push(
            app.publish("mixed", &data)
                .key(n.to_string())
                .await
                .unwrap(),
        );
        let bad = GARBAGE[n as usize % GARBAGE.len()];
        acks.push(
            app.raw_publish("mixed", bad)
                .key(format!("bad-{n}"))
                .await
                .unwrap(),
        );
    }
    for ack in acks {
        ack.await.unwrap();
    }
    let published = started.elapsed();

    let started = Instant::now();
    let consumed = app
        .consume_for(2 * EACH as usize, Duration::from_secs(50))
        .await
        .unwrap();
    let consuming = started.elapsed();
    assert_eq!(consumed, 2 * EACH as usize, "consumed within 50 s");

    let handled = handled.lock().unwrap();
    let missing: Vec<usize> = (0..handled.len()).filter(|&n| handled[n] == 0).collect();
    assert!(
        missing.is_empty(),
        "good records never handled: {missing:?}"
    );
    assert_eq!(calls.load(Ordering::Relaxed), EACH, "each good record once");
    let stats = &app.stats()["garbage"];
    assert_eq!(
        (stats.handled, stats.unhandled, stats.failed),
        (EACH, EACH, 0),
        "{stats:?}"
    );
    assert_eq!(
        committed_total("garbage", &topic, PARTITIONS),
        2 * EACH as i64
    );
    eprintln!(
        "garbage topic: published 20,000 in {published:?}, consumed in {consuming:?} \
         ({:.0} records/s)",
        2.0 * EACH as f64 / consuming.as_secs_f64()
    );
}

/// A producer outside kafkaesk may write a header key that is not UTF-8 (the
/// protocol carries keys as bytes). Such a record reaches the handler with its
/// key decoded lossily, as Java clients decode it, and its value untouched;
/// the records around it are handled and everything is committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_key_that_is_not_utf8_reaches_the_handler_decoded_lossily() {
    use rdkafka::bindings as rdsys;
    use rdkafka::message::{BorrowedHeaders, OwnedHeaders};
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let prefix = unique_prefix("non-utf8-header");
    let topic = format!("{prefix}hdr");
    let seen = Arc::new(Mutex::new(Vec::<Record>::new()));
    let sink = seen.clone();
    let app = app_builder(&prefix)
        .partitions(1)
        .subscribe(
            Subscription::new("hdr", move |record: Record| {
                let sink = sink.clone();
                async move { sink.lock().unwrap().push(record) }
            })
            .with_name("hdr")
            .with_group("non-utf8-header"),
        )
        .build()
        .unwrap();
    let good = |n| Numbered {
        n,
        body: "good".into(),
    };
    app.publish_and_wait("hdr", &good(1)).await.unwrap();

    // rdkafka's `Header` key is a `&str`, so the key goes in through librdkafka.
    let key: &[u8] = &[b'k', 0xff, 0xfe, b'y'];
    let value: &[u8] = &[0x00, 0xff];
    let headers = OwnedHeaders::new();
    // `BorrowedHeaders` is librdkafka's header list itself, behind a reference.
    let native = headers.as_borrowed() as *const BorrowedHeaders as *mut rdsys::rd_kafka_headers_t;
    // SAFETY: `native` is the live list owned by `headers`; librdkafka copies
    // both byte strings.
    let err = unsafe {
        rdsys::rd_kafka_header_add(
            native,
            key.as_ptr().cast(),
            key.len() as isize,
            value.as_ptr().cast(),
            value.len() as isize,
        )
    };
    assert_eq!(err, rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR);
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafkaesk_tests::kafka())
        .create()
        .unwrap();
    producer
        .send(
            FutureRecord::<(), _>::to(&topic)
                .payload(br#"{"schema":"Numbered:1","data":{"n":2,"body":"foreign"}}"#.as_slice())
                .headers(headers),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(err, _)| err)
        .unwrap();
    app.publish_and_wait("hdr", &good(3)).await.unwrap();

    assert_eq!(
        app.consume_for(3, Duration::from_secs(30)).await.unwrap(),
        3
    );
    let seen = seen.lock().unwrap();
    let offsets: Vec<i64> = seen.iter().map(Record::offset).collect();
    assert_eq!(offsets, [0, 1, 2]);
    let foreign: Vec<&Header> = seen[1].headers().iter().collect();
    assert_eq!(
        foreign,
        [&Header {
            key: "k\u{fffd}\u{fffd}y".into(),
            value: Some(value.to_vec()),
        }]
    );
    let stats = &app.stats()["hdr"];
    assert_eq!((stats.handled, stats.failed), (3, 0), "{stats:?}");
    assert_eq!(committed_total("non-utf8-header", &topic, 1), 3);
}
