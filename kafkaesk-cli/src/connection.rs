//! The connection flags of `read`, `streams`, `groups` and `schemas`, and the
//! application they make: the worker's flags that say where the broker is,
//! read from the same environment variables.

use std::time::Duration;

use kafkaesk::worker::{
    KafkaSettings, KafkaSettingsFile, KafkaSettingsFileParser, KafkaSettingsParser, WorkerOptions,
};
use kafkaesk::Application;

/// How long the broker has to answer before a command gives up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the broker is, and how to talk to it.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConnectionOptions {
    /// Kafka bootstrap servers, comma separated (e.g. `a:9092,b:9092`). Required by `read`,
    /// `streams`, `groups` and `schemas --check`, which never start an embedded broker.
    #[arg(long, env = "KAFKAESK_KAFKA_SERVERS", value_delimiter = ',')]
    pub kafka_servers: Vec<String>,

    /// librdkafka properties as a JSON object, e.g. '{"security.protocol":"ssl"}'.
    #[arg(
        long,
        env = "KAFKAESK_KAFKA_SETTINGS",
        hide_env_values = true,
        value_parser = KafkaSettingsParser
    )]
    pub kafka_settings: Option<KafkaSettings>,

    /// A file holding librdkafka properties as a JSON object; what `--kafka-settings` sets too
    /// wins. Keeps secrets off the command line, which `ps` shows.
    #[arg(
        long,
        env = "KAFKAESK_KAFKA_SETTINGS_FILE",
        value_name = "PATH",
        value_parser = KafkaSettingsFileParser
    )]
    pub kafka_settings_file: Option<KafkaSettingsFile>,

    /// Prefix of the topics: streams are the topics under it, named without it.
    #[arg(long, env = "KAFKAESK_TOPIC_PREFIX")]
    pub topic_prefix: Option<String>,

    /// Broker API version, or `auto` to ask the broker [default: auto].
    #[arg(long, env = "KAFKAESK_API_VERSION")]
    pub api_version: Option<String>,
}

/// Why `read`, `streams` and `groups` need servers: the embedded broker the
/// worker form starts would be new and empty.
pub const NO_SERVERS: &str = "no Kafka servers: pass --kafka-servers host:9092 (or set \
     KAFKAESK_KAFKA_SERVERS); this command reads an existing broker and never starts an \
     embedded one. For a worker's embedded broker, pass the address it printed \
     (`kafkaesk: embedded broker listening on 127.0.0.1:PORT`)";

/// A failure of a command: a usage error (exit code 2) or one the broker
/// or the read reported (exit code 1).
#[derive(Debug)]
pub enum Failure {
    /// Something to fix on the command line.
    Usage(String),
    /// The broker could not be reached or refused.
    Runtime(String),
    /// Already reported on stderr: only the exit code (1) is left to give.
    Reported,
}

impl From<kafkaesk::Error> for Failure {
    fn from(err: kafkaesk::Error) -> Self {
        Failure::Runtime(err.to_string())
    }
}

impl ConnectionOptions {
    /// The options as the worker's, to apply them the same way.
    fn as_worker(&self) -> WorkerOptions {
        WorkerOptions {
            kafka_servers: self.kafka_servers.clone(),
            kafka_settings: self.kafka_settings.clone(),
            kafka_settings_file: self.kafka_settings_file.clone(),
            topic_prefix: self.topic_prefix.clone(),
            api_version: self.api_version.clone(),
            ..WorkerOptions::default()
        }
    }

    /// An application without subscriptions, connected to the broker; a
    /// broker that does not answer is an error here rather than a stall later.
    pub async fn connect(&self) -> Result<Application, Failure> {
        if self.kafka_servers.iter().all(|s| s.trim().is_empty()) {
            return Err(Failure::Usage(NO_SERVERS.to_owned()));
        }
        let mut settings = kafkaesk::Settings::default();
        self.as_worker().apply(&mut settings);
        let app = Application::builder()
            .settings(settings)
            .build()
            .map_err(|err| Failure::Usage(err.to_string()))?;
        app.check_connection(CONNECT_TIMEOUT).await?;
        Ok(app)
    }
}
