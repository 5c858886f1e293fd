//! `parallel` subscriptions run each handler as a task of its own, so
//! handlers that compute run on every worker thread of the runtime at once;
//! by default they all run on the consumer's task, one at a time.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafkaesk::Subscription;
use kafkaesk_tests::{app_builder, unique_prefix};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Work {
    pub n: u32,
}

impl kafkaesk::Schema for Work {
    const ID: &'static str = "Work";
}

#[derive(Default)]
struct Seen {
    threads: Mutex<HashSet<std::thread::ThreadId>>,
    running: AtomicUsize,
    most_at_once: AtomicUsize,
}

/// Handles 40 records whose handlers compute for 300 µs each (below the
/// 1 ms at which kafkaesk moves handlers to blocking threads by itself).
async fn run(parallel: bool) -> Arc<Seen> {
    let prefix = unique_prefix("parallel");
    let seen = Arc::new(Seen::default());
    let inner = seen.clone();
    let mut subscription = Subscription::new("work", move |_: Work| {
        let seen = inner.clone();
        async move {
            let now = seen.running.fetch_add(1, Ordering::SeqCst) + 1;
            seen.most_at_once.fetch_max(now, Ordering::SeqCst);
            seen.threads
                .lock()
                .unwrap()
                .insert(std::thread::current().id());
            let until = Instant::now() + Duration::from_micros(300);
            while Instant::now() < until {
                std::hint::spin_loop();
            }
            seen.running.fetch_sub(1, Ordering::SeqCst);
        }
    })
    .with_name("work")
    .with_group(format!("{prefix}work"))
    .with_concurrency(4);
    if parallel {
        subscription = subscription.parallel();
    }
    let app = app_builder(&prefix)
        .subscribe(subscription)
        .build()
        .unwrap();
    for n in 0..40 {
        app.publish("work", &Work { n }).await.unwrap();
    }
    app.flush().await.unwrap();
    assert_eq!(
        app.consume_for(40, Duration::from_secs(30)).await.unwrap(),
        40
    );
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_handlers_compute_on_several_threads_at_once() {
    let seen = run(true).await;
    assert!(seen.most_at_once.load(Ordering::SeqCst) >= 2);
    assert!(seen.threads.lock().unwrap().len() >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_handlers_compute_one_at_a_time_on_the_consumer_task() {
    let seen = run(false).await;
    assert_eq!(seen.most_at_once.load(Ordering::SeqCst), 1);
}
