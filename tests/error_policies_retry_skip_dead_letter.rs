//! Per-subscription error policies: retry in place, skip, and dead-letter the
//! original record with headers describing the failure; then replay it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafkaesk::dead_letter::{
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

/// Publishes job `id` with `key`, which picks its partition, and waits for the broker.
async fn publish_keyed(app: &kafkaesk::Application, id: u32, key: impl AsRef<[u8]>) {
    app.publish("jobs", &Job { id })
        .key(key)
        .await
        .unwrap()
        .await
        .unwrap();
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
            .with_name("jobs")
            .with_group("retry-group")
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
            .with_name("jobs")
            .with_group("retry-stop-group")
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
            .with_name("jobs")
            .with_group("skip-group")
            .with_concurrency(4)
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
                .with_name("jobs")
                .with_group("dlq-group")
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
                .with_name("dead")
                .with_group("dlq-reader"),
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
    assert_eq!(
        replayed,
        kafkaesk::Replayed {
            republished: 1,
            refused: 0
        }
    );
    let again = app.consume_for(1, Duration::from_secs(30)).await.unwrap();
    assert_eq!(again, 1);
    assert!(handled.lock().unwrap().contains(&13));
    // A second replay finds nothing new: the replay group committed.
    let replayed = app
        .replay_dead_letters("jobs.dead", Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(replayed, kafkaesk::Replayed::default());
}

/// A record retrying in one partition holds back only its own partition: the
/// others go on during its backoffs, and its partition stays in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retrying_partition_does_not_hold_the_others() {
    let prefix = unique_prefix("policy-retry-partitions");
    const POISON: u32 = 0;
    const CONCURRENCY: usize = 4;
    let (first_failure, failed) = tokio::sync::oneshot::channel::<()>();
    let first_failure = Arc::new(Mutex::new(Some(first_failure)));
    let poison_runs = Arc::new(AtomicUsize::new(0));
    // (job id, partition), in the order they were handled.
    let handled: Arc<Mutex<Vec<(u32, i32)>>> = Arc::default();
    let (runs, seen) = (poison_runs.clone(), handled.clone());
    let app = app_builder(&prefix)
        .subscribe(
            Subscription::new("jobs", move |job: Job, record: Record| {
                let (runs, seen, first_failure) =
                    (runs.clone(), seen.clone(), first_failure.clone());
                async move {
                    // The poison job fails three times (backoffs 300, 600 and
                    // 1200 ms), then succeeds.
                    if job.id == POISON && runs.fetch_add(1, Ordering::SeqCst) < 3 {
                        if let Some(tx) = first_failure.lock().unwrap().take() {
                            let _ = tx.send(());
                        }
                        return Err(std::io::Error::other("not yet"));
                    }
                    seen.lock().unwrap().push((job.id, record.partition()));
                    Ok(())
                }
            })
            .with_name("jobs")
            .with_group("retry-partitions-group")
            .with_concurrency(CONCURRENCY)
            .on_error(ErrorPolicy::retry(3, Duration::from_millis(300))),
        )
        .build()
        .unwrap();

    // The poison job and ten jobs after it share a key, so a partition.
    publish_keyed(&app, POISON, "poison").await;
    for id in 1..=10 {
        publish_keyed(&app, id, "poison").await;
    }
    let total = 11 + 40;
    let consumer = {
        let app = app.clone();
        tokio::spawn(async move { app.consume_for(total, Duration::from_secs(45)).await })
    };
    tokio::time::timeout(Duration::from_secs(30), failed)
        .await
        .expect("the poison job ran")
        .unwrap();
    // Published while the poison job waits for its retries.
    for id in 100..140 {
        publish_keyed(&app, id, format!("key-{id}")).await;
    }
    assert_eq!(consumer.await.unwrap().unwrap(), total);

    let handled = handled.lock().unwrap().clone();
    assert_eq!(
        poison_runs.load(Ordering::SeqCst),
        4,
        "one run and three retries"
    );
    let poison_at = handled.iter().position(|&(id, _)| id == POISON).unwrap();
    let poison_partition = handled[poison_at].1;
    let mut ids: Vec<u32> = handled.iter().map(|&(id, _)| id).collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        (0..=10).chain(100..140).collect::<Vec<_>>(),
        "each job once"
    );
    let (others_before, others_after): (Vec<_>, Vec<_>) = handled
        .iter()
        .enumerate()
        .filter(|(_, &(_, partition))| partition != poison_partition)
        .partition(|(at, _)| *at < poison_at);
    assert!(
        others_after.is_empty() && others_before.len() >= 30,
        "jobs of other partitions, published after the first failure, are handled \
         during the backoffs: {} before the poison job succeeded, {} after",
        others_before.len(),
        others_after.len()
    );
    // The poison job's partition waits for it: the poison job fails at its
    // first poll, so nothing behind it was started beside it, and the jobs
    // behind it (other keys may share the partition) start once it
    // succeeded, in order. This unordered subscription then runs up to
    // `CONCURRENCY` of them at once, so they may finish in another order: on
    // a loaded machine, two handler runs in a row that the OS preempts for a
    // millisecond look computing, and handlers move to blocking threads
    // (`consumer::batch`), where they finish as the threads run. The order
    // of a key or a partition is `order`'s to keep (see `key_order_holds_*`).
    let partition: Vec<u32> = handled
        .iter()
        .filter(|&&(_, p)| p == poison_partition)
        .map(|&(id, _)| id)
        .collect();
    assert_eq!(partition.first(), Some(&POISON), "{handled:?}");
    let stats = &app.stats()["jobs"];
    assert_eq!(
        (stats.handled, stats.retried, stats.failed),
        (total as u64, 3, 0)
    );
    app.finalize().await.unwrap();
    assert_eq!(
        committed_total("retry-partitions-group", &format!("{prefix}jobs"), 7),
        total as i64
    );
}

