//! `kafkaesk`: runs the workers of a crate.
//!
//! ```text
//! kafkaesk examples/service --kafka-servers 127.0.0.1:9092
//! kafkaesk my-service::api::app --kafka-servers a:9092,b:9092 --topic-prefix prod.
//! ```
//!
//! The target crate is built together with a small generated runner (see
//! `runner.rs`), which then runs every subscription the crate registered,
//! or the application returned by the named function.

#[cfg(all(unix, feature = "embedded-broker"))]
mod embedded;
mod runner;
mod target;

use std::process::ExitCode;

use clap::Parser;
use kafkaesk::worker::WorkerOptions;

const AFTER_HELP: &str = "\
TARGET is a directory with a Cargo.toml, or a package of the workspace you are in, such as
`examples/service` or `my-service`. On its own, the worker runs every #[schema] and #[subscribe]
the crate registered. `my-service::api::app` runs the Application returned by the public
function `api::app` (sync or async, returning Application or Result<Application, E>) instead;
flags override its settings.

The target is built in debug mode (or --release) into its own workspace's target directory; a
second run with nothing changed starts in about a second.

Without --kafka-servers (or KAFKAESK_KAFKA_SERVERS), kafkaesk starts an embedded Kafka-protocol
broker (tansu, in memory) inside this process, prints its address so other processes can publish
to it, and runs the worker against it. Its data lives only as long as this process: it is for
development, not production.

The worker stops cleanly on SIGINT or SIGTERM: in-flight handlers finish, offsets are committed,
the producer is flushed, and the exit code is 0. A handler error stops it with exit code 1 and
the error on stderr.";

/// Runs a kafkaesk worker for a crate.
#[derive(Debug, Parser)]
#[command(name = "kafkaesk", version, after_help = AFTER_HELP)]
struct Cli {
    /// The crate to run, optionally followed by `::path::to::app`.
    target: String,

    #[command(flatten)]
    worker: WorkerOptions,

    /// Build the target with the release profile.
    #[arg(long, env = "KAFKAESK_RELEASE")]
    release: bool,
}

/// The first line of a clap error, without its `error: ` prefix.
fn one_line(err: &clap::Error) -> String {
    let text = err.render().to_string();
    let first = text.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_owned()
}

/// The runner, with the worker flags as arguments. librdkafka settings go
/// through the environment instead: they may hold secrets, which `ps` shows
/// for arguments.
fn runner_command(runner: &std::path::Path, options: &WorkerOptions) -> std::process::Command {
    let mut command = std::process::Command::new(runner);
    command.args(worker_args(options));
    if let Some(settings) = &options.kafka_settings {
        command.env("KAFKAESK_KAFKA_SETTINGS", settings_json(settings));
    }
    command
}

fn settings_json(settings: &kafkaesk::worker::KafkaSettings) -> String {
    let object: serde_json::Map<String, serde_json::Value> = settings
        .0
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    serde_json::Value::Object(object).to_string()
}

/// The worker flags, except `--kafka-settings`, as the runner receives them.
fn worker_args(options: &WorkerOptions) -> Vec<String> {
    let mut args = Vec::new();
    if !options.kafka_servers.is_empty() {
        args.push(format!(
            "--kafka-servers={}",
            options.kafka_servers.join(",")
        ));
    }
    if let Some(prefix) = &options.topic_prefix {
        args.push(format!("--topic-prefix={prefix}"));
    }
    if let Some(factor) = options.replication_factor {
        args.push(format!("--replication-factor={factor}"));
    }
    if let Some(version) = &options.api_version {
        args.push(format!("--api-version={version}"));
    }
    if let Some(prefix) = &options.transactional_id {
        args.push(format!("--transactional-id={prefix}"));
    }
    if let Some(addr) = &options.metrics_addr {
        args.push(format!("--metrics-addr={addr}"));
    }
    if let Some(stream) = &options.replay_dead_letters {
        args.push(format!("--replay-dead-letters={stream}"));
    }
    args
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            use clap::error::ErrorKind;
            if matches!(
                err.kind(),
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
            ) {
                let _ = err.print();
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {}", one_line(&err));
            return ExitCode::from(2);
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, String> {
    let target = target::resolve(&cli.target)?;
    #[cfg(not(all(unix, feature = "embedded-broker")))]
    if !cli.worker.has_servers() {
        return Err("no Kafka servers: pass --kafka-servers host:9092 or set \
                    KAFKAESK_KAFKA_SERVERS (this kafkaesk was built without the \
                    embedded-broker feature)"
            .to_owned());
    }
    let runner = runner::build(&target, cli.release)?;
    #[cfg(all(unix, feature = "embedded-broker"))]
    if !cli.worker.has_servers() {
        return embedded::run(runner_command(&runner, &cli.worker), &cli.worker);
    }
    exec(runner_command(&runner, &cli.worker))
}

/// Replaces this process with the runner, so signals and the exit code are its own.
#[cfg(unix)]
fn exec(mut command: std::process::Command) -> Result<ExitCode, String> {
    use std::os::unix::process::CommandExt;
    let err = command.exec();
    Err(format!(
        "cannot start `{}`: {err}",
        command.get_program().to_string_lossy()
    ))
}

#[cfg(not(unix))]
fn exec(mut command: std::process::Command) -> Result<ExitCode, String> {
    let status = command.status().map_err(|err| {
        format!(
            "cannot start `{}`: {err}",
            command.get_program().to_string_lossy()
        )
    })?;
    Ok(ExitCode::from(
        status.code().unwrap_or(1).clamp(0, 255) as u8
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_flags_round_trip_to_the_runner() {
        let cli = Cli::try_parse_from([
            "kafkaesk",
            "examples/service",
            "--kafka-servers",
            "a:1,b:2",
            "--kafka-settings",
            r#"{"linger.ms": 7}"#,
            "--topic-prefix",
            "p.",
            "--transactional-id",
            "pod-3",
            "--metrics-addr",
            "0.0.0.0:9464",
        ])
        .unwrap();
        assert_eq!(cli.worker.kafka_servers, ["a:1", "b:2"]);
        let args = worker_args(&cli.worker);
        assert_eq!(
            args,
            [
                "--kafka-servers=a:1,b:2",
                "--topic-prefix=p.",
                "--transactional-id=pod-3",
                "--metrics-addr=0.0.0.0:9464"
            ]
        );
        // Settings travel in the environment, where `ps` does not show them.
        let command = runner_command(std::path::Path::new("runner"), &cli.worker);
        let settings: Vec<_> = command
            .get_envs()
            .filter(|(key, _)| *key == "KAFKAESK_KAFKA_SETTINGS")
            .filter_map(|(_, value)| value)
            .collect();
        assert_eq!(settings, [r#"{"linger.ms":"7"}"#]);
        assert!(command
            .get_args()
            .all(|arg| !arg.to_string_lossy().contains("linger")));
    }

    #[test]
    fn bad_kafka_settings_are_a_one_line_error() {
        let err = Cli::try_parse_from([
            "kafkaesk",
            "x",
            "--kafka-servers",
            "a:1",
            "--kafka-settings",
            "{nope",
        ])
        .unwrap_err();
        let line = one_line(&err);
        assert!(
            line.contains("--kafka-settings") && line.contains("JSON"),
            "{line}"
        );
    }
}
