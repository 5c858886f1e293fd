//! The worker entry point: the `kafkaesk` command's flags, as a library call.
//!
//! The `kafkaesk` CLI builds a small runner around your crate that calls
//! [`main`]. A service can call it from its own `main` and get identical
//! flags, environment variables and behaviour:
//!
//! ```no_run
//! fn main() -> std::process::ExitCode {
//!     // Runs every #[schema] and #[subscribe] linked into this program.
//!     kafkaesk::worker::main()
//! }
//! ```
//!
//! or, with an application built by your own code, sync or async:
//!
//! ```no_run
//! fn app() -> kafkaesk::Application {
//!     kafkaesk::Application::builder().topic_prefix("svc.").build().unwrap()
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     kafkaesk::worker::main_with(|| async { app() })
//! }
//! ```
//!
//! Flags given on the command line (or through their environment variables)
//! override what the application set, for every handle of the application
//! (see [`Application::reconfigure`]): a
//! [`KafkaLayer`](crate::logging::KafkaLayer) made from it ships logs with
//! the flags' servers and prefix too.
//!
//! The flags that say where the broker is, [`ConnectionOptions`], are the
//! ones the `kafkaesk` command's `read`, `streams`, `groups` and `schemas`
//! take too.
//!
//! `--export-schemas DIR` writes the application's schema documents instead
//! of running it (see [`export`](crate::export)); `kafkaesk
//! schemas TARGET --out DIR` runs the target's runner so.
//!
//! This module needs the `worker` feature (on by default); a library that
//! only publishes and consumes can turn it off and does not compile `clap`.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::process::ExitCode;

use crate::app::Application;
use crate::error::{Error, Result};
use crate::settings::{redacted, Settings};

/// Where the broker is and how to talk to it: the flags shared by the worker
/// and by the `kafkaesk` command's `read`, `streams`, `groups` and `schemas`.
///
/// Declared once, so that every command that reaches a broker takes the same
/// flag names, environment variables and values, checked the same way; a
/// program with its own commands can flatten it into them to connect like
/// the worker does. Each flag also reads an environment variable.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConnectionOptions {
    /// Kafka bootstrap servers, comma separated (e.g. `a:9092,b:9092`).
    #[arg(long, env = "KAFKAESK_KAFKA_SERVERS", value_delimiter = ',')]
    pub kafka_servers: Vec<String>,

    /// librdkafka properties as a JSON object, e.g.
    /// '{"security.protocol":"sasl_ssl","sasl.mechanism":"PLAIN"}'. Non-string values are
    /// converted to strings.
    #[arg(
        long,
        env = "KAFKAESK_KAFKA_SETTINGS",
        hide_env_values = true,
        value_parser = KafkaSettingsParser
    )]
    pub kafka_settings: Option<KafkaSettings>,

    /// A file holding librdkafka properties as a JSON object, as `--kafka-settings` takes
    /// them; what `--kafka-settings` sets too wins. Keeps secrets out of the command line,
    /// which `ps` shows, and out of the environment of child processes.
    #[arg(
        long,
        env = "KAFKAESK_KAFKA_SETTINGS_FILE",
        value_name = "PATH",
        value_parser = KafkaSettingsFileParser
    )]
    pub kafka_settings_file: Option<KafkaSettingsFile>,

    /// Prefix prepended to every stream name to form the topic.
    #[arg(long, env = "KAFKAESK_TOPIC_PREFIX")]
    pub topic_prefix: Option<String>,

    /// Broker API version, or `auto` to ask the broker [default: auto].
    #[arg(long, env = "KAFKAESK_API_VERSION")]
    pub api_version: Option<String>,
}

