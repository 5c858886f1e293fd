use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn slow_jobs_are_forwarded_and_handled_in_their_own_lane() {
    let kafka = kafkaesk_tests::require_broker();
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_parallel"))
        .args(["--count", "12", "--slow", "2", "--once"])
        .env("KAFKA", kafka)
        .env(
            "KAFKAESK_TOPIC_PREFIX",
            kafkaesk_tests::unique_prefix("parallel"),
        )
        .output()
        .expect("run the example");
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );

    let count = |needle: &str| stdout.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(count("in the fast lane"), 10, "{stdout}");
    assert_eq!(count("forwarded job"), 2, "{stdout}");
    assert!(
        stdout.contains("forwarded job 10 to slow.jobs.batch"),
        "{stdout}"
    );
    assert_eq!(count("(slow header: true)"), 2, "{stdout}");
    // Ten 200 ms jobs run side by side; done one by one they alone would take 2 s more.
    assert!(elapsed < Duration::from_secs(60), "{elapsed:?}");
}
