//! The `kafkaesk` command never prints a secret given in `--kafka-settings`
//! or `KAFKAESK_KAFKA_SETTINGS`: not in its logs, its errors or its help.

use std::path::PathBuf;
use std::process::{Command, Output};

fn service_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/service")
}

fn kafkaesk() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kafkaesk"));
    command
        .env_remove("KAFKAESK_KAFKA_SERVERS")
        .env_remove("KAFKAESK_KAFKA_SETTINGS")
        .env_remove("KAFKAESK_TOPIC_PREFIX");
    command
}

/// Runs the command and returns its exit code and stdout and stderr together.
fn run(mut command: Command) -> (i32, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = command.output().expect("run kafkaesk");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(&stderr)
    );
    (status.code().unwrap_or(-1), text)
}

fn assert_no_secret(text: &str) {
    let leaks: Vec<&str> = text.lines().filter(|l| l.contains("S3CRET")).collect();
    assert!(leaks.is_empty(), "secrets printed:\n{}", leaks.join("\n"));
}

const SETTINGS: &str = r#"{
    "sasl.password": "S3CRET-sasl-password",
    "ssl.key.password": "S3CRET-ssl-key-password",
    "ssl.keystore.password": "S3CRET-keystore-password",
    "sasl.oauthbearer.config": "principal=alice extension_x=S3CRET-oauth-config",
    "debug": "all"
}"#;

/// With every log on (RUST_LOG=trace and librdkafka's `debug=all`, whose
/// configuration dump is in the output), by flag and by environment.
#[test]
fn a_worker_failing_to_reach_kafka_prints_no_secret_even_at_trace_level() {
    for by_env in [false, true] {
        let mut command = kafkaesk();
        command
            .arg(service_dir())
            .args(["--kafka-servers", "127.0.0.1:1"])
            .env("RUST_LOG", "trace");
        if by_env {
            command.env("KAFKAESK_KAFKA_SETTINGS", SETTINGS);
        } else {
            command.args(["--kafka-settings", SETTINGS]);
        }
        let (code, output) = run(command);
        assert_eq!(code, 1, "{output}");
        assert!(
            output.contains("error: cannot reach Kafka at 127.0.0.1:1"),
            "{output}"
        );
        assert!(
            output.contains("sasl.password = [redacted]"),
            "librdkafka's configuration dump is not in the output, so this proves nothing"
        );
        assert_no_secret(&output);
    }
}

/// clap's own errors print the whole value of an argument its parser
/// rejects; `--kafka-settings` errors must name the problem without it.
#[test]
fn rejected_kafka_settings_are_not_echoed() {
    for settings in [
        r#"{"sasl.password": "S3CRET-in-truncated-json", "#,
        r#"{"sasl.password": ["S3CRET-in-an-array"]}"#,
    ] {
        let mut command = kafkaesk();
        command.arg(service_dir()).args([
            "--kafka-servers",
            "127.0.0.1:1",
            "--kafka-settings",
            settings,
        ]);
        let (code, output) = run(command);
        assert_eq!(code, 2, "{output}");
        assert!(output.contains("--kafka-settings"), "{output}");
        assert_no_secret(&output);
    }
}

/// clap shows an `env` argument's current value in `--help` unless told not to.
#[test]
fn help_does_not_show_the_settings_from_the_environment() {
    let mut command = kafkaesk();
    command
        .arg("--help")
        .env("KAFKAESK_KAFKA_SETTINGS", SETTINGS);
    let (code, output) = run(command);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("KAFKAESK_KAFKA_SETTINGS"), "{output}");
    assert_no_secret(&output);
}

/// A property librdkafka refuses is reported by name, never with its value
/// (rdkafka's own error text would quote it).
#[test]
fn a_refused_secret_property_is_reported_without_its_value() {
    let mut command = kafkaesk();
    command.arg(service_dir()).args([
        "--kafka-servers",
        "127.0.0.1:1",
        "--kafka-settings",
        r#"{"ssl.truststore.password": "S3CRET-java-only-property"}"#,
    ]);
    let (code, output) = run(command);
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("ssl.truststore.password"), "{output}");
    assert_no_secret(&output);
}