/// The worker's flags: the connection's, and those of running it. Each also
/// reads an environment variable.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct WorkerOptions {
    /// Where the broker is and how to talk to it.
    #[command(flatten)]
    pub connection: ConnectionOptions,

    /// Replication factor of topics kafkaesk creates [default: min(number of servers, 3)].
    #[arg(long, env = "KAFKAESK_REPLICATION_FACTOR", value_parser = clap::value_parser!(i32).range(1..))]
    pub replication_factor: Option<i32>,

    /// Prefix of this instance's transactional ids (transactions and exactly-once
    /// subscriptions), e.g. the pod name: stable across restarts, unique among running
    /// instances [default: host, process id and start time].
    #[arg(long, env = "KAFKAESK_TRANSACTIONAL_ID", value_name = "PREFIX")]
    pub transactional_id: Option<String>,

    /// The service this worker registers its schemas under on the `kafkaesk.schemas` stream
    /// [default: the executable's name; the kafkaesk command passes the crate's name].
    #[arg(long, env = "KAFKAESK_SERVICE_NAME", value_name = "NAME")]
    pub service_name: Option<String>,

    /// What to do about schema contracts at start: `enforce` (register the schemas, refuse to
    /// start on a conflict with another service), `warn` (register, warn), `off` [default:
    /// warn].
    #[arg(long, env = "KAFKAESK_SCHEMA_CONTRACTS", value_name = "MODE", value_parser = ["enforce", "warn", "off"])]
    pub schema_contracts: Option<String>,

    /// Without --kafka-servers, an embedded broker runs inside the worker and listens here
    /// [default: 127.0.0.1:0, any free port]. It keeps data in memory only, for as long as the
    /// worker runs: for development, never for production.
    #[cfg(feature = "embedded-broker")]
    #[arg(long, env = "KAFKAESK_EMBEDDED_BROKER", value_name = "HOST:PORT")]
    pub embedded_broker: Option<std::net::SocketAddr>,

    /// Serve `GET /metrics` (Prometheus), `GET /health` and `GET /live` (200 or 503, JSON) on this address
    /// while the worker runs, e.g. `0.0.0.0:9464`. Without it, no port is opened.
    #[arg(long, env = "KAFKAESK_METRICS_ADDR", value_name = "HOST:PORT")]
    pub metrics_addr: Option<String>,

    /// Instead of running the worker, republish every record of this dead-letter stream to
    /// the topic it came from, print how many, and exit.
    #[arg(long, value_name = "STREAM")]
    pub replay_dead_letters: Option<String>,
}

/// How long `--replay-dead-letters` may take before it gives up.
const REPLAY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// librdkafka properties parsed from `--kafka-settings`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KafkaSettings(pub BTreeMap<String, String>);

impl std::fmt::Debug for KafkaSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        redacted(&self.0).fmt(f)
    }
}

/// librdkafka properties read from `--kafka-settings-file`, with the path
/// they came from (passed on to a runner as a path, never as the values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSettingsFile {
    /// The file.
    pub path: std::path::PathBuf,
    /// What it holds.
    pub settings: KafkaSettings,
}

/// The environment variable of `--kafka-settings`, removed from a worker's
/// environment once read, so that processes it starts do not inherit the
/// secrets it may hold.
pub const KAFKA_SETTINGS_ENV: &str = "KAFKAESK_KAFKA_SETTINGS";

/// Reads `--kafka-settings-file`: the same JSON object as `--kafka-settings`.
/// Errors name the file, never its contents.
pub fn read_kafka_settings_file(
    path: &std::path::Path,
) -> std::result::Result<KafkaSettingsFile, String> {
    // A settings file is a few hundred bytes; a bound keeps a wrong path
    // (a device, a log) from being read whole.
    const MAX_BYTES: u64 = 1024 * 1024;
    let file = std::fs::File::open(path)
        .map_err(|err| format!("cannot read `{}`: {err}", path.display()))?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::Read::take(file, MAX_BYTES + 1), &mut text)
        .map_err(|err| format!("cannot read `{}`: {err}", path.display()))?;
    if text.len() as u64 > MAX_BYTES {
        return Err(format!(
            "`{}` is larger than {MAX_BYTES} bytes; it should hold a JSON object of \
             librdkafka properties",
            path.display()
        ));
    }
    let settings =
        parse_kafka_settings(&text).map_err(|reason| format!("`{}`: {reason}", path.display()))?;
    Ok(KafkaSettingsFile {
        path: path.to_owned(),
        settings,
    })
}

/// clap's error for a value of `flag` refused for `reason`, which never
/// quotes the value: it may hold passwords.
fn invalid_value(flag: &str, reason: &str) -> clap::Error {
    clap::Error::raw(
        clap::error::ErrorKind::ValueValidation,
        format!("invalid {flag}: {reason}\n"),
    )
}

/// Parses `--kafka-settings-file` (a clap value parser) by reading the file.
#[derive(Debug, Clone, Copy)]
pub struct KafkaSettingsFileParser;

impl clap::builder::TypedValueParser for KafkaSettingsFileParser {
    type Value = KafkaSettingsFile;

