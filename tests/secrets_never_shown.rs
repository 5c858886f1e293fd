//! Secrets in `kafka_settings` never appear in Debug output or error texts.
//! (Logs are covered by `kafkaesk/tests/secrets_in_logs.rs`, which needs a
//! process of its own; CLI output by `kafkaesk-cli/tests/secrets_in_cli_output.rs`.)

use std::collections::BTreeMap;
use std::time::Duration;

use kafkaesk::worker::{ConnectionOptions, KafkaSettings, WorkerOptions};
use kafkaesk::{Application, Error, Settings};
use kafkaesk_tests::unique_prefix;

/// Secret-bearing properties, librdkafka's and those users bring over from
/// the Java client, with values that cannot occur in any output by accident.
const SECRETS: [(&str, &str); 8] = [
    ("sasl.password", "S3CRET-sasl-password"),
    ("ssl.key.password", "S3CRET-ssl-key-password"),
    ("ssl.keystore.password", "S3CRET-keystore-password"),
    ("ssl.truststore.password", "S3CRET-truststore-password"),
    (
        "sasl.oauthbearer.client.secret",
        "S3CRET-oauth-client-secret",
    ),
    (
        "sasl.oauthbearer.config",
        "principal=alice extension_x=S3CRET-oauth-config",
    ),
    (
        "ssl.key.pem",
        "-----BEGIN PRIVATE KEY-----S3CRET-pem-----END PRIVATE KEY-----",
    ),
    ("SASL.PASSWORD", "S3CRET-upper-case-key"),
];

/// Secrets this librdkafka build accepts, for applications that must connect.
const ACCEPTED: [(&str, &str); 4] = [
    ("sasl.password", "S3CRET-sasl-password"),
    ("ssl.key.password", "S3CRET-ssl-key-password"),
    ("ssl.keystore.password", "S3CRET-keystore-password"),
    (
        "sasl.oauthbearer.config",
        "principal=alice extension_x=S3CRET-oauth-config",
    ),
];

fn assert_no_secret(what: &str, text: &str) {
    assert!(!text.contains("S3CRET"), "{what} shows a secret:\n{text}");
}

#[test]
fn debug_output_of_application_settings_and_worker_options_hides_every_secret() {
    let app = Application::builder()
        .kafka_servers(["k:9092"])
        .kafka_settings(SECRETS)
        .kafka_setting("sasl.username", "alice-visible")
        .build()
        .unwrap();
    let settings: &Settings = app.settings();
    let map: BTreeMap<String, String> = SECRETS
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .chain([("sasl.username".to_owned(), "alice-visible".to_owned())])
        .collect();
    let options = WorkerOptions {
        connection: ConnectionOptions {
            kafka_servers: vec!["k:9092".into()],
            kafka_settings: Some(KafkaSettings(map.clone())),
            ..ConnectionOptions::default()
        },
        ..WorkerOptions::default()
    };
    let outputs = [
        ("Application", format!("{app:?}")),
        ("Application (pretty)", format!("{app:#?}")),
        ("Settings", format!("{settings:?}")),
        ("Settings (pretty)", format!("{settings:#?}")),
        ("WorkerOptions", format!("{options:?}")),
        ("WorkerOptions (pretty)", format!("{options:#?}")),
        ("KafkaSettings", format!("{:?}", KafkaSettings(map))),
    ];
    for (what, text) in outputs {
        assert_no_secret(what, &text);
        // Redacted, not dropped: the keys and the harmless values stay visible.
        for (key, _) in SECRETS {
            assert!(text.contains(key), "{what} lost {key}: {text}");
        }
        assert!(text.contains("alice-visible"), "{what}: {text}");
    }
}

/// librdkafka marks `sasl.oauthbearer.assertion.private.key.passphrase` as
/// sensitive (rdkafka_conf.c, `_RK_SENSITIVE`): a passphrase is a password.
#[test]
fn a_passphrase_setting_is_redacted_too() {
    let key = "sasl.oauthbearer.assertion.private.key.passphrase";
    let app = Application::builder()
        .kafka_setting(key, "S3CRET-assertion-passphrase")
        .build()
        .unwrap();
    let text = format!("{app:?}");
    assert!(text.contains(key), "{text}");
    assert_no_secret(key, &text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_against_an_unreachable_broker_show_no_secret() {
    let app = Application::builder()
        .kafka_servers(["127.0.0.1:1"])
        .topic_prefix(unique_prefix("secret-errors"))
        .kafka_settings(ACCEPTED)
        .build()
        .unwrap();
    let err = app.initialize().await.unwrap_err();
    assert!(matches!(err, Error::BrokerUnreachable { .. }), "{err:?}");
    assert_no_secret("initialize", &format!("{err}\n{err:?}"));
    let err = app
        .check_connection(Duration::from_secs(1))
        .await
        .unwrap_err();
    assert_no_secret("check_connection", &format!("{err}\n{err:?}"));
    let health = app.health_check().await;
    assert!(!health.is_healthy());
    assert_no_secret("health", &format!("{health:?}"));
}

/// librdkafka refuses properties it does not know (Java-only ones such as
/// `ssl.truststore.password`, a wrong case) or that this build does not
/// support (`sasl.oauthbearer.client.secret` without libcurl). rdkafka's
/// `KafkaError::ClientConfig` Display prints the value, secret or not
/// (`Client config error: No such configuration property:
/// "ssl.truststore.password" ssl.truststore.password <secret>`); kafkaesk
/// turns it into `Error::InvalidSetting` without the value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_secret_property_is_reported_without_its_value() {
    for (key, secret) in [
        ("ssl.truststore.password", "S3CRET-truststore-password"),
        (
            "sasl.oauthbearer.client.secret",
            "S3CRET-oauth-client-secret",
        ),
        ("SASL.PASSWORD", "S3CRET-upper-case-key"),
    ] {
        let app = Application::builder()
            .kafka_servers([kafkaesk_tests::kafka()])
            .kafka_setting(key, secret)
            .build()
            .unwrap();
        let err = app.initialize().await.unwrap_err();
        let text = format!("{err}\n{err:?}");
        assert!(text.contains(key), "the error names the property: {text}");
        assert_no_secret(key, &text);
    }
}
