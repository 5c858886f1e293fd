//! The `kafkaesk` command against the test broker: running a library crate's
//! handlers, stopping cleanly, and its error paths.

use std::path::PathBuf;
use std::process::{Child, Command, Output};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use kafkaesk_tests::{
    committed_total, require_broker, signal_and_wait, spawn_with_lines, unique_prefix,
};

/// Runs that build the runner share a cargo lock; one at a time keeps their
/// output and timing readable.
static BUILDS: Mutex<()> = Mutex::const_new(());

fn service_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/service")
}

fn kafkaesk() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kafkaesk"));
    command.env_remove("KAFKAESK_KAFKA_SERVERS");
    command
}

/// A running worker whose output lines arrive on a channel.
struct Worker {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Worker {
    fn start(mut command: Command) -> Worker {
        let (child, lines) = spawn_with_lines(&mut command);
        Worker {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a line containing `needle`; fails with everything seen so far.
    fn wait_for(&mut self, needle: &str, timeout: Duration) {
        self.wait_for_line(needle, timeout);
    }

    /// Like [`wait_for`](Self::wait_for), returning the line.
    fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                let found = line.contains(needle);
                self.seen.push(line.clone());
                if found {
                    return line;
                }
            }
        }
        let _ = self.child.kill();
        panic!(
            "no line with {needle:?} within {timeout:?}; output:\n{}",
            self.seen.join("\n")
        );
    }

    /// Sends SIGINT, as Ctrl-C in a terminal does, and requires the worker
    /// to exit within `within`; returns its exit code and output.
    fn interrupt(mut self, within: Duration) -> (i32, Vec<String>) {
        let stopped = signal_and_wait(&mut self.child, libc::SIGINT, within);
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(500)) {
            self.seen.push(line);
        }
        let Some((status, took)) = stopped else {
            panic!(
                "still running {within:?} after SIGINT (killed); output:\n{}",
                self.seen.join("\n")
            );
        };
        eprintln!("kafkaesk stopped {took:?} after SIGINT");
        (status.code().unwrap_or(-1), self.seen)
    }

    fn terminate(mut self) -> (i32, Vec<String>) {
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().expect("wait for kafkaesk");
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(500)) {
            self.seen.push(line);
        }
        (status.code().unwrap_or(-1), self.seen)
    }
}

async fn publish_order(prefix: &str, id: u64) {
    let app = kafkaesk::Application::builder()
        .kafka_servers([require_broker()])
        .topic_prefix(prefix)
        .build()
        .unwrap();
    app.publish_and_wait(
        "orders.created",
        &service::Order {
            id,
            item: "book".into(),
            quantity: 2,
        },
    )
    .await
    .unwrap();
}

fn output_of(mut command: Command) -> (i32, String) {
    let Output { status, stderr, .. } = command.output().expect("run kafkaesk");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_a_library_crates_handlers_and_stops_cleanly_on_sigterm() {
    let kafka = require_broker();
    let prefix = unique_prefix("cli");
    let _build = BUILDS.lock().await;
    let mut command = kafkaesk();
    command
        .arg(service_dir())
        .args(["--kafka-servers", &kafka, "--topic-prefix", &prefix]);
    let mut worker = Worker::start(command);
    // The first run builds the runner; later runs start at once.
    worker.wait_for(
        "subscription handle_order on orders.* (group order-service",
        Duration::from_secs(900),
    );
    worker.wait_for("partitions assigned", Duration::from_secs(60));
    publish_order(&prefix, 41).await;
    worker.wait_for("handled order 41 (2 x book)", Duration::from_secs(60));

    let (code, output) = worker.terminate();
    assert_eq!(code, 0, "{}", output.join("\n"));
    let topic = format!("{prefix}orders.created");
    assert_eq!(committed_total("order-service", &topic, 7), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_the_application_a_function_returns_with_flags_overriding_it() {
    let kafka = require_broker();
    let prefix = unique_prefix("cli-app");
    let _build = BUILDS.lock().await;
    let mut command = kafkaesk();
    command
        .arg(format!("{}::app", service_dir().display()))
        .env("KAFKAESK_KAFKA_SERVERS", &kafka)
        .env("KAFKAESK_TOPIC_PREFIX", &prefix);
    let mut worker = Worker::start(command);
    worker.wait_for("partitions assigned", Duration::from_secs(900));
    publish_order(&prefix, 7).await;
    worker.wait_for("handled order 7", Duration::from_secs(60));
    let (code, output) = worker.terminate();
    assert_eq!(code, 0, "{}", output.join("\n"));
}

#[test]
fn a_wrong_target_is_a_one_line_error() {
    let (code, stderr) = output_of({
        let mut c = kafkaesk();
        c.args(["does/not/exist", "--kafka-servers", "127.0.0.1:9092"]);
        c
    });
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: no crate at `does/not/exist`"),
        "{stderr}"
    );

    let (code, stderr) = output_of({
        let mut c = kafkaesk();
        c.arg(format!("{}::not-a-path", service_dir().display()))
            .args(["--kafka-servers", "127.0.0.1:9092"]);
        c
    });
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("is not a Rust path"), "{stderr}");
}

#[test]
fn bad_kafka_settings_json_is_a_one_line_error() {
    let (code, stderr) = output_of({
        let mut c = kafkaesk();
        c.arg(service_dir()).args([
            "--kafka-servers",
            "127.0.0.1:9092",
            "--kafka-settings",
            "{\"security.protocol\": ",
        ]);
        c
    });
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("--kafka-settings") && stderr.contains("not valid JSON"),
        "{stderr}"
    );
}