    fn parse_ref(
        &self,
        _command: &clap::Command,
        _argument: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> std::result::Result<KafkaSettingsFile, clap::Error> {
        read_kafka_settings_file(std::path::Path::new(value))
            .map_err(|reason| invalid_value("--kafka-settings-file", &reason))
    }
}

/// Parses `--kafka-settings`: a JSON object whose values are strings, numbers or booleans.
pub fn parse_kafka_settings(text: &str) -> std::result::Result<KafkaSettings, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|err| {
        format!(
            "not valid JSON ({err}); pass an object such as '{{\"security.protocol\":\"ssl\"}}'"
        )
    })?;
    let serde_json::Value::Object(map) = value else {
        return Err(
            "expected a JSON object of librdkafka properties, such as '{\"security.protocol\":\"ssl\"}'"
                .to_owned(),
        );
    };
    let mut settings = BTreeMap::new();
    for (key, value) in map {
        let text = match value {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Bool(b) => b.to_string(),
            other => {
                let kind = match other {
                    serde_json::Value::Null => "null",
                    serde_json::Value::Array(_) => "an array",
                    _ => "an object",
                };
                return Err(format!(
                    "`{key}` must be a string, number or boolean, not {kind}"
                ));
            }
        };
        settings.insert(key, text);
    }
    Ok(KafkaSettings(settings))
}

/// Parses `--kafka-settings` (a clap value parser, for commands that take the
/// flag too) without echoing the value in errors, as clap's
/// own errors do: it may hold passwords.
#[derive(Debug, Clone, Copy)]
pub struct KafkaSettingsParser;

impl clap::builder::TypedValueParser for KafkaSettingsParser {
    type Value = KafkaSettings;

    fn parse_ref(
        &self,
        _command: &clap::Command,
        _argument: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> std::result::Result<KafkaSettings, clap::Error> {
        let invalid = |reason: String| invalid_value("--kafka-settings", &reason);
        let text = value
            .to_str()
            .ok_or_else(|| invalid("not valid UTF-8".to_owned()))?;
        parse_kafka_settings(text).map_err(invalid)
    }
}

impl ConnectionOptions {
    /// Applies the flags given over an application's settings, so that a
    /// command connects where the worker would with the same flags; the
    /// settings the flags do not name keep the application's values.
    pub fn apply(&self, settings: &mut Settings) {
        if !self.kafka_servers.is_empty() {
            settings.kafka_servers = self.kafka_servers.clone();
        }
        // The file first: what `--kafka-settings` sets wins.
        let extra = self.kafka_settings_file.iter().map(|file| &file.settings);
        for extra in extra.chain(&self.kafka_settings) {
            settings
                .kafka_settings
                .extend(extra.0.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        if let Some(prefix) = &self.topic_prefix {
            settings.topic_prefix = prefix.clone();
        }
        if let Some(version) = &self.api_version {
            settings.api_version = version.clone();
        }
    }
}

impl WorkerOptions {
    /// Whether servers were given by flag or environment: without them, the
    /// `kafkaesk` command starts an embedded broker.
    pub fn has_servers(&self) -> bool {
        !self.connection.kafka_servers.is_empty()
    }

    /// Applies the flags over an application's settings, so that they win
    /// over what the application's own code set.
    pub fn apply(&self, settings: &mut Settings) {
        self.connection.apply(settings);
        if let Some(factor) = self.replication_factor {
            settings.replication_factor = Some(factor);
        }
        if let Some(prefix) = &self.transactional_id {
            settings.transactional_id = Some(prefix.clone());
        }
        if let Some(name) = &self.service_name {
            settings.service_name = Some(name.clone());
        }
        // clap only lets the three names through.
        if let Some(mode) = self
            .schema_contracts
            .as_deref()
            .and_then(|m| m.parse().ok())
        {
            settings.schema_contracts = mode;
        }
    }
}

#[derive(Debug, clap::Parser)]
#[command(
    name = "kafkaesk",
    about = "Runs a kafkaesk worker: every subscription of the application, until SIGINT or SIGTERM"
)]
struct WorkerCommand {
    #[command(flatten)]
    options: WorkerOptions,

