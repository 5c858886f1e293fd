//! `kafkaesk read`, `kafkaesk streams` and `kafkaesk groups` against the test
//! broker: typed messages published with kafkaesk come back as JSON lines
//! (forward, limited, backward, from an offset, per partition, following),
//! the stream is listed with its partitions and messages, and a group that
//! consumed it with its lag; and the errors say what to fix.
//!
//! It lives beside the other CLI tests rather than in the top-level `tests/`:
//! only a test of the `kafkaesk-cli` package gets the binary from cargo
//! (`CARGO_BIN_EXE_kafkaesk`), and a test cannot build it itself, since
//! cargo holds the target directory's lock while tests run.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kafkaesk::admin::StreamOptions;
use kafkaesk::{Application, Subscription};
use kafkaesk_tests::{app_builder, require_broker, unique_prefix};
use serde_json::Value;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct CliOrder {
    pub id: u64,
}

impl kafkaesk::Schema for CliOrder {
    const ID: &'static str = "CliOrder";
}

/// The command with the test broker and prefix, and nothing from the
/// environment of whoever runs the tests.
fn kafkaesk(prefix: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kafkaesk"));
    command
        .args(args)
        .env_remove("KAFKAESK_KAFKA_SETTINGS")
        .env("KAFKAESK_KAFKA_SERVERS", require_broker())
        .env("KAFKAESK_TOPIC_PREFIX", prefix);
    command
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(mut command: Command) -> Run {
    let output = command.output().expect("run kafkaesk");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The JSON lines of a successful run.
fn json_lines(prefix: &str, args: &[&str]) -> Vec<Value> {
    let out = run(kafkaesk(prefix, args));
    assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
    out.stdout
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|err| panic!("{args:?}: not JSON ({err}): {line}"))
        })
        .collect()
}

/// The order ids of `read` lines, in order.
fn ids(lines: &[Value]) -> Vec<u64> {
    lines
        .iter()
        .map(|l| l["message"]["data"]["id"].as_u64().expect("an order id"))
        .collect()
}

/// Where a published order landed.
#[derive(Debug, Clone, Copy)]
struct Landed {
    id: u64,
    partition: i32,
    offset: i64,
}

