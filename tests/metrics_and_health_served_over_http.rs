//! `--metrics-addr` serves Prometheus metrics with Python kafkaesk's names
//! and exact counts, consumer lag that drains to 0, and a `/health` that
//! turns 503 when a consumer stops and 200 when it runs again.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafkaesk::worker::{ConnectionOptions, WorkerOptions};
use kafkaesk::{Application, ErrorPolicy, Subscription};
use kafkaesk_tests::{app_builder, free_port, http_get, require_broker, unique_prefix};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Order {
    pub id: u32,
}

impl kafkaesk::Schema for Order {
    const ID: &'static str = "MetricsOrder";
}

/// The samples of `name` whose labels include every pair of `labels`, by
/// their full label set.
fn samples(text: &str, name: &str, labels: &[(&str, &str)]) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, "}"));
            if metric != name {
                return None;
            }
            let wanted = labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            wanted.then(|| {
                (
                    rest.trim_end_matches('}').to_owned(),
                    value.parse().unwrap(),
                )
            })
        })
        .collect()
}

fn total(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    samples(text, name, labels).values().sum()
}

/// Polls `/metrics` until `done` holds, for at most `timeout`.
async fn scrape_until(addr: &str, timeout: Duration, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let (status, text) = http_get(addr, "/metrics").await;
        assert_eq!(status, 200);
        if done(&text) || Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn orders_app(
    prefix: &str,
    group: &str,
    failing: Arc<AtomicBool>,
    policy: ErrorPolicy,
) -> Application {
    app_builder(prefix)
        .kafka_setting("statistics.interval.ms", "200")
        .subscribe(
            Subscription::new("orders", move |order: Order| {
                let failing = failing.clone();
                async move {
                    if failing.load(Ordering::SeqCst) && order.id.is_multiple_of(5) {
                        return Err(std::io::Error::other("order refused"));
                    }
                    Ok(())
                }
            })
            .with_name("orders")
            .with_group(group)
            .on_error(policy),
        )
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_serves_exact_counts_and_lag_drains_to_zero() {
    require_broker();
    let prefix = unique_prefix("metrics-http");
    let group = format!("{prefix}group");
    let topic = format!("{prefix}orders");
    let app = orders_app(
        &prefix,
        &group,
        Arc::new(AtomicBool::new(true)),
        ErrorPolicy::skip(),
    );

    for id in 0..20 {
        app.publish_and_wait("orders", &Order { id }).await.unwrap();
    }

    let addr = format!("127.0.0.1:{}", free_port());
    let options = WorkerOptions {
        connection: ConnectionOptions {
            kafka_servers: vec![require_broker()],
            topic_prefix: Some(prefix.clone()),
            ..ConnectionOptions::default()
        },
        metrics_addr: Some(addr.clone()),
        ..WorkerOptions::default()
    };
    let worker = tokio::spawn({
        let app = app.clone();
        async move { kafkaesk::worker::run(app, &options).await }
    });

    let consumed = |text: &str| {
        total(
            text,
            "kafkaesk_consumed_messages_total",
            &[("group_id", &group)],
        )
    };
    // Every partition that had records reports a lag, and it is 0.
    let zero_lag = |text: &str| {
        let partition = |labels: &String| {
            labels
                .split(',')
                .find(|l| l.starts_with("partition="))
                .map(str::to_owned)
        };
        let lag: BTreeMap<_, _> = samples(text, "kafkaesk_consumer_lag", &[("stream_id", &topic)])
            .into_iter()
            .filter_map(|(labels, v)| Some((partition(&labels)?, v)))
            .collect();
        let consumed = samples(
            text,
            "kafkaesk_consumed_topic_offset",
            &[("stream_id", &topic)],
        );
        !consumed.is_empty()
            && consumed
                .keys()
                .all(|labels| partition(labels).and_then(|p| lag.get(&p)) == Some(&0.0))
    };
    // The server comes up while the worker starts.
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(&addr).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing listens on --metrics-addr"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let text = scrape_until(&addr, Duration::from_secs(60), |t| {
        consumed(t) >= 20.0 && zero_lag(t)
    })
    .await;

    let published = [("stream_id", topic.as_str()), ("error", "none")];
    assert_eq!(
        total(&text, "kafkaesk_publish_messages_total", &published),
        20.0,
        "{text}"
    );
    assert_eq!(
        total(&text, "kafkaesk_published_messages_total", &published),
        20.0
    );
    assert_eq!(
        total(
            &text,
            "kafkaesk_published_messages_time_count",
            &[("stream_id", &topic)]
        ),
        20.0
    );
    let on_topic = |error| {
        [
            ("stream_id", topic.as_str()),
            ("group_id", group.as_str()),
            ("error", error),
        ]
    };
    assert_eq!(
        total(&text, "kafkaesk_consumed_messages_total", &on_topic("none")),
        16.0,
        "{text}"
    );
    assert_eq!(
        total(
            &text,
            "kafkaesk_consumed_messages_total",
            &on_topic("exception")
        ),
        4.0
    );
    assert_eq!(
        total(
            &text,
            "kafkaesk_skipped_messages_total",
            &[("subscription", "orders"), ("reason", "error_policy")]
        ),
        4.0
    );
    assert_eq!(
        total(
            &text,
            "kafkaesk_message_lead_time_count",
            &[("group_id", &group)]
        ),
        20.0
    );
    assert!(
        total(
            &text,
            "kafkaesk_consumed_messages_batch_size_count",
            &[("group_id", &group)]
        ) >= 1.0
    );
    assert!(
        samples(
            &text,
            "kafkaesk_consumed_message_elapsed_time_count",
            &[("stream_id", "orders")]
        )
        .keys()
        .all(|labels| labels.contains(&format!(
            "partition=\"TopicPartition(topic='{topic}', partition="
        ))),
        "Python's label for the batch time: {text}"
    );
    assert!(zero_lag(&text), "lag drains to 0: {text}");
    assert_eq!(
        total(&text, "kafkaesk_consumer_health", &[("group_id", &group)]),
        1.0
    );
    assert!(
        total(
            &text,
            "kafkaesk_consumer_rebalanced_total",
            &[("group_id", &group), ("event", "assigned")]
        ) >= 1.0
    );
    assert!(
        total(
            &text,
            "kafkaesk_kafka_action_total",
            &[("type", "producer_start"), ("error", "none")]
        ) >= 1.0
    );
    // Python's default buckets, and `_total` on counters as prometheus_client writes them.
    assert!(text.contains("# TYPE kafkaesk_consumed_messages_total counter"));
    assert!(text.contains(r#"le="0.075""#));

    let (status, body) = http_get(&addr, "/health").await;
    assert_eq!(status, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["healthy"], true);
    assert_eq!(health["consumers"][0]["subscription"], "orders");
    assert_eq!(health["consumers"][0]["running"], true);

    app.stop();
    worker.await.unwrap().unwrap();
    assert!(
        tokio::net::TcpStream::connect(&addr).await.is_err(),
        "the server stops with the worker"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_turns_503_when_a_consumer_stops_and_200_when_it_runs() {
    require_broker();
    let prefix = unique_prefix("metrics-health");
    let group = format!("{prefix}group");
    let failing = Arc::new(AtomicBool::new(true));
    let app = orders_app(&prefix, &group, failing.clone(), ErrorPolicy::stop());
    let server = kafkaesk::http::serve(&app, "127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().to_string();

    // A failing record stops the consumer, and with it the run.
    app.publish_and_wait("orders", &Order { id: 5 })
        .await
        .unwrap();
    let run = tokio::spawn({
        let app = app.clone();
        async move { app.run().await }
    });
    assert!(
        run.await.unwrap().is_err(),
        "the handler's error ends the run"
    );
    let (status, body) = http_get(&addr, "/health").await;
    assert_eq!(status, 503, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["consumers"][0]["running"], false);
    let (_, text) = http_get(&addr, "/metrics").await;
    assert_eq!(
        total(&text, "kafkaesk_consumer_health", &[("group_id", &group)]),
        0.0
    );
    assert_eq!(
        total(
            &text,
            "kafkaesk_consumed_messages_total",
            &[("group_id", &group), ("error", "exception")]
        ),
        1.0
    );

    // Fixed, it runs again and is healthy.
    failing.store(false, Ordering::SeqCst);
    let run = tokio::spawn({
        let app = app.clone();
        async move { app.run().await }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = http_get(&addr, "/health").await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "never healthy again: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, _) = http_get(&addr, "/nowhere").await;
    assert_eq!(status, 404);
    app.stop();
    run.await.unwrap().unwrap();
}

/// File descriptors this process holds.
fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Another process that opens `count` idle connections to `addr` and one
/// that sends half a request, and holds them until its stdin closes.
fn hold_connections(addr: &str, count: usize) -> std::process::Child {
    use std::io::BufRead;
    let script = r#"
import socket, sys
host, port = sys.argv[1].rsplit(":", 1)
held = [socket.create_connection((host, int(port))) for _ in range(int(sys.argv[2]))]
slow = socket.create_connection((host, int(port)))
slow.sendall(b"GET /metr")
print("open", flush=True)
sys.stdin.read()
"#;
    let mut child = std::process::Command::new("python3")
        .args(["-c", script, addr, &count.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs the connection holder");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "open", "the holder could not connect");
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_and_a_slow_client_neither_exhaust_descriptors_nor_stop_consumption() {
    require_broker();
    let prefix = unique_prefix("metrics-flood");
    let group = format!("{prefix}group");
    let app = orders_app(
        &prefix,
        &group,
        Arc::new(AtomicBool::new(false)),
        ErrorPolicy::stop(),
    );
    let server = kafkaesk::http::serve(&app, "127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().to_string();
    let consuming = tokio::spawn({
        let app = app.clone();
        async move { app.consume_forever().await }
    });
    let handled = |app: &Application| app.stats().get("orders").map_or(0, |s| s.handled);
    app.publish_and_wait("orders", &Order { id: 1 })
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while handled(&app) < 1 {
        assert!(
            Instant::now() < deadline,
            "the first order was never handled"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let before = open_descriptors();
    let addr_for_holder = addr.clone();
    let mut holder = tokio::task::spawn_blocking(move || hold_connections(&addr_for_holder, 600))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = open_descriptors();
    eprintln!("descriptors: {before} before 601 connections, {during} while they are held");
    // 64 served at once; the others closed as they come. Other tests in
    // this process open and close descriptors too: hence the margin.
    assert!(
        during < before + 300,
        "{before} descriptors before, {during} with 601 connections held"
    );
    for id in 2..=21 {
        app.publish_and_wait("orders", &Order { id }).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while handled(&app) < 21 {
        assert!(
            Instant::now() < deadline,
            "consumption stopped while the metrics port was flooded: {} handled",
            handled(&app)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Once they go, the port answers again.
    holder.kill().unwrap();
    holder.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let request = format!("GET /health HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response).await;
        if response.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/health does not answer after the flood: {response:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.stop();
    consuming.await.unwrap().unwrap();
}
