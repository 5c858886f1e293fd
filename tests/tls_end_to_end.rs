//! TLS end to end, on the TLS listeners of the shared Apache Kafka broker
//! that `scripts/broker.sh` starts: SSL (server certificate only), MTLS (a
//! client certificate required) and SASL_SSL. Their addresses and the test
//! CA, client certificate and key come from the broker's `broker.env` (see
//! `BrokerEnv::shared`); the server certificate, signed by that CA, names
//! `localhost` and `127.0.0.1`, the address the broker advertises, so
//! librdkafka verifies the chain and (its default
//! `ssl.endpoint.identification.algorithm=https`) the name on every
//! connection it opens, bootstrap and broker alike.
//!
//! The tests prove that a client trusting the CA publishes and consumes,
//! that one without it (or trusting another CA) is refused with an error
//! naming the certificate problem, that mutual TLS works with a client
//! certificate and is refused without one, and that SCRAM works over TLS.
//! Each test uses a topic prefix and group of its own, so they run in
//! parallel on the one broker.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use kafkaesk::{Application, ApplicationBuilder, Error};
use kafkaesk_tests::{round_trip, unique_prefix, BrokerEnv};

/// Generous: a round trip takes a few seconds, more on a loaded machine.
const SANITY_BOUND: Duration = Duration::from_secs(90);

fn env(key: &str) -> String {
    BrokerEnv::shared().get(key)
}

/// An application on the broker's `listener` (`SSL`, `MTLS`, `SASL_SSL`)
/// speaking `protocol` (`ssl`, `sasl_ssl`), with `settings` on top.
fn tls_app(
    prefix: &str,
    listener: &str,
    protocol: &str,
    settings: &[(&str, String)],
) -> ApplicationBuilder {
    let mut builder = Application::builder()
        .kafka_servers([env(&format!("KAFKAESK_BOOTSTRAP_{listener}"))])
        .topic_prefix(prefix)
        .partitions(1)
        .auto_commit_interval(Duration::from_millis(500))
        .kafka_setting("security.protocol", protocol);
    for (key, value) in settings {
        builder = builder.kafka_setting(*key, value);
    }
    builder
}

/// The broker's CA as `ssl.ca.location`.
fn trusting_the_ca() -> (&'static str, String) {
    ("ssl.ca.location", env("KAFKAESK_TLS_CA"))
}

