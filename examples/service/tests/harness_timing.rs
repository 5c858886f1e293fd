//! How long a harness test takes to its first settled message: cold (the process's first
//! test: broker start, application start, first message) and warm (later tests of the process,
//! reusing the broker). Each test runs on a runtime of its own, as `#[tokio::test]` gives it.
//!
//! A measurement for BENCHMARKS.md, run on its own:
//!
//! ```text
//! cargo test -p service --test harness_timing -- --ignored --nocapture
//! ```

use std::time::{Duration, Instant};

use kafkaesk::testing::TestHarness;
use service::Order;

/// Tests after the first; 50 is the suite the harness must run in seconds, not minutes.
const WARM_TESTS: usize = 50;

/// One test, as a `#[tokio::test]` runs it: its own runtime, a harness, a published order,
/// settled. Returns the time from its start to the order settled (its end, the consumers
/// leaving their groups as the runtime goes, is in the suite's total).
fn one_test(id: u64) -> Duration {
    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let settled = runtime.block_on(async {
        let harness = TestHarness::for_app(&service::app().expect("the app"))
            .await
            .expect("a harness");
        let order = Order {
            id,
            item: "book".into(),
            quantity: 1,
        };
        let published = harness
            .publish("orders.created", &order)
            .await
            .expect("settled");
        let handled = published
            .outcome("handle_order")
            .is_some_and(|outcome| outcome.is_handled());
        assert!(handled, "{published:?}");
        started.elapsed()
    });
    // The test's end: its runtime goes, with the harness's consumers.
    drop(runtime);
    settled
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

#[test]
#[ignore = "a measurement; see the file's docs"]
fn time_to_the_first_settled_message_cold_and_warm() {
    let suite = Instant::now();
    let cold = one_test(0);
    let warm: Vec<Duration> = (1..=WARM_TESTS as u64).map(one_test).collect();
    let total = suite.elapsed();
    let warm_median = median(warm.clone());
    let warm_max = warm.iter().max().copied().unwrap_or_default();
    println!(
        "harness timing: cold {:.1} ms, warm median {:.1} ms (max {:.1} ms), {} tests in {:.2} s",
        cold.as_secs_f64() * 1e3,
        warm_median.as_secs_f64() * 1e3,
        warm_max.as_secs_f64() * 1e3,
        WARM_TESTS + 1,
        total.as_secs_f64()
    );
    // Generous bounds, for a loaded two-core machine: the point is seconds, not minutes.
    assert!(cold < Duration::from_secs(10), "cold {cold:?}");
    assert!(warm_median < Duration::from_secs(2), "warm {warm_median:?}");
    assert!(total < Duration::from_secs(60), "{total:?}");
}
