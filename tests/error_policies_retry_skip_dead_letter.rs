//! Per-subscription error policies: retry in place, skip, and dead-letter the
//! original record with headers describing the failure; then replay it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafkaesk::policy::{
    DLQ_ATTEMPTS, DLQ_ERROR, DLQ_GROUP, DLQ_OFFSET, DLQ_PARTITION, DLQ_SUBSCRIPTION, DLQ_TOPIC,
};
use kafkaesk::{ErrorPolicy, Record, Subscription};
use kafkaesk_tests::{app_builder, committed_total, unique_prefix};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Job {
    pub id: u32,
}

impl kafkaesk::Schema for Job {
    const ID: &'static str = "PolicyJob";
}

fn backoff() -> Duration {
    Duration::from_millis(20)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_in_place_until_the_handler_succeeds() {
    let prefix = unique_prefix("policy-retry");
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let app = app_builder(&prefix)
        .subscribe(
            Subscription::new("jobs", move |_: Job| {
                let calls = counted.clone();
                async move {
                    // Fails twice, then succeeds.
                    if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                        Err(std::io::Error::other("flaky"))
                    } else {
                        Ok(())
                    }
                }
            })
            .name("jobs")
            .group("retry-group")
            .on_error(ErrorPolicy::retry(3, backoff())),
        )
        .build()
        .unwrap();
    app.publish_and_wait("jobs", &Job { id: 1 }).await.unwrap();
    let consumed = app.consume_for(1, Duration::from_secs(30)).await.unwrap();
    assert_eq!(consumed, 1);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let stats = &app.stats()["jobs"];
    assert_eq!((stats.handled, stats.retried, stats.failed), (1, 2, 0));
    assert_eq!(
        committed_total("retry-group", &format!("{prefix}jobs"), 7),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_exhausted_then_stop_commits_nothing() {
    let prefix = unique_prefix("policy-retry-stop");
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let app = app_builder(&prefix)
        .subscribe(
            Subscription::new("jobs", move |_: Job| {
                counted.fetch_add(1, Ordering::SeqCst);
                async { Err::<(), _>(std::io::Error::other("always")) }
            })
            .name("jobs")
            .group("retry-stop-group")
            .on_error(ErrorPolicy::retry(2, backoff())),
        )
        .build()
        .unwrap();
    app.publish_and_wait("jobs", &Job { id: 1 }).await.unwrap();
    let err = app
        .consume_for(1, Duration::from_secs(30))
        .await
        .expect_err("after the retries the default action stops");
    assert!(matches!(err, kafkaesk::Error::Handler { .. }), "{err}");
    assert_eq!(calls.load(Ordering::SeqCst), 3, "one run and two retries");
    assert_eq!(
        committed_total("retry-stop-group", &format!("{prefix}jobs"), 7),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_counts_failures_commits_and_goes_on() {
    let prefix = unique_prefix("policy-skip");
    let handled = Arc::new(Mutex::new(Vec::new()));
    let seen = handled.clone();
    let app = app_builder(&prefix)
        .subscribe(
            Subscription::new("jobs", move |job: Job| {
                let seen = seen.clone();
                async move {
                    if job.id % 2 == 1 {
                        return Err(std::io::Error::other(format!("odd job {}", job.id)));
                    }
                    seen.lock().unwrap().push(job.id);
                    Ok(())
                }
            })
            .name("jobs")
            .group("skip-group")
            .concurrency(4)
            .on_error(ErrorPolicy::skip()),
        )
        .build()
        .unwrap();
    for id in 0..10 {
        app.publish_and_wait("jobs", &Job { id }).await.unwrap();
    }
    let consumed = app.consume_for(10, Duration::from_secs(30)).await.unwrap();
    assert_eq!(consumed, 10);
    let mut ids = handled.lock().unwrap().clone();
    ids.sort_unstable();
    assert_eq!(ids, [0, 2, 4, 6, 8]);
    let stats = &app.stats()["jobs"];
    assert_eq!((stats.handled, stats.failed, stats.skipped), (5, 5, 5));
    app.finalize().await.unwrap();
    assert_eq!(
        committed_total("skip-group", &format!("{prefix}jobs"), 7),
        10
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_the_untouched_record_with_failure_headers_then_replays_it() {
    let prefix = unique_prefix("policy-dlq");
    let topic = format!("{prefix}jobs");
    let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let handled = Arc::new(Mutex::new(Vec::new()));
    let app = {
        let fail = fail.clone();
        let handled = handled.clone();
        app_builder(&prefix)
            .subscribe(
                Subscription::new("jobs", move |job: Job| {
                    let fail = fail.clone();
                    let handled = handled.clone();
                    async move {
                        if job.id == 13 && fail.load(Ordering::SeqCst) {
                            return Err(std::io::Error::other("unlucky thirteen"));
                        }
                        handled.lock().unwrap().push(job.id);
                        Ok(())
                    }
                })
                .name("jobs")
                .group("dlq-group")
                .on_error(ErrorPolicy::retry(2, backoff()).then_dead_letter("jobs.dead")),
            )
            .build()
            .unwrap()
    };
    // The failing record has a key and a header with non-UTF-8 bytes; both
    // must reach the dead-letter stream untouched, as must its exact bytes.
    let original = br#"{"schema":"PolicyJob:1","data":{"id":13}}"#.to_vec();
    app.publish_and_wait("jobs", &Job { id: 1 }).await.unwrap();
    app.raw_publish("jobs", original.clone())
        .key([0xff, 0x00, 0x13])
        .header("trace", [0xfe, 0xed])
        .await
        .unwrap()
        .await
        .unwrap();
    app.publish_and_wait("jobs", &Job { id: 2 }).await.unwrap();

    let consumed = app.consume_for(3, Duration::from_secs(30)).await.unwrap();
    assert_eq!(consumed, 3);
    let stats = app.stats()["jobs"].clone();
    assert_eq!(
        (stats.handled, stats.retried, stats.dead_lettered),
        (2, 2, 1)
    );
    app.finalize().await.unwrap();
    assert_eq!(committed_total("dlq-group", &topic, 7), 3);

    // Read the dead-letter stream back with a record handler.
    let dead: Arc<Mutex<Vec<Record>>> = Arc::default();
    let reader = {
        let dead = dead.clone();
        app_builder(&prefix)
            .subscribe(
                Subscription::new("jobs.dead", move |record: Record| {
                    dead.lock().unwrap().push(record);
                    async {}
                })
                .name("dead")
                .group("dlq-reader"),
            )
            .build()
            .unwrap()
    };
    reader
        .consume_for(1, Duration::from_secs(30))
        .await
        .unwrap();
    let records = dead.lock().unwrap().clone();
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert_eq!(record.value(), original.as_slice());
    assert_eq!(record.key(), Some(&[0xff, 0x00, 0x13][..]));
    let headers: HashMap<&str, &[u8]> = record
        .headers()
        .iter()
        .map(|h| (h.key.as_str(), h.value.as_deref().unwrap_or_default()))
        .collect();
    assert_eq!(headers["trace"], [0xfe, 0xed]);
    assert_eq!(
        record.headers().iter().filter(|h| h.key == "trace").count(),
        1,
        "the original headers are kept once"
    );
    assert_eq!(headers[DLQ_TOPIC], topic.as_bytes());
    assert_eq!(headers[DLQ_ATTEMPTS], b"3");
    assert_eq!(headers[DLQ_SUBSCRIPTION], b"jobs");
    assert_eq!(headers[DLQ_GROUP], b"dlq-group");
    assert!(std::str::from_utf8(headers[DLQ_PARTITION])
        .unwrap()
        .parse::<i32>()
        .is_ok());
    assert!(std::str::from_utf8(headers[DLQ_OFFSET])
        .unwrap()
        .parse::<i64>()
        .is_ok());
    let error = String::from_utf8_lossy(headers[DLQ_ERROR]);
    assert!(error.contains("unlucky thirteen"), "{error}");

    // Once the cause is fixed, replay puts the record back on its source
    // topic, with its own key and headers and without the failure headers.
    fail.store(false, Ordering::SeqCst);
    let replayed = app
        .replay_dead_letters("jobs.dead", Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(replayed, 1);
    let again = app.consume_for(1, Duration::from_secs(30)).await.unwrap();
    assert_eq!(again, 1);
    assert!(handled.lock().unwrap().contains(&13));
    // A second replay finds nothing new: the replay group committed.
    let replayed = app
        .replay_dead_letters("jobs.dead", Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(replayed, 0);
}
