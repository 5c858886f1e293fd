use std::process::Command;

#[test]
fn example_publishes_then_handles_every_message() {
    let kafka = kafkaesk_tests::require_broker();
    let output = Command::new(env!("CARGO_BIN_EXE_simple"))
        .args(["--count", "3", "--once"])
        .env("KAFKA", kafka)
        .env(
            "KAFKAESK_TOPIC_PREFIX",
            kafkaesk_tests::unique_prefix("simple"),
        )
        .output()
        .expect("run the example");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    for i in 0..3 {
        assert!(
            stdout.contains(&format!("published \"bar {i}\"")),
            "{stdout}"
        );
        assert!(stdout.contains(&format!("handled \"bar {i}\"")), "{stdout}");
    }
    assert!(stdout.contains("done: handled 3 of 3"), "{stdout}");
}

/// With nothing configured, the example brings its own broker.
#[test]
fn example_runs_on_its_embedded_broker_without_kafka() {
    let output = Command::new(env!("CARGO_BIN_EXE_simple"))
        .args(["--count", "2", "--once"])
        .env_remove("KAFKA")
        .env_remove("KAFKAESK_TOPIC_PREFIX")
        .output()
        .expect("run the example");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("embedded broker on 127.0.0.1:"), "{stdout}");
    assert!(stdout.contains("done: handled 2 of 2"), "{stdout}");
}
