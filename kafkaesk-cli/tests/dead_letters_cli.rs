//! `kafkaesk dead-letters STREAM` against the test broker: a real
//! application dead-letters records failing three ways (so every
//! `kafkaesk-dlq-*` header is genuine), and a hostile record is written into
//! the dead-letter stream directly. Then `list` counts them by group,
//! `show` prints them as `kafkaesk read` does and filters them, and
//! `replay` republishes only what its filters select, never twice, and
//! leaves the rest for a later replay; the hostile record is refused and
//! shown without its terminal escapes.
//!
//! Beside the other CLI tests: only a test of `kafkaesk-cli` gets the
//! binary from cargo (`CARGO_BIN_EXE_kafkaesk`).

use std::process::Command;
use std::time::Duration;

use kafkaesk::admin::StreamOptions;
use kafkaesk::dead_letter::{
    DLQ_ERROR, DLQ_GROUP, DLQ_OFFSET, DLQ_PARTITION, DLQ_SUBSCRIPTION, DLQ_TOPIC,
};
use kafkaesk::{ErrorPolicy, Subscription};
use kafkaesk_tests::{app_builder, create_topic, kafka, require_broker, unique_prefix};
use serde_json::Value;

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

fn run(prefix: &str, args: &[&str]) -> Run {
    let output = kafkaesk(prefix, args).output().expect("run kafkaesk");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The stdout of a successful run.
fn ok(prefix: &str, args: &[&str]) -> Run {
    let out = run(prefix, args);
    assert_eq!(
        out.code, 0,
        "{args:?}: stdout {} stderr {}",
        out.stdout, out.stderr
    );
    out
}

/// The JSON lines of a successful run.
fn json_lines(prefix: &str, args: &[&str]) -> Vec<Value> {
    ok(prefix, args)
        .stdout
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|err| panic!("{args:?}: not JSON ({err}): {line}"))
        })
        .collect()
}

/// The value of the first header `name` of a `show`/`read` line.
fn header<'v>(line: &'v Value, name: &str) -> Option<&'v Value> {
    line["headers"]
        .as_array()?
        .iter()
        .find(|pair| pair[0] == name)
        .map(|pair| &pair[1])
}

/// The messages of `orders` (raw text values), sorted.
fn orders(prefix: &str) -> Vec<String> {
    let mut values: Vec<String> = json_lines(prefix, &["read", "orders"])
        .iter()
        .map(|line| line["message"].as_str().expect("a text value").to_owned())
        .collect();
    values.sort();
    values
}