async fn publish(app: &Application, id: u64, partition: i32, key: Option<&[u8]>) -> Landed {
    let order = CliOrder { id };
    let mut publish = app
        .publish("orders", &order)
        .partition(partition)
        .header("trace", "a")
        .header("trace", "b")
        .header("bin", [0xff, 0x01]);
    if let Some(key) = key {
        publish = publish.key(key);
    }
    let delivery = publish.wait().await.expect("publish");
    // Records are read in timestamp order across partitions: keep them apart.
    tokio::time::sleep(Duration::from_millis(10)).await;
    Landed {
        id,
        partition: delivery.partition,
        offset: delivery.offset,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_streams_and_groups_show_what_the_broker_holds() {
    let prefix = unique_prefix("cli-read");
    let group = format!("{prefix}billing");
    let app = app_builder(&prefix)
        .subscribe(
            Subscription::new("orders", |_: CliOrder| async {})
                .with_name("billing")
                .with_group(group.clone()),
        )
        .build()
        .unwrap();
    app.create_stream(
        "orders",
        StreamOptions::new()
            .partitions(2)
            .retention(Duration::from_secs(3600)),
    )
    .await
    .unwrap();
    let landed = [
        publish(&app, 1, 0, Some(b"customer-1")).await,
        publish(&app, 2, 1, Some(b"customer-2")).await,
        publish(&app, 3, 0, Some(&[0xff, 0xfe])).await,
        publish(&app, 4, 1, None).await,
    ];

    // Forward: every record, oldest first, with its position, key, headers
    // and envelope.
    let lines = json_lines(&prefix, &["read", "orders"]);
    assert_eq!(ids(&lines), [1, 2, 3, 4], "{lines:#?}");
    for (line, landed) in lines.iter().zip(&landed) {
        assert_eq!(line["stream"], "orders", "{line}");
        assert_eq!(line["topic"], format!("{prefix}orders"), "{line}");
        assert_eq!(line["message"]["data"]["id"], landed.id, "{line}");
        assert_eq!(line["partition"], landed.partition, "{line}");
        assert_eq!(line["offset"], landed.offset, "{line}");
        assert!(line["timestamp"].as_i64().is_some_and(|t| t > 0), "{line}");
        assert_eq!(line["json"], true, "{line}");
        assert_eq!(line["message"]["schema"], "CliOrder:1", "{line}");
        let headers = line["headers"].as_array().expect("headers are pairs");
        assert!(
            headers.starts_with(&[
                serde_json::json!(["trace", "a"]),
                serde_json::json!(["trace", "b"]),
                serde_json::json!(["bin", {"base64": "/wE="}]),
            ]),
            "{line}"
        );
    }
    assert_eq!(lines[0]["key"], "customer-1");
    assert_eq!(lines[2]["key"], serde_json::json!({"base64": "//4="}));
    assert_eq!(lines[3]["key"], Value::Null);

    assert_eq!(
        ids(&json_lines(&prefix, &["read", "orders", "--limit", "2"])),
        [1, 2]
    );
    assert_eq!(
        ids(&json_lines(
            &prefix,
            &["read", "orders", "--backward", "--limit", "1"]
        )),
        [4]
    );
    // Offset 1 in every partition read: the second record of each.
    assert_eq!(
        ids(&json_lines(&prefix, &["read", "orders", "--from", "1"])),
        [3, 4]
    );
    assert_eq!(
        ids(&json_lines(
            &prefix,
            &["read", "orders", "--partition", "1"]
        )),
        [2, 4]
    );
    assert_eq!(
        ids(&json_lines(
            &prefix,
            &[
                "read",
                "ord*",
                "--partition",
                "0",
                "--partition",
                "1",
                "--from",
                "-1h"
            ]
        )),
        [1, 2, 3, 4]
    );

    // A value that is not JSON is its text (or base64), marked.
    app.raw_publish("notes", b"plain text".to_vec())
        .wait()
        .await
        .unwrap();
    let notes = json_lines(&prefix, &["read", "notes"]);
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0]["json"], false);
    assert_eq!(notes[0]["message"], "plain text");

    // streams: the partitions and messages of each stream under the prefix.
    let streams = json_lines(&prefix, &["streams", "--json"]);
    let orders = streams
        .iter()
        .find(|s| s["stream"] == "orders")
        .unwrap_or_else(|| panic!("orders not listed: {streams:?}"));
    assert_eq!(orders["partitions"], 2, "{orders}");
    assert_eq!(orders["messages"], 4, "{orders}");
    assert_eq!(orders["retention_ms"], 3_600_000, "{orders}");
    assert!(
        streams.iter().any(|s| s["stream"] == "notes"),
        "{streams:?}"
    );
    let table = run(kafkaesk(&prefix, &["streams", "ord*"]));
    assert_eq!(table.code, 0, "{}", table.stderr);
    let rows: Vec<Vec<&str>> = table
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 2, "{}", table.stdout);
    assert_eq!(
        rows[0][..3],
        ["STREAM", "PARTITIONS", "MESSAGES"],
        "{}",
        table.stdout
    );
    assert_eq!(rows[1][..4], ["orders", "2", "4", "1h"], "{}", table.stdout);

    // groups: a group that consumed the four, then one more published.
    assert_eq!(
        app.consume_for(4, Duration::from_secs(60)).await.unwrap(),
        4
    );
    let lag_of_group = || {
        json_lines(&prefix, &["groups", &group, "--json"])
            .into_iter()
            .find(|l| l["group"] == group.as_str() && l["stream"] == "orders")
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut line = lag_of_group();
    while line.as_ref().is_none_or(|l| l["lag"] != 0) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(300)).await;
        line = lag_of_group();
    }
    let line = line.unwrap_or_else(|| panic!("group {group} not listed"));
    assert_eq!(line["lag"], 0, "{line}");
    publish(&app, 5, 1, None).await;
    let line = lag_of_group().expect("the group is still listed");
    assert_eq!(line["lag"], 1, "{line}");
    assert_eq!(
        line["partitions"],
        serde_json::json!([
            {"partition": 0, "committed": 2, "end": 2, "lag": 0},
            {"partition": 1, "committed": 2, "end": 3, "lag": 1},
        ]),
        "{line}"
    );
    let table = run(kafkaesk(&prefix, &["groups", &group]));
    assert_eq!(table.code, 0, "{}", table.stderr);
    let row: Vec<&str> = table
        .stdout
        .lines()
        .find(|l| l.starts_with(&group))
        .unwrap_or_else(|| panic!("no row for {group}: {}", table.stdout))
        .split_whitespace()
        .collect();
    assert_eq!(row.first(), Some(&group.as_str()));
    assert_eq!(row[row.len() - 2..], ["orders", "1"], "{row:?}");
    app.finalize().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn following_prints_new_records_until_sigint_and_a_closed_pipe_ends_quietly() {
    let prefix = unique_prefix("cli-follow");
    let app = app_builder(&prefix).build().unwrap();
    app.create_stream("orders", StreamOptions::new())
        .await
        .unwrap();
    publish(&app, 1, 0, None).await;

    let mut child = kafkaesk(&prefix, &["read", "orders", "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kafkaesk read --follow");
    let (tx, lines) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next_id = |lines: &std::sync::mpsc::Receiver<String>| {
        let line = lines
            .recv_timeout(Duration::from_secs(30))
            .expect("a line within 30 s");
        let value: Value = serde_json::from_str(&line).expect("a JSON line");
        value["message"]["data"]["id"].as_u64()
    };
    assert_eq!(next_id(&lines), Some(1));
    // Lines go out as records arrive, not when a buffer fills.
    publish(&app, 2, 0, None).await;
    assert_eq!(next_id(&lines), Some(2));
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let output = child.wait_with_output().expect("wait for kafkaesk");
    let _ = reader.join();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // `| head -1`: the reader goes away after one line; the next write ends
    // the command with exit code 0 and nothing on stderr.
    let mut child = kafkaesk(&prefix, &["read", "orders", "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kafkaesk read --follow");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut first = String::new();
    stdout.read_line(&mut first).expect("a first line");
    drop(stdout);
    publish(&app, 3, 0, None).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("poll kafkaesk").is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    if child.try_wait().expect("poll kafkaesk").is_none() {
        let _ = child.kill();
        panic!("kafkaesk read --follow went on after its stdout closed");
    }
    let output = child.wait_with_output().expect("wait for kafkaesk");
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&output.stderr), "");
    app.finalize().await.unwrap();
}

