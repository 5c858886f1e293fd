//! The connection of `read`, `streams`, `groups` and `schemas --check`: the
//! application they make from the worker's connection flags
//! ([`ConnectionOptions`], declared by the library so that both take the
//! same flags and environment variables).

use std::time::Duration;

use kafkaesk::worker::ConnectionOptions;
use kafkaesk::Application;

/// How long the broker has to answer before a command gives up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

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

/// An application without subscriptions, connected to the broker that
/// `options` name; a broker that does not answer is an error here rather
/// than a stall later.
pub async fn connect(options: &ConnectionOptions) -> Result<Application, Failure> {
    if options.kafka_servers.iter().all(|s| s.trim().is_empty()) {
        return Err(Failure::Usage(NO_SERVERS.to_owned()));
    }
    let mut settings = kafkaesk::Settings::default();
    options.apply(&mut settings);
    let app = Application::builder()
        .settings(settings)
        .build()
        .map_err(|err| Failure::Usage(err.to_string()))?;
    app.check_connection(CONNECT_TIMEOUT).await?;
    Ok(app)
}