    #[command(flatten)]
    export: ExportOptions,
}

/// The flags of the export mode, apart from the worker's: the CLI's
/// `kafkaesk schemas` passes them to the runner it builds.
#[derive(Debug, Clone, Default, clap::Args)]
struct ExportOptions {
    /// Instead of running the worker, write the JSON Schema of every schema
    /// (`<Id>-<version>.json`) and the AsyncAPI document (`asyncapi.json`) into DIR, and exit.
    #[arg(long, value_name = "DIR")]
    export_schemas: Option<std::path::PathBuf>,

    /// The title of the AsyncAPI document [default: this program's name].
    #[arg(long, value_name = "TITLE", requires = "export_schemas")]
    export_title: Option<String>,

    /// The version of the AsyncAPI document [default: 0.0.0].
    #[arg(long, value_name = "VERSION", requires = "export_schemas")]
    export_version: Option<String>,
}

impl ExportOptions {
    /// Applies the worker flags to `app` (servers, prefix and replication
    /// appear in the AsyncAPI document) and writes its schemas into `dir`.
    fn write(&self, app: &Application, options: &WorkerOptions, dir: &Path) -> Result<()> {
        app.reconfigure(|settings| options.apply(settings))?;
        let title = self.export_title.clone().unwrap_or_else(program_name);
        let version = self.export_version.as_deref().unwrap_or("0.0.0");
        let written = app.write_schemas(dir, &title, version)?;
        println!(
            "kafkaesk: wrote {} schema(s) and {} into {}",
            written.len().saturating_sub(1),
            crate::export::ASYNCAPI_FILE_NAME,
            dir.display()
        );
        Ok(())
    }
}

/// This executable's file name without extension, or `kafkaesk`.
fn program_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|path| path.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "kafkaesk".to_owned())
}

/// Parses the worker flags from the command line and runs every schema and
/// subscription registered with the macros. Returns the process exit code:
/// 0 after a clean stop, 1 after an error (printed on one line to stderr).
pub fn main() -> ExitCode {
    main_with(|| async {
        Application::builder()
            .with_registry()
            .and_then(|builder| builder.build())
    })
}