#[test]
fn errors_say_what_to_fix_with_exit_code_2() {
    // No servers: these commands never start an empty embedded broker.
    for args in [&["read", "orders"][..], &["streams"], &["groups"]] {
        let mut command = kafkaesk("p.", args);
        command.env_remove("KAFKAESK_KAFKA_SERVERS");
        let out = run(command);
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(
            out.stderr
                .starts_with("error: no Kafka servers: pass --kafka-servers")
                && out.stderr.contains("embedded broker listening on"),
            "{args:?}: {}",
            out.stderr
        );
        assert_eq!(out.stdout, "");
    }

    let out = run(kafkaesk("p.", &["read", "orders", "--from", "yesterday"]));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("--from") && out.stderr.contains("`yesterday` is not a position"),
        "{}",
        out.stderr
    );

    let out = run(kafkaesk(
        "p.",
        &["read", "orders", "--backward", "--follow"],
    ));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("--backward cannot be used with --follow"),
        "{}",
        out.stderr
    );

    // `run` takes any target, a command's name included.
    let out = run(kafkaesk("p.", &["run", "read"]));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.starts_with("error: no crate `read`"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_stream_that_does_not_exist_is_an_error_with_exit_code_1() {
    let prefix = unique_prefix("cli-missing");
    let out = run(kafkaesk(&prefix, &["read", "nothing-here"]));
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.starts_with("error: ") && out.stderr.contains("no stream matches"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert_eq!(out.stdout, "");
}

/// `--kafka-settings-file` carries SASL credentials to `streams` without
/// putting them on the command line, which `ps` shows.
#[test]
fn a_settings_file_authenticates_a_command_on_the_sasl_listener() {
    let env = kafkaesk_tests::BrokerEnv::shared();
    let servers = env.get("KAFKAESK_BOOTSTRAP_SASL_PLAINTEXT");
    let password = env.get("KAFKAESK_SASL_PLAIN_PASSWORD");
    let prefix = unique_prefix("cli-settings-file");
    let dir = std::env::temp_dir().join(&prefix);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("kafka.json");
    let settings = serde_json::json!({
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "PLAIN",
        "sasl.username": env.get("KAFKAESK_SASL_PLAIN_USERNAME"),
        "sasl.password": password,
    });
    std::fs::write(&file, settings.to_string()).unwrap();
    let path = file.to_string_lossy().into_owned();

    let mut with_file = kafkaesk(&prefix, &["streams", "--kafka-settings-file", &path]);
    with_file.env("KAFKAESK_KAFKA_SERVERS", &servers);
    let out = run(with_file);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stdout.contains(&password) && !out.stderr.contains(&password));

    // Without it, the listener refuses: the file is what authenticated.
    let mut without = kafkaesk(&prefix, &["streams"]);
    without.env("KAFKAESK_KAFKA_SERVERS", &servers);
    let out = run(without);
    assert_eq!(out.code, 1, "{}", out.stderr);
    std::fs::remove_dir_all(&dir).unwrap();
}