/// Stopping while a record waits for a retry leaves it, and the rest of its
/// partition, uncommitted; the other partitions' records are committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_during_retries_commits_nothing_of_the_retrying_partition() {
    let prefix = unique_prefix("policy-retry-stop-midway");
    let topic = format!("{prefix}jobs");
    let poison_partition = Arc::new(Mutex::new(None));
    let seen = poison_partition.clone();
    let app = app_builder(&prefix)
        .subscribe(
            Subscription::new("jobs", move |job: Job, record: Record| {
                let seen = seen.clone();
                async move {
                    if job.id == 0 {
                        *seen.lock().unwrap() = Some(record.partition());
                        return Err(std::io::Error::other("never"));
                    }
                    Ok(())
                }
            })
            .with_name("jobs")
            .with_group("retry-stop-midway-group")
            .with_concurrency(1)
            .on_error(ErrorPolicy::retry(5, Duration::from_secs(10))),
        )
        .build()
        .unwrap();
    publish_keyed(&app, 0, "poison").await;
    publish_keyed(&app, 1, "poison").await;
    for id in 100..120 {
        publish_keyed(&app, id, format!("key-{id}")).await;
    }
    // Stops after 5 s, during the first backoff.
    let consumed = app.consume_for(1000, Duration::from_secs(5)).await.unwrap();
    let poison_partition = poison_partition
        .lock()
        .unwrap()
        .expect("the poison job ran");
    let committed = kafkaesk_tests::committed_offsets("retry-stop-midway-group", &topic, 7);
    let in_poison_partition = committed
        .iter()
        .find(|(p, _)| *p == poison_partition)
        .map_or(0, |(_, offset)| *offset);
    assert_eq!(
        in_poison_partition, 0,
        "nothing of the retrying partition: {committed:?}"
    );
    let total: i64 = committed.iter().map(|(_, offset)| offset).sum();
    let stats = &app.stats()["jobs"];
    assert!(consumed > 0, "the other partitions went on");
    assert_eq!(
        (stats.handled, total),
        (consumed as u64, consumed as i64),
        "every record handled, and only those, committed: {committed:?}"
    );
    assert_eq!(
        (stats.retried, stats.failed),
        (1, 0),
        "stopped in the first backoff"
    );
}