/// Like [`main`], with the application made by `make_app`: a closure
/// returning a future of an [`Application`] or of `Result<Application, E>`.
pub fn main_with<F, Fut>(make_app: F) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: Future,
    Fut::Output: IntoApplication,
{
    use clap::Parser;
    let command = WorkerCommand::parse();
    // Read: the processes this worker starts (handlers may) need not see
    // the secrets it may hold. Still one thread here, so nothing reads the
    // environment meanwhile.
    std::env::remove_var(KAFKA_SETTINGS_ENV);
    init_logging();
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let app = make_app().await.into_application()?;
        match &command.export.export_schemas {
            Some(dir) => command.export.write(&app, &command.options, dir),
            None => run(app, &command.options).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// The async runtime the worker runs on: multi-threaded, with I/O and time
/// enabled.
///
/// One definition for every process that runs kafkaesk work, so that the
/// worker, a program that calls [`run`] itself and the `kafkaesk` command
/// (its embedded broker, `read`, `streams`, `groups`) get the same threads
/// and drivers. Fails only when the operating system refuses the threads or
/// the I/O driver.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

/// Applies the flags to `app` (to every handle of it) and runs it until a
/// signal or a handler error.
///
/// With the `embedded-broker` feature, an application without servers runs
/// against a broker started inside this process (the `broker` module).
pub async fn run(app: Application, options: &WorkerOptions) -> Result<()> {
    app.reconfigure(|settings| options.apply(settings))?;
    #[cfg(feature = "embedded-broker")]
    let _broker = if app.settings().kafka_servers.is_empty() {
        let broker = start_embedded_broker(options).await?;
        app.reconfigure(|settings| broker.configure(settings))?;
        Some(broker)
    } else {
        None
    };
    if app.settings().kafka_servers.is_empty() {
        return Err(Error::AppNotConfigured(
            "no Kafka servers; pass --kafka-servers host:9092 or set KAFKAESK_KAFKA_SERVERS"
                .to_owned(),
        ));
    }
    if let Some(stream) = &options.replay_dead_letters {
        let replayed = app.replay_dead_letters(stream, REPLAY_TIMEOUT).await?;
        app.flush().await?;
        println!(
            "kafkaesk: replayed {} dead-lettered record(s) from {stream} to their topics",
            replayed.republished
        );
        if replayed.refused > 0 {
            println!(
                "kafkaesk: refused {} record(s) of {stream}; they stay there (the log says \
                 why of each)",
                replayed.refused
            );
        }
        return Ok(());
    }
    let metrics_server = match &options.metrics_addr {
        Some(addr) => {
            let server = crate::http::serve(&app, addr.as_str()).await?;
            println!(
                "kafkaesk: metrics on http://{0}/metrics, health on http://{0}/health and \
                 http://{0}/live",
                server.local_addr()
            );
            Some(server)
        }
        None => None,
    };
    let router = app.router();
    if router.subscriptions().is_empty() {
        println!(
            "kafkaesk: no subscriptions registered; the worker only keeps the application running"
        );
    }
    for sub in router.subscriptions() {
        println!(
            "kafkaesk: subscription {} on {} ({}, concurrency {}{})",
            sub.name(),
            sub.streams(),
            sub.group()
                .map_or_else(|| "no group".to_owned(), |group| format!("group {group}")),
            sub.concurrency(),
            sub.timeout()
                .map(|t| format!(", timeout {t:?}"))
                .unwrap_or_default()
        );
    }
    let ran = app.run().await;
    // Closed before returning, so that the port is free once the run is over.
    if let Some(server) = metrics_server {
        server.stop().await;
    }
    ran
}

/// Starts the embedded broker at `--embedded-broker` (default: a free port on
/// 127.0.0.1) and prints its address for other processes.
#[cfg(feature = "embedded-broker")]
pub async fn start_embedded_broker(
    options: &WorkerOptions,
) -> Result<crate::embedded::EmbeddedBroker> {
    let listen = options
        .embedded_broker
        .unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    let broker = crate::embedded::EmbeddedBroker::start(listen).await?;
    let servers = broker.bootstrap_servers();
    println!(
        "kafkaesk: embedded broker listening on {servers} (in memory, for development only: \
         its data is gone when this worker exits); other processes publish to it with \
         --kafka-servers {servers}"
    );
    Ok(broker)
}

/// What an application factory may return.
pub trait IntoApplication {
    /// The application, or the error that prevented building it.
    fn into_application(self) -> Result<Application>;
}

impl IntoApplication for Application {
    fn into_application(self) -> Result<Application> {
        Ok(self)
    }
}

impl<E: std::fmt::Display> IntoApplication for std::result::Result<Application, E> {
    fn into_application(self) -> Result<Application> {
        self.map_err(|err| Error::AppFactory(err.to_string()))
    }
}

/// Logs to stderr at `info` for kafkaesk and `warn` for the rest, unless
/// `RUST_LOG` says otherwise. Does nothing if a subscriber is already set.
///
/// librdkafka's own log is off by default: it repeats every connection
/// failure many times a second, and kafkaesk reports what matters in its own
/// errors. `RUST_LOG=librdkafka=debug` brings it back.
fn init_logging() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("warn,kafkaesk=info,librdkafka=off,rdkafka=off")
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_settings_accept_an_object_of_scalars() {
        let parsed = parse_kafka_settings(
            r#"{"security.protocol":"ssl","linger.ms":10,"enable.idempotence":true}"#,
        )
        .unwrap();
        assert_eq!(parsed.0["linger.ms"], "10");
        assert_eq!(parsed.0["enable.idempotence"], "true");
    }

    #[test]
    fn the_settings_file_comes_first_and_the_flag_wins() {
        let dir = std::env::temp_dir().join(format!("kafkaesk-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("kafka.json");
        std::fs::write(&path, r#"{"linger.ms": 5, "acks": "all"}"#).unwrap();
        let options = WorkerOptions {
            connection: ConnectionOptions {
                kafka_settings_file: Some(read_kafka_settings_file(&path).unwrap()),
                kafka_settings: Some(parse_kafka_settings(r#"{"linger.ms":"9"}"#).unwrap()),
                ..ConnectionOptions::default()
            },
            ..WorkerOptions::default()
        };
        let mut settings = Settings::default();
        options.apply(&mut settings);
        assert_eq!(settings.kafka_settings["linger.ms"], "9");
        assert_eq!(settings.kafka_settings["acks"], "all");
        std::fs::write(&path, "x".repeat(2 * 1024 * 1024)).unwrap();
        let err = read_kafka_settings_file(&path).unwrap_err();
        assert!(err.contains("larger than"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn kafka_settings_errors_say_what_to_fix() {
        let err = parse_kafka_settings("{nope").unwrap_err();
        assert!(err.contains("not valid JSON"), "{err}");
        let err = parse_kafka_settings("[1]").unwrap_err();
        assert!(err.contains("JSON object"), "{err}");
        let err = parse_kafka_settings(r#"{"a":{"b":1}}"#).unwrap_err();
        assert!(err.contains("`a`"), "{err}");
    }

    #[test]
    fn export_mode_writes_the_documents_with_the_flags_applied() {
        use clap::Parser;
        let dir =
            std::env::temp_dir().join(format!("kafkaesk-worker-export-{}", std::process::id()));
        let dir_arg = format!("--export-schemas={}", dir.display());
        let command = WorkerCommand::try_parse_from([
            "runner",
            dir_arg.as_str(),
            "--export-title=svc",
            "--export-version=1.2.3",
            "--kafka-servers=k:9092",
            "--topic-prefix=p.",
        ])
        .unwrap();
        let app = Application::builder().topic_prefix("app.").build().unwrap();
        command
            .export
            .write(
                &app,
                &command.options,
                command.export.export_schemas.as_deref().unwrap(),
            )
            .unwrap();
        let text = std::fs::read_to_string(dir.join("asyncapi.json")).unwrap();
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(doc["info"]["title"], "svc");
        assert_eq!(doc["info"]["version"], "1.2.3");
        assert_eq!(doc["servers"]["kafka"]["host"], "k:9092");
        assert!(doc["info"]["description"]
            .as_str()
            .unwrap()
            .contains("`p.`"));
        std::fs::remove_dir_all(&dir).unwrap();

        let err = WorkerCommand::try_parse_from(["runner", "--export-title=svc"]).unwrap_err();
        assert!(err.to_string().contains("--export-schemas"), "{err}");
    }

    #[test]
    fn flags_override_application_settings() {
        let options = WorkerOptions {
            connection: ConnectionOptions {
                kafka_servers: vec!["k1:9092".into()],
                topic_prefix: Some("p.".into()),
                kafka_settings: Some(
                    parse_kafka_settings(r#"{"sasl.password":"s3cret"}"#).unwrap(),
                ),
                ..ConnectionOptions::default()
            },
            replication_factor: Some(2),
            transactional_id: Some("pod-3".into()),
            ..WorkerOptions::default()
        };
        let mut settings = Settings {
            topic_prefix: "old.".into(),
            ..Settings::default()
        };
        options.apply(&mut settings);
        assert_eq!(settings.kafka_servers, vec!["k1:9092"]);
        assert_eq!(settings.topic_prefix, "p.");
        assert_eq!(settings.replication_factor, Some(2));
        assert_eq!(settings.api_version, "auto");
        assert_eq!(settings.transactional_id.as_deref(), Some("pod-3"));
        assert!(!format!("{options:?}").contains("s3cret"));
    }
}

/// Support for the runner that the `kafkaesk` CLI generates. Not a stable API.
#[doc(hidden)]
pub mod __private {
    use std::cell::Cell;
    use std::future::Future;
    use std::pin::Pin;

    use super::IntoApplication;
    use crate::app::Application;
    use crate::error::{Error, Result};

    type AppFuture = Pin<Box<dyn Future<Output = Result<Application>>>>;

    /// Holds whatever the user's app function returned, so that method
    /// resolution can pick the async or the sync path (autoref specialization).
    pub struct Wrap<T>(Cell<Option<T>>);

    impl<T> Wrap<T> {
        /// Wraps a value.
        pub fn new(value: T) -> Self {
            Wrap(Cell::new(Some(value)))
        }

        fn take(&self) -> Result<T> {
            self.0
                .take()
                .ok_or_else(|| Error::AppFactory("the app function was called twice".into()))
        }
    }

    /// The app function returned a future.
    pub trait ResolveFuture {
        /// Awaits the future and converts its output.
        fn resolve(&self) -> AppFuture;
    }

    impl<F> ResolveFuture for Wrap<F>
    where
        F: Future + 'static,
        F::Output: IntoApplication,
    {
        fn resolve(&self) -> AppFuture {
            let future = self.take();
            Box::pin(async move { future?.await.into_application() })
        }
    }

    /// The app function returned an application or a result.
    pub trait ResolveValue {
        /// Converts the value.
        fn resolve(&self) -> AppFuture;
    }

    impl<T: IntoApplication + 'static> ResolveValue for &Wrap<T> {
        fn resolve(&self) -> AppFuture {
            let value = self.take();
            Box::pin(async move { value?.into_application() })
        }
    }
}