#[test]
fn an_unreachable_broker_is_a_one_line_error_with_exit_code_1() {
    let _build = BUILDS.blocking_lock();
    let (code, stderr) = output_of({
        let mut c = kafkaesk();
        c.arg(service_dir())
            .args(["--kafka-servers", "127.0.0.1:1"])
            .env_remove("RUST_LOG");
        c
    });
    assert_eq!(code, 1, "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains("cannot reach Kafka at 127.0.0.1:1")
            && errors[0].contains("--kafka-servers"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
}

/// Without `--kafka-servers`, the worker runs against a broker inside the
/// `kafkaesk` process that other processes reach at the printed address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_servers_an_embedded_broker_delivers_what_another_process_publishes() {
    let _build = BUILDS.lock().await;
    let mut command = kafkaesk();
    command
        .arg(service_dir())
        .env_remove("KAFKAESK_TOPIC_PREFIX")
        .env_remove("KAFKAESK_EMBEDDED_BROKER");
    let mut worker = Worker::start(command);
    let banner = worker.wait_for_line("embedded broker listening on", Duration::from_secs(900));
    let servers = banner
        .split_whitespace()
        .skip_while(|word| *word != "on")
        .nth(1)
        .expect("address after `listening on`")
        .to_owned();
    worker.wait_for("partitions assigned", Duration::from_secs(120));

    // This test process is the other process: it publishes to the printed address.
    let app = kafkaesk::Application::builder()
        .kafka_servers([servers.clone()])
        .build()
        .unwrap();
    app.publish_and_wait(
        "orders.created",
        &service::Order {
            id: 99,
            item: "lamp".into(),
            quantity: 1,
        },
    )
    .await
    .unwrap();
    worker.wait_for("handled order 99 (1 x lamp)", Duration::from_secs(60));

    // Ctrl-C: the broker stays up in `kafkaesk` until its worker has stopped.
    let (code, output) = worker.interrupt(Duration::from_secs(15));
    assert_eq!(code, 0, "{}", output.join("\n"));
}

/// `--replay-dead-letters` puts dead-lettered records back on their topic and
/// exits without running the handlers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_dead_letters_republishes_to_the_source_topic_and_exits() {
    use kafkaesk::dead_letter::{DLQ_ATTEMPTS, DLQ_SUBSCRIPTION, DLQ_TOPIC};
    let kafka = require_broker();
    let prefix = unique_prefix("cli-replay");
    let source = format!("{prefix}orders.created");
    let order = br#"{"schema":"Order:1","data":{"id":5,"item":"pen","quantity":3}}"#;
    let app = kafkaesk::Application::builder()
        .kafka_servers([kafka.clone()])
        .topic_prefix(&prefix)
        .build()
        .unwrap();
    // The topic it was consumed from: replay writes only to topics that exist.
    kafkaesk_tests::create_topic(&kafka, &source).await;
    app.raw_publish("orders.dead", order.to_vec())
        .key("order-5")
        .header(DLQ_TOPIC, &source)
        .header(DLQ_SUBSCRIPTION, "handle_order")
        .header(DLQ_ATTEMPTS, "1")
        .header("trace", "t-1")
        .wait()
        .await
        .unwrap();

    let _build = BUILDS.lock().await;
    let mut command = kafkaesk();
    command.arg(service_dir()).args([
        "--kafka-servers",
        &kafka,
        "--topic-prefix",
        &prefix,
        "--replay-dead-letters",
        "orders.dead",
    ]);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("run kafkaesk");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("replayed 1 dead-lettered record(s) from orders.dead"),
        "{stdout}"
    );
    assert!(!stdout.contains("handled order"), "{stdout}");

    let values = kafkaesk_tests::read_all(&source, Duration::from_secs(3));
    assert_eq!(values, [order.to_vec()]);
}