fn replay(prefix: &str, filters: &[&str]) -> Run {
    let mut args = vec!["dead-letters", "orders.dead", "replay"];
    args.extend_from_slice(filters);
    ok(prefix, &args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_shown_and_replayed_once() {
    let prefix = unique_prefix("cli-dlq");
    let group = format!("{prefix}billing");
    let app = app_builder(&prefix)
        .subscribe(
            Subscription::new("orders", |raw: Vec<u8>| async move {
                let text = String::from_utf8_lossy(&raw).into_owned();
                let error = if text.starts_with("parse") {
                    "cannot parse the order"
                } else if text.starts_with("timeout") {
                    "payment service timed out"
                } else if text.starts_with("stock") {
                    "out of stock"
                } else {
                    return Ok(());
                };
                Err(std::io::Error::other(error))
            })
            .with_name("billing")
            .with_group(group.clone())
            .on_error(ErrorPolicy::dead_letter("orders.dead")),
        )
        .build()
        .unwrap();
    // One partition each, so records are dead-lettered in the order
    // published, and the timeouts replayed first lie past records left out:
    // only the commit's metadata keeps them from being replayed twice.
    for stream in ["orders", "orders.dead"] {
        app.create_stream(stream, StreamOptions::new().partitions(1))
            .await
            .unwrap();
    }
    app.initialize().await.unwrap();
    let published = [
        "ok-1",
        "parse-1",
        "timeout-1",
        "stock-1",
        "timeout-2",
        "parse-2",
        "ok-2",
        "timeout-3",
    ];
    for value in published {
        app.raw_publish("orders", value.as_bytes().to_vec())
            .header("trace", value)
            .wait()
            .await
            .unwrap();
    }
    assert_eq!(
        app.consume_for(published.len(), Duration::from_secs(60))
            .await
            .unwrap(),
        published.len()
    );
    assert_eq!(app.stats()["billing"].dead_lettered, 6);
    // A hostile record, written straight into the dead-letter stream: it
    // names a topic that exists but the group never consumed, and an error
    // that is not UTF-8 and would retitle a terminal.
    create_topic(&kafka(), &format!("{prefix}payments")).await;
    app.raw_publish("orders.dead", b"pay me".to_vec())
        .header(DLQ_ERROR, b"\xff\xfe\x1b]0;pwned\x07 evil")
        .header(DLQ_TOPIC, format!("{prefix}payments"))
        .header(DLQ_PARTITION, "0")
        .header(DLQ_OFFSET, "0")
        .header(DLQ_SUBSCRIPTION, "billing")
        .header(DLQ_GROUP, group.as_str())
        .wait()
        .await
        .unwrap();
    // Committing the handled offsets is what shows the group consumed them.
    app.finalize().await.unwrap();
    let source = format!("{prefix}orders");

    // list: three groups of genuine dead letters and the hostile one.
    let listed = json_lines(&prefix, &["dead-letters", "orders.dead", "--json"]);
    assert_eq!(listed.len(), 1, "{listed:?}");
    let listed = &listed[0];
    assert_eq!(listed["total"], 7, "{listed}");
    assert_eq!(listed["stream"], "orders.dead");
    let groups = listed["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 4, "{listed}");
    let count_of = |error: &str| {
        groups
            .iter()
            .find(|g| g["error"].as_str().is_some_and(|e| e.contains(error)))
            .map(|g| {
                assert_eq!(g["subscription"], "billing", "{g}");
                assert!(g["oldest"].as_i64() <= g["newest"].as_i64(), "{g}");
                (g["count"].as_u64().unwrap(), g["topic"].clone())
            })
    };
    assert_eq!(
        count_of("timed out"),
        Some((3, Value::from(source.clone())))
    );
    assert_eq!(
        count_of("cannot parse"),
        Some((2, Value::from(source.clone())))
    );
    assert_eq!(
        count_of("out of stock"),
        Some((1, Value::from(source.clone())))
    );
    assert_eq!(
        count_of("evil").map(|(count, _)| count),
        Some(1),
        "{listed}"
    );
    assert_eq!(listed["other"], Value::Null);
    // The table: one row per group, the hostile error escaped.
    let table = ok(&prefix, &["dead-letters", "orders.dead"]).stdout;
    assert!(
        !table.chars().any(|c| c.is_control() && c != '\n'),
        "{table:?}"
    );
    assert_eq!(table.lines().count(), 6, "{table}");
    assert!(table.contains("\\u{1b}]0;pwned\\u{7} evil"), "{table}");
    assert!(
        table
            .lines()
            .last()
            .unwrap()
            .starts_with("total: 7 record(s) in 4 group(s)"),
        "{table}"
    );

    // show: JSON lines with the dead-letter headers, and filters.
    let shown = json_lines(&prefix, &["dead-letters", "orders.dead", "show"]);
    assert_eq!(shown.len(), 7);
    for line in &shown {
        assert_eq!(line["stream"], "orders.dead", "{line}");
        assert_eq!(
            header(line, DLQ_SUBSCRIPTION),
            Some(&Value::from("billing"))
        );
        assert!(header(line, DLQ_ERROR).is_some(), "{line}");
    }
    let genuine = shown
        .iter()
        .find(|l| l["message"] == "timeout-2")
        .expect("timeout-2 dead-lettered");
    assert_eq!(
        header(genuine, DLQ_TOPIC),
        Some(&Value::from(source.clone()))
    );
    assert_eq!(
        header(genuine, DLQ_GROUP),
        Some(&Value::from(group.clone()))
    );
    assert_eq!(header(genuine, "trace"), Some(&Value::from("timeout-2")));
    assert!(header(genuine, DLQ_OFFSET).is_some() && header(genuine, DLQ_PARTITION).is_some());
    // The hostile error is not UTF-8: base64, as `read` shows such bytes.
    let hostile = shown.iter().find(|l| l["message"] == "pay me").unwrap();
    assert!(header(hostile, DLQ_ERROR).unwrap()["base64"].is_string());
    let show = |filters: &[&str]| {
        let mut args = vec!["dead-letters", "orders.dead", "show"];
        args.extend_from_slice(filters);
        let mut values: Vec<String> = json_lines(&prefix, &args)
            .iter()
            .map(|l| l["message"].as_str().unwrap().to_owned())
            .collect();
        values.sort();
        values
    };
    assert_eq!(
        show(&["--error-contains", "timed out"]),
        ["timeout-1", "timeout-2", "timeout-3"]
    );
    assert_eq!(
        show(&["--subscription", "billing", "--error-contains", "parse"]),
        ["parse-1", "parse-2"]
    );
    assert!(show(&["--subscription", "nobody"]).is_empty());
    assert_eq!(show(&["--limit", "2"]).len(), 2);
    assert_eq!(show(&["--since", "1h"]).len(), 7);
    assert!(show(&["--since", "2099-01-01T00:00:00Z"]).is_empty());
    let bad = run(
        &prefix,
        &["dead-letters", "orders.dead", "show", "--since", "soon"],
    );
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("not a time"), "{}", bad.stderr);

    // replay, filtered: only the timeouts go back to the source topic.
    let before = orders(&prefix);
    assert_eq!(before.len(), published.len());
    let first = replay(&prefix, &["--error-contains", "timed out"]);
    assert_eq!(
        first.stdout.trim(),
        "republished 3, refused 0, left 4",
        "{}",
        first.stderr
    );
    let mut expected: Vec<String> = published.iter().map(|v| (*v).to_owned()).collect();
    expected.extend(["timeout-1", "timeout-2", "timeout-3"].map(String::from));
    expected.sort();
    assert_eq!(orders(&prefix), expected);
    // Republished as they were consumed: their own headers, none of kafkaesk's.
    for line in json_lines(&prefix, &["read", "orders"]) {
        let headers = line["headers"].as_array().unwrap();
        assert_eq!(headers.len(), 1, "{line}");
        assert_eq!(headers[0][0], "trace", "{line}");
    }

    // The timeouts replayed lie past the first parse error, left out: the
    // replay group's commit stops there and lists them in its metadata.
    let replay_group = format!("kafkaesk-replay.{prefix}orders.dead");
    assert_eq!(
        kafkaesk_tests::committed_offsets(&replay_group, &format!("{prefix}orders.dead"), 1),
        [(0, 0)]
    );

    // The same replay again republishes nothing new.
    let again = replay(&prefix, &["--error-contains", "timed out"]);
    assert_eq!(
        again.stdout.trim(),
        "republished 0, refused 0, left 4",
        "{}",
        again.stderr
    );

    // A limited replay takes one parse error and leaves the other.
    let limited = replay(&prefix, &["--error-contains", "parse", "--limit", "1"]);
    assert_eq!(
        limited.stdout.trim(),
        "republished 1, refused 0, left 3",
        "{}",
        limited.stderr
    );

    // Unfiltered, the rest: the other parse error and the stock one go back,
    // the hostile record is refused, shown without its escapes.
    let rest = replay(&prefix, &[]);
    assert_eq!(
        rest.stdout.trim(),
        "republished 2, refused 1, left 0",
        "{}",
        rest.stderr
    );
    assert!(rest.stderr.contains("refused "), "{}", rest.stderr);
    assert!(rest.stderr.contains("has no commit on"), "{}", rest.stderr);
    assert!(!rest.stderr.contains('\x1b'), "{:?}", rest.stderr);
    expected.extend(["parse-1", "parse-2", "stock-1"].map(String::from));
    expected.sort();
    assert_eq!(orders(&prefix), expected);
    assert!(
        kafkaesk_tests::read_all(&format!("{prefix}payments"), Duration::from_secs(1)).is_empty()
    );

    // Everything is settled: nothing more to do.
    let done = replay(&prefix, &[]);
    assert_eq!(
        done.stdout.trim(),
        "republished 0, refused 0, left 0",
        "{}",
        done.stderr
    );
    assert!(!done.stderr.contains("refused"), "{}", done.stderr);
    // And the library's replay agrees: nothing left for it either.
    let replayed = app
        .replay_dead_letters("orders.dead", Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(replayed, kafkaesk::Replayed::default());
}

#[test]
fn a_missing_stream_and_a_wrong_flag_are_one_line_errors() {
    let prefix = unique_prefix("cli-dlq-missing");
    let missing = run(&prefix, &["dead-letters", "nothing.dead"]);
    assert_eq!(missing.code, 1, "{}", missing.stderr);
    assert!(
        missing.stderr.contains("does not exist"),
        "{}",
        missing.stderr
    );
    let replay_json = run(
        &prefix,
        &["dead-letters", "nothing.dead", "replay", "--json"],
    );
    assert_eq!(replay_json.code, 2, "{}", replay_json.stderr);
    assert!(
        replay_json.stderr.contains("--json is for `list`"),
        "{}",
        replay_json.stderr
    );
    let missing_replay = run(&prefix, &["dead-letters", "nothing.dead", "replay"]);
    assert_eq!(missing_replay.code, 1, "{}", missing_replay.stderr);
    assert!(
        missing_replay
            .stdout
            .contains("republished 0, refused 0, left 0"),
        "{}",
        missing_replay.stdout
    );
}
