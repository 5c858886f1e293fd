//! Secrets in `kafka_settings` never reach the logs: neither kafkaesk's own
//! events nor librdkafka's, even with librdkafka's `debug=all`, which dumps
//! the client configuration.
//!
//! librdkafka logs from its own threads, which a thread-scoped subscriber does
//! not see, so this test installs a global one. That is why it is a test
//! binary of its own rather than a module of the shared acceptance suite.
//!
//! Talks to the broker at `KAFKA` (default `127.0.0.1:9092`); start one with
//! `scripts/broker.sh`.

use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kafkaesk::{Application, Error, Subscription};

/// Every librdkafka property that carries a secret, with a value that cannot
/// occur in a log by accident.
/// (`sasl.oauthbearer.client.secret` is missing: this librdkafka is built
/// without libcurl and refuses it; the acceptance suite covers that error.)
const SECRETS: [(&str, &str); 4] = [
    ("sasl.password", "S3CRET-sasl-password-91f2"),
    ("ssl.key.password", "S3CRET-ssl-key-password-4c07"),
    ("ssl.keystore.password", "S3CRET-keystore-password-b3a9"),
    (
        "sasl.oauthbearer.config",
        "principal=alice extension_token=S3CRET-oauth-config-0e5c",
    ),
];

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn kafka() -> String {
    let address = std::env::var("KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".to_owned());
    let reachable = address
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .is_some_and(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok());
    assert!(
        reachable,
        "no Kafka broker at {address}; start one with `scripts/broker.sh`"
    );
    address
}

#[kafkaesk::schema("Note")]
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Note {
    pub text: String,
}

fn app(servers: &str, prefix: &str) -> kafkaesk::ApplicationBuilder {
    Application::builder()
        .kafka_servers([servers])
        .topic_prefix(prefix)
        .kafka_settings(SECRETS)
        .kafka_setting("sasl.username", "alice-not-a-secret")
        // As verbose as librdkafka gets, configuration dump included.
        .kafka_setting("debug", "all")
        // Long enough for a first send to a new topic on a loaded machine
        // (3 s was not: debug=all slows every client thread), short enough
        // that a broken broker fails the test instead of hanging it.
        .kafka_setting("message.timeout.ms", "30000")
}

fn assert_no_secret(what: &str, text: &str) {
    for (key, secret) in SECRETS {
        assert!(
            !text.contains(secret),
            "{what} shows the value of {key}:\n{}",
            text.lines()
                .filter(|l| l.contains(secret))
                .take(5)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    assert!(!text.contains("S3CRET"), "{what} shows a secret");
}

#[test]
fn secrets_never_reach_the_logs_against_an_unreachable_and_a_real_broker() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish(),
    )
    .expect("the only subscriber of this test binary");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let prefix = format!("t-secret-logs-{}-{nanos}.", std::process::id());

    runtime.block_on(async {
        // Nothing listens on port 1: every connection attempt fails and is logged.
        let unreachable = app("127.0.0.1:1", &prefix).build().unwrap();
        let err = unreachable
            .check_connection(Duration::from_secs(3))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::BrokerUnreachable { .. }), "{err:?}");
        assert_no_secret("the unreachable-broker error", &format!("{err} {err:?}"));
        unreachable.finalize().await.ok();

        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let real = app(&kafka(), &prefix)
            .partitions(1)
            .subscribe(
                Subscription::new("notes", move |note: Note| {
                    let sink = sink.clone();
                    async move { sink.lock().unwrap().push(note) }
                })
                .with_group(format!("{prefix}logs")),
            )
            .build()
            .unwrap();
        real.initialize().await.unwrap();
        let note = Note {
            text: "hello".into(),
        };
        real.publish_and_wait("notes", &note).await.unwrap();
        // A record the subscription cannot decode, so the unhandled path logs too.
        real.raw_publish("notes", b"garbage".to_vec())
            .wait()
            .await
            .unwrap();
        assert_eq!(
            real.consume_for(2, Duration::from_secs(30)).await.unwrap(),
            2
        );
        real.finalize().await.unwrap();
        assert_eq!(*seen.lock().unwrap(), vec![note]);
    });
    drop(runtime);

    let logs = captured.text();
    // The capture must have seen librdkafka's configuration dump, or a clean
    // result would prove nothing.
    for (key, _) in SECRETS {
        assert!(
            logs.contains(&format!("{key} = [redacted]")),
            "no redacted dump of {key} in {} bytes of logs",
            logs.len()
        );
    }
    assert!(
        logs.contains("127.0.0.1:1") && logs.contains("Connection refused"),
        "the failed connection attempts are logged"
    );
    assert!(
        logs.contains("was not handled"),
        "the unhandled record is logged"
    );
    assert_no_secret("the logs", &logs);
}
