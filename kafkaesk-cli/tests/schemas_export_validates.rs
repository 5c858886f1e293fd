//! `kafkaesk schemas TARGET --out DIR` against the test broker: the AsyncAPI
//! document it writes passes the official parser (`@asyncapi/parser`), and
//! each JSON Schema accepts the data of what the service really publishes,
//! read back from the broker, and rejects broken data.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use kafkaesk_tests::{read_all, require_broker, unique_prefix};
use serde_json::{json, Value};

fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn kafkaesk() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kafkaesk"));
    for var in [
        "KAFKAESK_KAFKA_SERVERS",
        "KAFKAESK_TOPIC_PREFIX",
        "KAFKAESK_REPLICATION_FACTOR",
        "KAFKAESK_KAFKA_SETTINGS",
    ] {
        command.env_remove(var);
    }
    command
}

fn run(mut command: Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = command.output().expect("run a command");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

fn has(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success())
}

/// Where `@asyncapi/parser` is installed: `KAFKAESK_NODE_DIR`, which
/// scripts/test.sh exports after installing it, or installed now (once, into
/// a cache outside the repository) by scripts/asyncapi-parser.sh, when node
/// and npm are here.
fn asyncapi_parser() -> String {
    if let Ok(dir) = std::env::var("KAFKAESK_NODE_DIR") {
        return dir;
    }
    assert!(
        has("node") && has("npm"),
        "validating asyncapi.json needs node, npm and @asyncapi/parser: run the tests through \
         scripts/test.sh, which installs them (or install node and npm, and this test installs \
         the parser with scripts/asyncapi-parser.sh)"
    );
    let (code, stdout, stderr) = run(Command::new(repo_dir().join("scripts/asyncapi-parser.sh")));
    assert_eq!(code, 0, "scripts/asyncapi-parser.sh failed:\n{stderr}");
    stdout.trim().to_owned()
}

