use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use std::sync::Mutex;

use kafkaesk::{Application, Error, Subscription};
use kafkaesk_tests::{app_builder, committed_offsets, committed_total, unique_prefix};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Job {
    pub id: u32,
}

impl kafkaesk::Schema for Job {
    const ID: &'static str = "Job";
}

#[derive(Clone, Copy)]
enum Behaviour {
    Fail,
    Panic,
    Succeed,
}

fn app(prefix: &str, group: &str, behaviour: Behaviour, calls: Arc<AtomicUsize>) -> Application {
    app_builder(prefix)
        .subscribe(
            Subscription::new("jobs", move |_: Job| {
                let calls = calls.clone();
                async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    match behaviour {
                        Behaviour::Fail => Err(std::io::Error::other("boom")),
                        Behaviour::Panic => panic!("handler exploded"),
                        Behaviour::Succeed => Ok(()),
                    }
                }
            })
            .with_name("jobs")
            .with_group(group),
        )
        .build()
        .unwrap()
}

async fn fails_then_succeeds_after_restart(test: &str, behaviour: Behaviour) -> Error {
    let prefix = unique_prefix(test);
    let group = format!("{test}-group");
    let topic = format!("{prefix}jobs");
    let calls = Arc::new(AtomicUsize::new(0));

    let failing = app(&prefix, &group, behaviour, calls.clone());
    failing
        .publish_and_wait("jobs", &Job { id: 1 })
        .await
        .unwrap();
    let err = failing
        .consume_for(1, Duration::from_secs(30))
        .await
        .expect_err("a failing handler stops the consumer with its error");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        committed_total(&group, &topic, 7),
        0,
        "nothing is committed"
    );
    assert_eq!(failing.stats()["jobs"].failed, 1);

    // After a restart the same message is consumed again, then committed.
    let again = Arc::new(AtomicUsize::new(0));
    let fixed = app(&prefix, &group, Behaviour::Succeed, again.clone());
    assert_eq!(
        fixed.consume_for(1, Duration::from_secs(30)).await.unwrap(),
        1
    );
    assert_eq!(again.load(Ordering::SeqCst), 1);
    assert_eq!(committed_total(&group, &topic, 7), 1);
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_error_stops_without_commit_and_message_returns() {
    let err = fails_then_succeeds_after_restart("fail", Behaviour::Fail).await;
    let Error::Handler {
        subscription,
        position,
        source,
    } = &err
    else {
        panic!("expected Error::Handler, got {err:?}")
    };
    assert_eq!(subscription, "jobs");
    assert!(position.topic.ends_with("jobs"));
    assert_eq!(source.to_string(), "boom");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_panic_stops_without_commit_and_message_returns() {
    let err = fails_then_succeeds_after_restart("panic", Behaviour::Panic).await;
    let Error::HandlerPanic { message, .. } = &err else {
        panic!("expected Error::HandlerPanic, got {err:?}")
    };
    assert_eq!(message, "handler exploded");
}

/// Records fetched together behind a failing one are neither run nor
/// committed, and those before it are committed: a restart resumes exactly at
/// the failed record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_stops_at_its_record_and_commits_those_before_it() {
    const FAILING: u32 = 4;
    let prefix = unique_prefix("fail-at-record");
    let group = "fail-at-record-group";
    let topic = format!("{prefix}jobs");
    let seen: Arc<Mutex<Vec<u32>>> = Arc::default();
    let handled = seen.clone();
    let failing = app_builder(&prefix)
        .subscribe(
            Subscription::new("jobs", move |job: Job| {
                let handled = handled.clone();
                async move {
                    handled.lock().unwrap().push(job.id);
                    if job.id == FAILING {
                        return Err(std::io::Error::other("boom"));
                    }
                    Ok(())
                }
            })
            .with_name("jobs")
            .with_group(group),
        )
        .build()
        .unwrap();
    // One key, so one partition, all waiting before the consumer starts.
    for id in 1..=10 {
        failing
            .publish("jobs", &Job { id })
            .key("one")
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let err = failing
        .consume_for(10, Duration::from_secs(30))
        .await
        .expect_err("the failing record stops the consumer");
    assert!(
        matches!(err, Error::Handler { ref position, .. } if position.offset == 3),
        "{err:?}"
    );
    assert_eq!(
        *seen.lock().unwrap(),
        vec![1, 2, 3, 4],
        "nothing behind the failure ran"
    );
    let committed: Vec<i64> = committed_offsets(group, &topic, 7)
        .into_iter()
        .map(|(_, offset)| offset)
        .filter(|&offset| offset > 0)
        .collect();
    assert_eq!(committed, vec![3], "committed up to the failed record");
}
