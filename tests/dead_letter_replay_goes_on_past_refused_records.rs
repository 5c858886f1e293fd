//! Dead-letter replay refuses a record it must not or cannot republish, and
//! goes on past it: a target that does not exist (never created), kafkaesk's
//! own streams, internal topics, dead-letter streams, and a record the
//! target refuses for good (too large). The refused records are committed,
//! so the next replay does not stop at them again. And a record too large to
//! dead-letter is skipped, counted and logged, rather than stopping the
//! consumer into the same record forever.

use std::time::Duration;

use kafkaesk::dead_letter::{DLQ_SUBSCRIPTION, DLQ_TOPIC};
use kafkaesk::{ErrorPolicy, Replayed, Subscription};
use kafkaesk_tests::{
    app_builder, create_topic_with, kafka, read_all, topic_exists, unique_prefix,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_refuses_what_it_must_not_write_and_goes_on() {
    let prefix = unique_prefix("dlq-refusals");
    let app = app_builder(&prefix)
        .subscribe(
            Subscription::new("*", |_: Vec<u8>| async move {
                Err::<(), _>(std::io::Error::other("never handled here"))
            })
            .with_name("everything")
            .on_error(ErrorPolicy::dead_letter("everything.dead")),
        )
        .build()
        .unwrap();
    // A target that accepts nothing over 1,000 bytes, and one that takes
    // anything.
    create_topic_with(
        &kafka(),
        &format!("{prefix}small"),
        &[("max.message.bytes", "1000")],
    )
    .await;
    app.raw_publish("orders", b"first".to_vec())
        .wait()
        .await
        .unwrap();

    let dead_letter = |target: String, value: Vec<u8>| {
        let app = &app;
        async move {
            app.raw_publish("everything.dead", value)
                .header(DLQ_TOPIC, target)
                .header(DLQ_SUBSCRIPTION, "everything")
                .wait()
                .await
                .unwrap();
        }
    };
    // The refusals come first: each used to end the whole replay.
    dead_letter(format!("{prefix}small"), vec![b'x'; 5_000]).await;
    dead_letter(format!("{prefix}missing"), b"to nowhere".to_vec()).await;
    dead_letter(format!("{prefix}kafkaesk.schemas"), b"{}".to_vec()).await;
    dead_letter(format!("{prefix}_schemas"), b"{}".to_vec()).await;
    dead_letter(format!("{prefix}everything.dead"), b"loop".to_vec()).await;
    dead_letter(format!("{prefix}orders"), b"back".to_vec()).await;

    let replayed = app
        .replay_dead_letters("everything.dead", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        replayed,
        Replayed {
            republished: 1,
            refused: 5
        }
    );
    assert!(
        !topic_exists(&format!("{prefix}missing")),
        "replay created a topic"
    );
    assert!(!topic_exists(&format!("{prefix}_schemas")));
    let mut orders = read_all(&format!("{prefix}orders"), Duration::from_secs(2));
    orders.sort();
    assert_eq!(orders, [b"back".to_vec(), b"first".to_vec()]);
    assert!(read_all(&format!("{prefix}small"), Duration::from_secs(1)).is_empty());
    // Every record was settled: the next replay has nothing to do.
    let again = app
        .replay_dead_letters("everything.dead", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(again, Replayed::default());
    app.finalize().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_too_large_to_dead_letter_is_skipped_and_consumption_goes_on() {
    let prefix = unique_prefix("dlq-too-large");
    // The dead-letter stream takes less than the source topic.
    create_topic_with(
        &kafka(),
        &format!("{prefix}jobs.dead"),
        &[("max.message.bytes", "3000")],
    )
    .await;
    let app = app_builder(&prefix)
        .subscribe(
            Subscription::new("jobs", |raw: Vec<u8>| async move {
                if raw.starts_with(b"ok") {
                    return Ok(());
                }
                // An error that quotes the whole record, as errors do.
                Err(std::io::Error::other(format!(
                    "cannot handle {}",
                    String::from_utf8_lossy(&raw).repeat(20)
                )))
            })
            .with_name("jobs")
            .with_group("too-large-group")
            .on_error(ErrorPolicy::dead_letter("jobs.dead")),
        )
        .build()
        .unwrap();
    // Fits once the error text is cut to 1 KiB; does not fit at all; then a
    // good one.
    let mut fits = b"bad ".to_vec();
    fits.resize(1_000, b'f');
    let mut too_large = b"bad ".to_vec();
    too_large.resize(2_900, b't');
    for value in [fits.clone(), too_large, b"ok".to_vec()] {
        app.raw_publish("jobs", value).wait().await.unwrap();
    }
    assert_eq!(
        app.consume_for(3, Duration::from_secs(60)).await.unwrap(),
        3
    );
    let stats = &app.stats()["jobs"];
    assert_eq!(stats.dead_lettered, 1, "{stats:?}");
    assert_eq!(stats.skipped, 1, "{stats:?}");
    assert_eq!(stats.handled, 1, "{stats:?}");
    let metrics = app.metrics().encode();
    assert!(
        metrics.contains("reason=\"dead_letter_too_large\""),
        "{metrics}"
    );
    app.finalize().await.unwrap();
    assert_eq!(
        read_all(&format!("{prefix}jobs.dead"), Duration::from_secs(2)),
        [fits]
    );
    // All three are committed: a restart does not meet the large one again.
    assert_eq!(
        kafkaesk_tests::committed_total("too-large-group", &format!("{prefix}jobs"), 7),
        3
    );
}
