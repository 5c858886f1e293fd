//! Retry streams: a record that fails waits in a retry stream, and the
//! records behind it on its partition go on at once. Nothing is lost: the
//! source offset is committed once the retry stream has the record, the
//! retry stream's offsets once the retry settled.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafkaesk::retry_stream::{RETRY_ATTEMPT, RETRY_OFFSET, RETRY_PARTITION, RETRY_TOPIC};
use kafkaesk::{ErrorPolicy, Record, Subscription};
use kafkaesk_tests::{app_builder, committed_total, unique_prefix};

const BEHIND: usize = 1_000;
const DELAY: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Handled(String),
    FirstRunFailed,
    /// The retry ran, with what its headers said.
    Retried {
        topic: String,
        origin: (String, String, String),
        attempt: String,
    },
}

fn header(record: &Record, key: &str) -> String {
    record
        .headers()
        .get(key)
        .map(|value| String::from_utf8_lossy(value).into_owned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_never_block_the_partition() {
    let prefix = unique_prefix("retry-streams");
    let group = "billing";
    let source = format!("{prefix}charges");
    let events = Arc::new(Mutex::new(Vec::<Event>::new()));
    let subscription = Subscription::new("charges", {
        let events = events.clone();
        move |record: Record| {
            let events = events.clone();
            async move {
                let value = String::from_utf8_lossy(record.value()).into_owned();
                let mut events = events.lock().unwrap();
                if value != "poison" {
                    events.push(Event::Handled(value));
                    return Ok(());
                }
                if record.topic().ends_with(".retry-20s") {
                    events.push(Event::Retried {
                        topic: record.topic().to_owned(),
                        origin: (
                            header(&record, RETRY_TOPIC),
                            header(&record, RETRY_PARTITION),
                            header(&record, RETRY_OFFSET),
                        ),
                        attempt: header(&record, RETRY_ATTEMPT),
                    });
                    return Ok(());
                }
                events.push(Event::FirstRunFailed);
                Err(std::io::Error::other("the payment service is down"))
            }
        }
    })
    .with_name(group)
    .with_concurrency(8)
    .on_error(ErrorPolicy::retry_in([DELAY]).then_dead_letter("charges.dead"));
    assert_eq!(subscription.retry_streams(), ["billing.retry-20s"]);
    let retry_topic = format!("{prefix}billing.retry-20s");
    let app = app_builder(&prefix)
        .partitions(1)
        .subscribe(subscription)
        .build()
        .unwrap();
    app.initialize().await.unwrap();

    // The poison first, the records behind it on the same (only) partition.
    app.raw_publish("charges", b"poison".to_vec())
        .wait()
        .await
        .unwrap();
    let mut acks = Vec::new();
    for n in 0..BEHIND {
        acks.push(
            app.raw_publish("charges", format!("ok-{n}").into_bytes())
                .await
                .unwrap(),
        );
    }
    for ack in acks {
        ack.await.unwrap();
    }

    let started = Instant::now();
    let run = tokio::spawn({
        let app = app.clone();
        async move { app.run().await }
    });
    let deadline = Instant::now() + DELAY + Duration::from_secs(90);
    loop {
        let retried = events
            .lock()
            .unwrap()
            .iter()
            .any(|e| matches!(e, Event::Retried { .. }));
        if retried
            && committed_total(group, &source, 1) == BEHIND as i64 + 1
            && committed_total(group, &retry_topic, 1) == 1
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not settled: {:?}, source committed {}, retry stream committed {}",
            app.stats(),
            committed_total(group, &source, 1),
            committed_total(group, &retry_topic, 1)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "retried and committed {:?} after the start",
        started.elapsed()
    );
    app.stop();
    run.await.unwrap().unwrap();

    let events = events.lock().unwrap().clone();
    let handled: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e, Event::Handled(_)))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(handled.len(), BEHIND, "each record behind the poison once");
    let failed = events.iter().position(|e| *e == Event::FirstRunFailed);
    let retried: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e, Event::Retried { .. }))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(retried.len(), 1, "the retry ran once: {events:?}");
    assert!(failed.is_some_and(|f| f < retried[0]));
    assert!(
        handled.iter().all(|&h| h < retried[0]),
        "all {BEHIND} records behind the poison were handled before its retry ran"
    );
    assert_eq!(
        events[retried[0]],
        Event::Retried {
            topic: retry_topic.clone(),
            origin: (source.clone(), "0".into(), "0".into()),
            attempt: "1".into(),
        }
    );
    let stats = &app.stats()[group];
    assert_eq!(stats.retried_later, 1);
    assert_eq!(stats.dead_lettered, 0);
    assert_eq!(stats.handled, BEHIND as u64 + 1);
}
