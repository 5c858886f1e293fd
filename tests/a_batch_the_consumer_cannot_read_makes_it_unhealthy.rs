//! A batch librdkafka cannot read (here, one whose attributes name a
//! compression codec that does not exist, as a zstd batch did for a build
//! without zstd) is fetched again and again, forever: the partition is
//! stuck while the process looks busy. The consumer logs it once, counts
//! it, and reports unhealthy while it repeats; once the batch can be read,
//! the records are handled and the consumer is healthy again.
//!
//! The test edits the batch in the broker's own log segment, so it needs
//! the broker `scripts/broker.sh` runs (its data directory is in
//! `broker.env`).

use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafkaesk::Subscription;
use kafkaesk_tests::{app_builder, create_topic, kafka, unique_prefix, BrokerEnv};

/// Where a record batch (format v2) keeps its attributes: after the base
/// offset (8 bytes), length (4), leader epoch (4), magic (1) and CRC (4).
/// The low 3 bits of their second byte are the codec.
const CODEC_BYTE: u64 = 8 + 4 + 4 + 1 + 4 + 1;

/// Swaps the codec of the partition's first batch for `codec`; the one it had.
fn set_codec(segment: &std::path::Path, codec: u8) -> u8 {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(segment)
        .unwrap_or_else(|err| panic!("{}: {err}", segment.display()));
    let mut byte = [0u8];
    file.seek(SeekFrom::Start(CODEC_BYTE)).unwrap();
    file.read_exact(&mut byte).unwrap();
    let before = byte[0] & 0x07;
    byte[0] = (byte[0] & !0x07) | codec;
    file.seek(SeekFrom::Start(CODEC_BYTE)).unwrap();
    file.write_all(&byte).unwrap();
    file.sync_all().unwrap();
    before
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_cannot_be_read_makes_the_consumer_unhealthy_until_it_can() {
    let prefix = unique_prefix("unreadable-batch");
    let topic = format!("{prefix}blobs");
    create_topic(&kafka(), &topic).await;
    let handled = Arc::new(AtomicUsize::new(0));
    let app = {
        let handled = handled.clone();
        app_builder(&prefix)
            .subscribe(
                Subscription::new("blobs", move |_: Vec<u8>| {
                    let handled = handled.clone();
                    async move {
                        handled.fetch_add(1, Ordering::SeqCst);
                    }
                })
                .with_name("blobs")
                .with_group("unreadable-group"),
            )
            .build()
            .unwrap()
    };
    // Two batches: the first made unreadable, the second behind it.
    for value in ["first", "second"] {
        app.raw_publish("blobs", value.as_bytes().to_vec())
            .wait()
            .await
            .unwrap();
    }
    let env = BrokerEnv::shared();
    let segment = std::path::PathBuf::from(env.get("KAFKAESK_BROKER_DIR"))
        .join("data")
        .join(format!("{topic}-0"))
        .join("00000000000000000000.log");
    let codec = set_codec(&segment, 7);

    let run = tokio::spawn({
        let app = app.clone();
        async move { app.run().await }
    });
    // Unhealthy once the error has repeated for 10 s; not a record read.
    let deadline = Instant::now() + Duration::from_secs(60);
    let stalled = loop {
        let health = app.health_check().await;
        if let Some(consumer) = health.consumers.iter().find(|c| c.stalled.is_some()) {
            assert!(!health.is_healthy(), "{health:?}");
            break consumer.stalled.clone().unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "the consumer never reported the repeating error: {health:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    eprintln!("stalled: {stalled}");
    assert_eq!(handled.load(Ordering::SeqCst), 0);
    let metrics = app.metrics().encode();
    let errors: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("kafkaesk_consumer_fetch_errors_total{") && l.contains("blobs"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(errors >= 2.0, "{metrics}");
    assert!(
        metrics.contains("kafkaesk_consumer_health{group_id=\"unreadable-group\"} 0"),
        "{metrics}"
    );

    // Readable again: both records are handled, and the consumer is healthy.
    set_codec(&segment, codec);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let health = app.health_check().await;
        if handled.load(Ordering::SeqCst) == 2 && health.is_healthy() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "handled {}, {health:?}",
            handled.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    app.stop();
    run.await.unwrap().unwrap();
}