/// Runs the official parser on `file`; fails with its diagnostics.
fn assert_valid_asyncapi(file: &Path) {
    let mut command = Command::new("node");
    command
        .arg(repo_dir().join("scripts/asyncapi-validate.cjs"))
        .arg(file)
        .env("KAFKAESK_NODE_DIR", asyncapi_parser());
    let (code, stdout, stderr) = run(command);
    assert_eq!(
        code,
        0,
        "@asyncapi/parser refused {}:\n{stderr}{stdout}",
        file.display()
    );
    assert!(stdout.contains("is valid AsyncAPI 3.0.0"), "{stdout}");
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

fn log_record() -> kafkaesk::logging::LogRecord {
    let mut fields = serde_json::Map::new();
    fields.insert("order".into(), json!(7));
    kafkaesk::logging::LogRecord {
        timestamp: "2026-01-02T03:04:05.000006Z".into(),
        logger: "service".into(),
        severity: "INFO".into(),
        level: 20,
        message: "order placed".into(),
        exception: None,
        trace: None,
        stack: None,
        hostname: "pod-1".into(),
        service: "service".into(),
        namespace: Some("shop".into()),
        cluster: None,
        fields,
    }
}

/// Publishes through kafkaesk what the service sends, and returns every
/// record value read back from the broker, by stream.
async fn publish_and_read_back(kafka: &str, prefix: &str) -> Vec<(String, Vec<u8>)> {
    // The registry, as the worker the CLI builds has it: a schema type an
    // application has not registered is published as `<TypeName>:1`.
    let app = kafkaesk::Application::builder()
        .kafka_servers([kafka])
        .topic_prefix(prefix)
        .with_registry()
        .unwrap()
        .build()
        .unwrap();
    for (id, quantity) in [(1, 1), (2, 40)] {
        let order = service::Order {
            id,
            item: "book".into(),
            quantity,
        };
        app.publish_and_wait("orders.created", &order)
            .await
            .unwrap();
    }
    app.publish_and_wait("logs", &log_record()).await.unwrap();
    let mut records = Vec::new();
    for stream in ["orders.created", "logs"] {
        for value in read_all(&format!("{prefix}{stream}"), Duration::from_secs(2)) {
            records.push((stream.to_owned(), value));
        }
    }
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exported_asyncapi_passes_the_parser_and_json_schemas_check_real_records() {
    let kafka = require_broker();
    let prefix = unique_prefix("schemas-export");
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(prefix.trim_end_matches('.'));

    let mut command = kafkaesk();
    command
        .arg("schemas")
        .arg(repo_dir().join("examples/service"))
        .arg("--out")
        .arg(&out)
        .args(["--kafka-servers", &kafka, "--topic-prefix", &prefix]);
    let (code, stdout, stderr) = run(command);
    assert_eq!(code, 0, "kafkaesk schemas failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("wrote 3 schema(s) and asyncapi.json"),
        "{stdout}"
    );
    let mut files: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "Order-1.json",
            "PydanticLogModel-1.json",
            "Shipment-1.json",
            "asyncapi.json"
        ]
    );

    let asyncapi_file = out.join("asyncapi.json");
    assert_valid_asyncapi(&asyncapi_file);
    let asyncapi = read_json(&asyncapi_file);
    assert_eq!(asyncapi["info"]["title"], "service");
    assert_eq!(asyncapi["servers"]["kafka"]["host"], kafka.as_str());
    assert_eq!(
        asyncapi["channels"]["orders.created"]["address"],
        format!("{prefix}orders.created")
    );
    assert_eq!(
        asyncapi["channels"]["orders._"]["address"],
        format!("{prefix}orders.*")
    );
    assert_eq!(
        asyncapi["operations"]["receive.handle_order"]["bindings"]["kafka"]["groupId"],
        json!({"type": "string", "enum": ["order-service"]})
    );
    assert_eq!(
        asyncapi["operations"]["receive.ship_order"]["bindings"]["kafka"]["groupId"],
        json!({"type": "string", "enum": ["shipping"]})
    );

    // Each JSON Schema, by the key in its title.
    let mut schemas = BTreeMap::new();
    for name in ["Order-1.json", "PydanticLogModel-1.json", "Shipment-1.json"] {
        let document = read_json(&out.join(name));
        assert_eq!(document["$id"], name);
        let key = document["title"].as_str().unwrap().to_owned();
        let validator = jsonschema::validator_for(&document)
            .unwrap_or_else(|err| panic!("{name} does not compile: {err}"));
        schemas.insert(key, validator);
    }
    // The AsyncAPI payloads, as draft-07 schemas with the document's components.
    let payload = |key: &str| {
        let stem = key.replace(':', "-");
        let mut schema = asyncapi["components"]["messages"][&stem]["payload"].clone();
        schema["components"] = asyncapi["components"].clone();
        jsonschema::draft7::new(&schema).unwrap()
    };

    let records = publish_and_read_back(&kafka, &prefix).await;
    assert_eq!(records.len(), 3, "{records:?}");
    for (stream, bytes) in &records {
        let envelope: Value = serde_json::from_slice(bytes).unwrap();
        let key = envelope["schema"].as_str().unwrap();
        let validator = &schemas[key];
        let errors: Vec<String> = validator
            .iter_errors(&envelope["data"])
            .map(|e| e.to_string())
            .collect();
        assert!(
            errors.is_empty(),
            "{stream}: {envelope} breaks {key}: {errors:?}"
        );
        assert!(
            payload(key).is_valid(&envelope),
            "{stream}: the AsyncAPI payload of {key} refuses the record {envelope}"
        );
    }

    let order = &schemas["Order:1"];
    let data = json!({"id": 3, "item": "pen", "quantity": 2});
    assert!(order.is_valid(&data));
    let mut missing = data.clone();
    missing.as_object_mut().unwrap().remove("item");
    let mut wrong_type = data.clone();
    wrong_type["quantity"] = json!("two");
    let mut out_of_range = data.clone();
    out_of_range["quantity"] = json!(0);
    for broken in [&missing, &wrong_type, &out_of_range] {
        assert!(!order.is_valid(broken), "Order:1 accepts {broken}");
    }
    let log = &schemas["PydanticLogModel:1"];
    let mut missing = serde_json::to_value(log_record()).unwrap();
    missing.as_object_mut().unwrap().remove("timestamp");
    let mut wrong_type = serde_json::to_value(log_record()).unwrap();
    wrong_type["level"] = json!("info");
    for broken in [&missing, &wrong_type] {
        assert!(!log.is_valid(broken), "PydanticLogModel:1 accepts {broken}");
    }
    // The envelope's key is part of the payload: another schema's data is refused.
    let foreign = json!({"schema": "Order:2", "data": data});
    assert!(!payload("Order:1").is_valid(&foreign));

    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn schemas_without_a_target_or_out_dir_is_a_usage_error() {
    let (code, _, stderr) = run({
        let mut command = kafkaesk();
        command.arg("schemas");
        command
    });
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.starts_with("error: no TARGET"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    let (code, _, stderr) = run({
        let mut command = kafkaesk();
        command
            .arg("schemas")
            .arg(repo_dir().join("examples/service"));
        command
    });
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.starts_with("error: --out DIR is required with a TARGET"),
        "{stderr}"
    );
}

#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Money {
    cents: i64,
    currency: String,
}