/// The client certificate and key of `broker.env`, signed by the broker's CA.
fn client_certificate() -> [(&'static str, String); 2] {
    [
        ("ssl.certificate.location", env("KAFKAESK_TLS_CLIENT_CERT")),
        ("ssl.key.location", env("KAFKAESK_TLS_CLIENT_KEY")),
    ]
}

/// [`round_trip`] on the broker's `listener`, speaking `protocol`, with
/// `settings`.
async fn tls_round_trip(listener: &str, protocol: &str, settings: &[(&str, String)]) {
    let started = Instant::now();
    let prefix = unique_prefix(&format!("tls-{}", listener.to_lowercase()));
    let builder = tls_app(&prefix, listener, protocol, settings);
    round_trip(builder, &prefix, &format!("over {listener}")).await;
    assert!(started.elapsed() < SANITY_BOUND, "{:?}", started.elapsed());
}

/// `check_connection` of `app` fails with `BrokerUnreachable` for the
/// servers of `listener`; returns the error's text.
async fn refused(app: &Application, listener: &str) -> String {
    let err = app
        .check_connection(Duration::from_secs(5))
        .await
        .unwrap_err();
    let Error::BrokerUnreachable { servers, .. } = &err else {
        panic!("expected BrokerUnreachable, got {err:?}");
    };
    assert_eq!(servers, &env(&format!("KAFKAESK_BOOTSTRAP_{listener}")));
    let health = app.health_check().await;
    assert!(!health.producer, "{health:?}");
    eprintln!("refused on {listener}: {err}");
    err.to_string()
}

/// The words of an error for a server certificate the client does not
/// trust: OpenSSL's reason, and the setting to change.
fn assert_names_the_certificate_problem(text: &str) {
    assert!(
        text.contains("SSL handshake failed")
            && text.contains("certificate verify failed")
            && text.contains("ssl.ca.location"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_with_the_ca_publishes_and_consumes_over_tls() {
    tls_round_trip("SSL", "ssl", &[trusting_the_ca()]).await;
}

/// Without the CA (librdkafka then trusts the system's CAs only) the client
/// cannot verify the server, and the error says so and what to set, rather
/// than only that the broker is unreachable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_the_ca_fails_with_a_clear_error() {
    let started = Instant::now();
    let app = tls_app(&unique_prefix("tls-no-ca"), "SSL", "ssl", &[])
        .build()
        .unwrap();
    let text = refused(&app, "SSL").await;
    assert_names_the_certificate_problem(&text);
    assert!(started.elapsed() < SANITY_BOUND, "{:?}", started.elapsed());
}

/// A CA of its own, made with `openssl`, in a directory removed on drop.
struct OtherCa {
    dir: PathBuf,
}

impl OtherCa {
    fn generate() -> OtherCa {
        let dir = std::env::temp_dir().join(unique_prefix("tls-other-ca").trim_end_matches('.'));
        std::fs::create_dir_all(&dir).unwrap();
        let output = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
            .args(["-subj", "/CN=kafkaesk other test CA"])
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .arg("-keyout")
            .arg(dir.join("ca.key"))
            .arg("-out")
            .arg(dir.join("ca.pem"))
            .output()
            .expect("run openssl");
        assert!(
            output.status.success(),
            "openssl req failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        OtherCa { dir }
    }

    /// The CA's certificate, for `ssl.ca.location`.
    fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
}

impl Drop for OtherCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A client that trusts a CA, just not the one that signed the broker's
/// certificate, is refused as one without any: the chain is verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trusting_another_ca_fails_with_a_clear_error() {
    let started = Instant::now();
    let other = OtherCa::generate();
    let app = tls_app(
        &unique_prefix("tls-other-ca"),
        "SSL",
        "ssl",
        &[("ssl.ca.location", other.ca().to_string_lossy().into_owned())],
    )
    .build()
    .unwrap();
    let text = refused(&app, "SSL").await;
    assert_names_the_certificate_problem(&text);
    assert!(started.elapsed() < SANITY_BOUND, "{:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_client_with_a_certificate_publishes_and_consumes() {
    let [cert, key] = client_certificate();
    tls_round_trip("MTLS", "ssl", &[trusting_the_ca(), cert, key]).await;
}

/// The MTLS listener requires a client certificate: a client trusting the
/// CA but presenting none is refused there, while the same settings connect
/// to the SSL listener, so the refusal is for the missing certificate.
///
/// With TLS 1.3 the client finishes its side of the handshake before the
/// server has checked its (empty) certificate, so librdkafka learns of the
/// refusal from the alert it reads in answer to its first request:
/// "Receive failed: error:0A000412:SSL routines::sslv3 alert bad
/// certificate: SSL alert number 42 (after 1ms in state APIVERSION_QUERY)".
/// Java 17 sends `bad_certificate` ("Empty client certificate chain" in the
/// JDK); TLS 1.3's `certificate_required` is the same refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_without_a_client_certificate_is_refused() {
    let started = Instant::now();
    let prefix = unique_prefix("tls-mtls-no-cert");
    let server_only = tls_app(&prefix, "SSL", "ssl", &[trusting_the_ca()])
        .build()
        .unwrap();
    server_only
        .check_connection(Duration::from_secs(10))
        .await
        .unwrap();
    server_only.finalize().await.unwrap();

    let app = tls_app(&prefix, "MTLS", "ssl", &[trusting_the_ca()])
        .build()
        .unwrap();
    let text = refused(&app, "MTLS").await;
    assert!(
        text.contains("alert bad certificate") || text.contains("alert certificate required"),
        "{text}"
    );
    assert!(started.elapsed() < SANITY_BOUND, "{:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_ssl_with_scram_publishes_and_consumes() {
    tls_round_trip(
        "SASL_SSL",
        "sasl_ssl",
        &[
            trusting_the_ca(),
            ("sasl.mechanism", "SCRAM-SHA-256".to_owned()),
            ("sasl.username", env("KAFKAESK_SASL_SCRAM_USERNAME")),
            ("sasl.password", env("KAFKAESK_SASL_SCRAM_PASSWORD")),
        ],
    )
    .await;
}
