use std::process::Command;

use serde_json::Value;

#[test]
fn example_ships_a_log_record_and_consumes_it_typed() {
    let kafka = kafkaesk_tests::require_broker();
    let output = Command::new(env!("CARGO_BIN_EXE_logger"))
        .env("KAFKA", kafka)
        .env(
            "KAFKAESK_TOPIC_PREFIX",
            kafkaesk_tests::unique_prefix("logger"),
        )
        .output()
        .expect("run the example");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let line = stdout
        .lines()
        .find_map(|line| line.strip_prefix("consumed "))
        .unwrap_or_else(|| panic!("nothing consumed; stdout:\n{stdout}\nstderr:\n{stderr}"));
    let record: Value = serde_json::from_str(line).expect("the record as JSON");
    assert_eq!(record["message"], "Log Message", "{record}");
    assert_eq!(record["user"], "kafkaesk", "{record}");
    assert_eq!(record["severity"], "DEBUG", "{record}");
    assert_eq!(record["level"], 10, "{record}");
    assert_eq!(record["logger"], "logger", "{record}");
    assert!(record["hostname"].as_str().is_some_and(|h| !h.is_empty()));
}