/// A payment, with a nested type, a tuple, an enum and a recursive type.
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Payment {
    amount: Money,
    pair: (String, u8),
    method: Method,
    note: Option<String>,
    parts: Vec<Part>,
}

#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
enum Method {
    Card { last4: String },
    Cash,
}

#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Part {
    amount: Money,
    parts: Vec<Part>,
}

impl kafkaesk::Schema for Payment {
    const ID: &'static str = "Payment";
    const VERSION: u32 = 3;
    const STREAMS: &'static [&'static str] = &["payments.card", "payments.cash"];
    const RETENTION: Option<Duration> = Some(Duration::from_secs(7 * 86400));
}

#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Refund {
    amount: Money,
}

impl kafkaesk::Schema for Refund {
    const ID: &'static str = "Refund";
    const STREAMS: &'static [&'static str] = &["payments.refunded"];
}

async fn settle(_: Payment) {}
async fn audit(_: Vec<u8>) {}
async fn cache(_: Vec<u8>) {}

/// What examples/service lacks, through the library call the command uses:
/// several servers over TLS, a pattern with a character class, a list of
/// streams, a subscription without a group, shared and recursive nested types.
#[test]
fn patterns_lists_groupless_subscriptions_and_nested_types_pass_the_parser() {
    let mut router = kafkaesk::Router::new();
    router.schema::<Payment>().unwrap();
    router.schema::<Refund>().unwrap();
    router.subscribe(kafkaesk::Subscription::new("payments.[!r]*", settle).with_group("settler"));
    router.subscribe(kafkaesk::Subscription::for_streams(
        ["payments.refunded", "audit.*"],
        audit,
    ));
    router.subscribe(kafkaesk::Subscription::new("payments.cash", cache).without_group());
    let app = kafkaesk::Application::builder()
        .kafka_servers(["k1:9093", "k2:9093"])
        .kafka_setting("security.protocol", "sasl_ssl")
        .topic_prefix("shop.")
        .mount(router)
        .build()
        .unwrap();
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(unique_prefix("schemas-library").trim_end_matches('.'));
    app.write_schemas(&out, "payments", "0.3.0").unwrap();
    let file = out.join("asyncapi.json");
    assert_valid_asyncapi(&file);
    let doc = read_json(&file);
    assert_eq!(doc["servers"]["kafka-2"]["protocol"], "kafka-secure");
    assert_eq!(
        doc["channels"]["payments.__r__"]["address"],
        "shop.payments.[!r]*"
    );
    assert_eq!(
        doc["channels"]["payments.card"]["bindings"]["kafka"]["topicConfiguration"]["retention.ms"],
        7 * 86_400_000
    );
    assert!(doc["components"]["schemas"]["Money"].is_object(), "{doc}");
    assert_eq!(doc["operations"]["receive.cache"].get("bindings"), None);
    std::fs::remove_dir_all(&out).unwrap();
}
