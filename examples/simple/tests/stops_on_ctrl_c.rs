//! The README's first command, `cargo run -p simple`, runs until Ctrl-C and
//! then stops: the last commit and the group's leave are bounded by the
//! `shutdown_timeout`, and no librdkafka call that waits blocks the async
//! threads the embedded broker runs on.

use std::process::Command;
use std::time::{Duration, Instant};

use kafkaesk_tests::{signal_and_wait, spawn_with_lines};

/// Five messages, as the README's run handles them.
const MESSAGES: usize = 5;

#[test]
fn ctrl_c_stops_the_example_on_its_embedded_broker() {
    let mut command = Command::new(env!("CARGO_BIN_EXE_simple"));
    command
        .env_remove("KAFKA")
        .env_remove("KAFKAESK_TOPIC_PREFIX")
        .env("RUST_LOG", "warn");
    let (mut child, lines) = spawn_with_lines(&mut command);
    let mut seen = Vec::new();
    let mut handled = 0;
    let mut running = false;
    let deadline = Instant::now() + Duration::from_secs(120);
    while handled < MESSAGES || !running {
        assert!(
            Instant::now() < deadline,
            "the example did not handle {MESSAGES} messages within 120 s:\n{}",
            seen.join("\n")
        );
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(200)) {
            handled += usize::from(line.starts_with("handled "));
            running |= line.contains("press Ctrl-C to stop");
            seen.push(line);
        }
    }
    // As in the report that found the hang: SIGINT about 10 s after the
    // start, with a timed commit or two behind the worker.
    std::thread::sleep(Duration::from_secs(6));

    let stopped = signal_and_wait(&mut child, libc::SIGINT, Duration::from_secs(15));
    while let Ok(line) = lines.recv_timeout(Duration::from_millis(100)) {
        seen.push(line);
    }
    let Some((status, took)) = stopped else {
        panic!(
            "still running 15 s after SIGINT (killed); output:\n{}",
            seen.join("\n")
        );
    };
    eprintln!("the example stopped {took:?} after SIGINT");
    let output = seen.join("\n");
    assert!(status.success(), "{status}; output:\n{output}");
    assert!(
        !output.contains("did not confirm the last commit"),
        "the last commit went unanswered:\n{output}"
    );
}
