//! `kafkaesk`: runs the workers of a crate, and looks into a broker.
//!
//! ```text
//! kafkaesk examples/service --kafka-servers 127.0.0.1:9092
//! kafkaesk my-service::api::app --kafka-servers a:9092,b:9092 --topic-prefix prod.
//! kafkaesk read orders --kafka-servers 127.0.0.1:9092 --backward --limit 5 | jq .message.data
//! kafkaesk streams --kafka-servers 127.0.0.1:9092
//! kafkaesk groups --kafka-servers 127.0.0.1:9092 --verbose
//! kafkaesk dead-letters orders.dead --kafka-servers 127.0.0.1:9092
//! kafkaesk dead-letters orders.dead replay --error-contains "timed out" --kafka-servers 127.0.0.1:9092
//! kafkaesk schemas examples/service --out schemas/
//! ```
//!
//! For a worker, the target crate is built together with a small generated
//! runner (see `runner.rs`), which then runs every subscription the crate
//! registered, or the application returned by the named function.
//!
//! `schemas` (`schemas.rs`) builds the crate's runner the same way and has it
//! write the crate's JSON Schemas and AsyncAPI document instead of running.
//!
//! `read` (`read.rs`), `streams` and `groups` (`listing.rs`) and
//! `dead-letters` (`dead_letters.rs`) need no crate:
//! they talk to the broker at `--kafka-servers` directly. These names are
//! taken as commands; a target crate with one of them (or `run`, or
//! `schemas`) runs with `kafkaesk run TARGET` or by its path, `kafkaesk ./read`.

#![forbid(unsafe_code)]

mod connection;
mod dead_letters;
#[cfg(all(unix, feature = "embedded-broker"))]
mod embedded;
mod listing;
mod read;
mod runner;
mod schemas;
mod target;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kafkaesk::worker::WorkerOptions;

use connection::Failure;

const USAGE: &str = "\
kafkaesk TARGET [OPTIONS]
       kafkaesk run TARGET [OPTIONS]
       kafkaesk read STREAM [OPTIONS]
       kafkaesk streams [PATTERN] [OPTIONS]
       kafkaesk groups [PATTERN] [OPTIONS]
       kafkaesk dead-letters STREAM [list|show|replay] [OPTIONS]
       kafkaesk schemas TARGET --out DIR [OPTIONS]";

const AFTER_HELP: &str = "\
TARGET is a directory with a Cargo.toml, or a package of the workspace you are in, such as
`examples/service` or `my-service`. On its own, the worker runs every #[schema] and #[subscribe]
the crate registered. `my-service::api::app` runs the Application returned by the public
function `api::app` (sync or async, returning Application or Result<Application, E>) instead;
flags override its settings.

`read`, `streams`, `groups`, `dead-letters`, `schemas` and `run` are commands, not targets: a
crate with one of these names runs with `kafkaesk run read [OPTIONS]`, or by its path, `kafkaesk ./read [OPTIONS]`.
Options go after the command (`kafkaesk read --help` lists its own).

The target is built in debug mode (or --release) into its own workspace's target directory; a
second run with nothing changed starts in about a second.

Without --kafka-servers (or KAFKAESK_KAFKA_SERVERS), kafkaesk starts an embedded Kafka-protocol
broker (tansu, in memory) inside this process, prints its address so other processes can publish
to it, and runs the worker against it. Its data lives only as long as this process: it is for
development, not production. `read`, `streams`, `groups` and `dead-letters` never start one: they need
--kafka-servers (for a worker's embedded broker, the address it printed).

The worker stops cleanly on SIGINT or SIGTERM: in-flight handlers finish, offsets are committed,
the producer is flushed, and the exit code is 0. A handler error stops it with exit code 1 and
the error on stderr. Usage errors (bad flags, a wrong target) exit with code 2.";

const READ_HELP: &str = "\
Each record is one JSON object on its own line, fields in this order:
  {\"stream\":\"orders\",\"topic\":\"prod.orders\",\"partition\":0,\"offset\":7,\"timestamp\":1764756000000,
   \"key\":\"customer-7\",\"headers\":[[\"trace-id\",\"4bf9\"]],\"json\":true,
   \"message\":{\"schema\":\"Order:1\",\"data\":{\"id\":7}}}
timestamp is in milliseconds since the Unix epoch, or null. key, header values and a message that
is not JSON are a string when UTF-8, else {\"base64\":\"...\"}; a missing key, a null header
value and a null (tombstone) message are null. headers are [name, value] pairs in order (a name
may repeat). json is true when message is the value parsed as JSON (kafkaesk's envelope
{\"schema\":\"Id:1\",\"data\":{...}}), false when message holds the raw bytes.

Forward reads stop at the end as of the start, unless --follow; with --follow, SIGINT (Ctrl-C)
or SIGTERM ends the read with exit code 0. A closed stdout (`| head`) ends it quietly.

Exit codes: 0 when every record was printed; 1 when the broker could not be read or some records
could not be (each is reported on stderr as `error: ...` with its position where known, and the
read goes on); 2 for usage errors.";

const STREAMS_HELP: &str = "\
MESSAGES is the sum over the partitions of the high minus the low watermark: on compacted topics,
or with transaction markers, an upper bound on the records stored. RETENTION, RETENTION BYTES
and CLEANUP are the topic's retention.ms, retention.bytes and cleanup.policy (- when the broker
does not say).";

const GROUPS_HELP: &str = "\
Lists the consumer groups the broker knows that have committed offsets on streams under the
topic prefix, with their lag on each such stream: the records between the group's committed
offset (or the partition's start, where it has none) and the end. Groups without committed
offsets there are not shown.";

const DEAD_LETTERS_HELP: &str = "\
Looks into a dead-letter stream: records a dead_letter error policy wrote, with kafkaesk-dlq-*
headers naming the subscription, its group, the source topic, partition and offset, and the error.

  list (the default)  counts by subscription, source topic and error (its first line, the record's
                      own position in it replaced by *, at most 80 characters), with the oldest
                      and newest timestamps (UTC) of each group and the totals; --json prints one JSON object instead ({\"stream\",\"topic\",
                      \"total\",\"oldest\",\"newest\",\"groups\":[{\"subscription\",\"topic\",
                      \"error\",\"count\",\"oldest\",\"newest\"}],\"other\"}, timestamps in ms, null
                      for a missing header). At most 1000 groups; the records of any further group
                      are counted under \"other\".
  show                the records as JSON lines, in `kafkaesk read`'s format (see `kafkaesk read
                      --help`), kafkaesk-dlq-* headers among the headers.
  replay              republishes each record to the topic it came from (value, key and headers,
                      without the kafkaesk-dlq-* ones), as Application::replay_dead_letters does,
                      and prints `republished N, refused N, left N`: left counts the records the
                      filters did not select or the replay did not reach (--limit, a signal, an
                      error), which a later replay still replays.

The filters select by kafkaesk-dlq-subscription, by kafkaesk-dlq-error and by the record's
timestamp (when it was dead-lettered), and apply to all three; --limit counts selected records.

Replay follows only kafkaesk's headers, and only to a topic the subscription could have
consumed. Without the application's subscriptions, the broker decides: the consumer group named
by kafkaesk-dlq-group must have committed an offset past the record (beyond kafkaesk-dlq-offset)
in the partition named by kafkaesk-dlq-topic and kafkaesk-dlq-partition, as the group that
dead-lettered it did. So a record without a group (a subscription without one), of a group whose
commits have expired, or naming a topic or partition its group never consumed is refused; so
are the dead-letter stream itself, kafkaesk's own streams (kafkaesk.*), internal topics (_*,
connect-*) and topics that do not exist (never created). Refusals are printed on stderr with the
record's position and the reason, counted, and not tried again.

Each record is replayed at most once: the group kafkaesk-replay.<topic> remembers what was
republished or refused, including records past ones the filters left out (in its commits'
metadata, up to 2 KiB per partition; when that is full, the rest of the partition waits for a
later replay). A second identical replay republishes nothing; a later replay with other filters
replays what the first left. What was settled is committed every second and at the end;
SIGINT or SIGTERM stops the replay after the record in hand, commits, and prints the summary.
Run one replay of a stream at a time. On a terminal, a progress line is shown on stderr every
second.

Exit codes: 0 when the command finished (refusals included); 1 when the broker could not be
read, a record could not be, or a replay ended early; 2 for usage errors.";

const SCHEMAS_HELP: &str = "\
Writes into DIR, for every schema TARGET registered (every #[schema], or those of the Application
returned by `TARGET::path::to::app`), its JSON Schema as `<Id>-<version>.json` (draft 2020-12,
describing the envelope's `data`; `$id` is the file name, `title` the `Id:version` key), and the
service's AsyncAPI 3.0.0 document as `asyncapi.json`: a channel for each stream (the topic prefix
applied; a subscribed pattern such as `orders.*` is one channel whose address is the pattern),
`send` operations for the streams the schemas declare, `receive` operations for the
subscriptions (with their consumer group), and messages whose payload is the envelope
{\"schema\": \"Id:version\", \"data\": {...}}. The crate's name and version are the document's
title and version.

TARGET is built as for a worker; nothing connects to a broker. Other files in DIR are left alone.
A library serves the same documents with Application::json_schemas() and
Application::asyncapi(title, version).";

/// Runs a kafkaesk worker for a crate, or reads a broker's streams and groups.
#[derive(Debug, Parser)]
#[command(
    name = "kafkaesk",
    version,
    override_usage = USAGE,
    after_help = AFTER_HELP,
    subcommand_negates_reqs = true,
    args_conflicts_with_subcommands = true,
    disable_help_subcommand = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    #[command(flatten)]
    run: RunArgs,
}

/// A worker run: `kafkaesk TARGET` or `kafkaesk run TARGET`.
#[derive(Debug, Clone, clap::Args)]
struct RunArgs {
    /// The crate to run, optionally followed by `::path::to::app`.
    #[arg(required = true, value_name = "TARGET")]
    target: Option<String>,

    #[command(flatten)]
    worker: WorkerOptions,

    /// Build the target with the release profile.
    #[arg(long, env = "KAFKAESK_RELEASE")]
    release: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the worker of TARGET, as `kafkaesk TARGET` does (also for a crate named like a command).
    #[command(after_help = AFTER_HELP)]
    Run(RunArgs),
    /// Prints a stream's records (or those of every stream matching a pattern) as JSON lines.
    #[command(after_help = READ_HELP)]
    Read(read::ReadArgs),
    /// Lists the streams under the topic prefix: partitions, messages, retention.
    #[command(after_help = STREAMS_HELP)]
    Streams(listing::StreamsArgs),
    /// Lists the consumer groups with their lag on each stream they consume.
    #[command(after_help = GROUPS_HELP)]
    Groups(listing::GroupsArgs),
    /// Lists, shows or replays the records of a dead-letter stream.
    #[command(name = "dead-letters", after_help = DEAD_LETTERS_HELP)]
    DeadLetters(dead_letters::DeadLettersArgs),
    /// Writes the JSON Schema of every schema of TARGET, and its AsyncAPI document, into DIR.
    #[command(after_help = SCHEMAS_HELP)]
    Schemas(schemas::SchemasArgs),
}

/// The first paragraph of a clap error on one line, without its `error: `
/// prefix: a missing argument's name is on the line after the message.
fn one_line(err: &clap::Error) -> String {
    let text = err.render().to_string();
    let first = text
        .lines()
        .take_while(|line| !line.trim().is_empty())
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ");
    first.strip_prefix("error: ").unwrap_or(&first).to_owned()
}

/// The runner, with the worker flags as arguments. librdkafka settings go
/// through the environment instead, or as the path of their file: they may
/// hold secrets, which `ps` shows for arguments. The runner removes them
/// from its environment once read.
fn runner_command(runner: &std::path::Path, options: &WorkerOptions) -> std::process::Command {
    let mut command = std::process::Command::new(runner);
    command.args(worker_args(options));
    command.env_remove(kafkaesk::worker::KAFKA_SETTINGS_ENV);
    if let Some(settings) = &options.connection.kafka_settings {
        command.env(
            kafkaesk::worker::KAFKA_SETTINGS_ENV,
            settings_json(settings),
        );
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
    let connection = &options.connection;
    if !connection.kafka_servers.is_empty() {
        args.push(format!(
            "--kafka-servers={}",
            connection.kafka_servers.join(",")
        ));
    }
    if let Some(file) = &connection.kafka_settings_file {
        args.push(format!("--kafka-settings-file={}", file.path.display()));
    }
    if let Some(prefix) = &connection.topic_prefix {
        args.push(format!("--topic-prefix={prefix}"));
    }
    if let Some(factor) = options.replication_factor {
        args.push(format!("--replication-factor={factor}"));
    }
    if let Some(version) = &connection.api_version {
        args.push(format!("--api-version={version}"));
    }
    if let Some(prefix) = &options.transactional_id {
        args.push(format!("--transactional-id={prefix}"));
    }
    if let Some(name) = &options.service_name {
        args.push(format!("--service-name={name}"));
    }
    if let Some(mode) = &options.schema_contracts {
        args.push(format!("--schema-contracts={mode}"));
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
    let run = match cli.command {
        None => match implicit_target(&cli.run) {
            Ok(()) => cli.run,
            Err(message) => {
                eprintln!("error: {message}");
                return ExitCode::from(2);
            }
        },
        Some(Command::Run(run)) => run,
        Some(Command::Read(args)) => return inspect(read_command(args)),
        Some(Command::Streams(args)) => return inspect(listing::streams(args)),
        Some(Command::Groups(args)) => return inspect(listing::groups(args)),
        Some(Command::DeadLetters(args)) => return inspect(dead_letters::run(args)),
        Some(Command::Schemas(args)) if args.check => return inspect(schemas::check(args)),
        Some(Command::Schemas(args)) => {
            return schemas::run(args).unwrap_or_else(|message| {
                eprintln!("error: {message}");
                ExitCode::from(2)
            })
        }
    };
    match run_worker(run) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

/// The names `kafkaesk TARGET` does not take as a target.
const COMMANDS: [&str; 6] = [
    "run",
    "read",
    "streams",
    "groups",
    "dead-letters",
    "schemas",
];

/// Refuses a command's name as a target: clap takes it for one only when
/// flags come first (`kafkaesk --topic-prefix p. read`), which must not run
/// a crate that `kafkaesk read` would not.
fn implicit_target(run: &RunArgs) -> Result<(), String> {
    match run.target.as_deref() {
        Some(name) if COMMANDS.contains(&name) => Err(format!(
            "`{name}` is a command: put the options after it (`kafkaesk {name} ... \
             --kafka-servers host:9092`); to run a crate named `{name}`, use \
             `kafkaesk run {name}` or its path, `kafkaesk ./{name}`"
        )),
        _ => Ok(()),
    }
}

/// `kafkaesk read`, whose errors while reading are reported as they come.
async fn read_command(args: read::ReadArgs) -> Result<(), Failure> {
    match read::run(args).await? {
        read::Outcome::Complete => Ok(()),
        // Nothing printed: the error itself says it all.
        read::Outcome::Errors { printed: 0, .. } => Err(Failure::Reported),
        read::Outcome::Errors { errors, printed } => Err(Failure::Runtime(format!(
            "{errors} error(s) while reading (above); the other {printed} record(s) were printed"
        ))),
    }
}

/// Runs a command that talks to the broker, and turns its outcome into an
/// exit code: 2 for usage errors, 1 for the rest.
fn inspect(command: impl std::future::Future<Output = Result<(), Failure>>) -> ExitCode {
    let runtime = match kafkaesk::worker::runtime() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(message)) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
        Err(Failure::Reported) => ExitCode::FAILURE,
    }
}

fn run_worker(mut run: RunArgs) -> Result<ExitCode, String> {
    // clap requires the target unless a command was given.
    let spec = run
        .target
        .ok_or_else(|| "no TARGET: give a crate to run (see --help)".to_owned())?;
    let target = target::resolve(&spec)?;
    // Schemas are registered under the crate's name, not the runner's.
    run.worker
        .service_name
        .get_or_insert_with(|| target.package.clone());
    #[cfg(not(all(unix, feature = "embedded-broker")))]
    if !run.worker.has_servers() {
        return Err("no Kafka servers: pass --kafka-servers host:9092 or set \
                    KAFKAESK_KAFKA_SERVERS (this kafkaesk was built without the \
                    embedded-broker feature)"
            .to_owned());
    }
    let runner = runner::build(&target, run.release)?;
    #[cfg(all(unix, feature = "embedded-broker"))]
    if !run.worker.has_servers() {
        return embedded::run(runner_command(&runner, &run.worker), &run.worker);
    }
    exec(runner_command(&runner, &run.worker))
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
        assert_eq!(cli.run.worker.connection.kafka_servers, ["a:1", "b:2"]);
        let args = worker_args(&cli.run.worker);
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
        let command = runner_command(std::path::Path::new("runner"), &cli.run.worker);
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
    fn a_settings_file_reaches_the_runner_as_its_path() {
        let dir =
            std::env::temp_dir().join(format!("kafkaesk-cli-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("kafka.json");
        std::fs::write(&file, r#"{"sasl.password":"s3cret","linger.ms":5}"#).unwrap();
        let path = file.to_string_lossy().into_owned();
        let cli = parse(&["examples/service", "--kafka-settings-file", &path]);
        let worker = &cli.run.worker;
        let read = worker.connection.kafka_settings_file.as_ref().unwrap();
        assert_eq!(read.settings.0["linger.ms"], "5");
        let command = runner_command(std::path::Path::new("runner"), worker);
        let args: Vec<String> = command
            .get_args()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect();
        assert!(
            args.contains(&format!("--kafka-settings-file={path}")),
            "{args:?}"
        );
        let shown = format!(
            "{args:?} {:?} {worker:?}",
            command.get_envs().collect::<Vec<_>>()
        );
        assert!(!shown.contains("s3cret"), "{shown}");
        // Inherited from this process, the variable is dropped unless the
        // runner is given settings.
        assert!(command
            .get_envs()
            .any(|(key, value)| key == "KAFKAESK_KAFKA_SETTINGS" && value.is_none()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_bad_settings_file_is_named_and_its_contents_are_not_shown() {
        let dir = std::env::temp_dir().join(format!("kafkaesk-cli-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("kafka.json");
        std::fs::write(&file, r#"{"sasl.password":"s3cret""#).unwrap();
        let path = file.to_string_lossy().into_owned();
        let err = Cli::try_parse_from(["kafkaesk", "streams", "--kafka-settings-file", &path])
            .unwrap_err();
        let text = one_line(&err);
        assert!(
            text.contains(&path) && text.contains("not valid JSON"),
            "{text}"
        );
        assert!(!text.contains("s3cret"), "{text}");
        let missing = dir.join("missing.json").to_string_lossy().into_owned();
        let err = Cli::try_parse_from(["kafkaesk", "streams", "--kafka-settings-file", &missing])
            .unwrap_err();
        assert!(one_line(&err).contains("cannot read"), "{}", one_line(&err));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("kafkaesk").chain(args.iter().copied()))
            .unwrap_or_else(|err| panic!("{args:?}: {}", one_line(&err)))
    }

    #[test]
    fn any_other_first_word_is_a_target_as_before() {
        let cli = parse(&["examples/service", "--kafka-servers", "a:1", "--release"]);
        assert!(cli.command.is_none());
        assert_eq!(cli.run.target.as_deref(), Some("examples/service"));
        assert!(cli.run.release);
        // Flags first still works for targets.
        let cli = parse(&["--topic-prefix", "p.", "svc::api::app"]);
        assert!(cli.command.is_none());
        assert_eq!(cli.run.target.as_deref(), Some("svc::api::app"));
        // Near misses are not taken for commands.
        let cli = parse(&["reader"]);
        assert_eq!(cli.run.target.as_deref(), Some("reader"));
        let err = Cli::try_parse_from(["kafkaesk"]).unwrap_err();
        assert!(one_line(&err).contains("TARGET"), "{}", one_line(&err));
    }

    #[test]
    fn read_is_a_command_and_a_crate_named_read_runs_with_run_or_its_path() {
        let cli = parse(&["read", "orders.*", "--from", "-24h", "--partition", "0"]);
        let Some(Command::Read(args)) = cli.command else {
            panic!("not read: {cli:?}")
        };
        assert_eq!(args.stream, "orders.*");
        assert_eq!(
            args.from,
            Some(kafkaesk::subscription::Position::Since(
                std::time::Duration::from_secs(24 * 3600)
            ))
        );
        assert_eq!(args.partitions, [0]);

        let cli = parse(&["run", "read", "--kafka-servers", "a:1"]);
        let Some(Command::Run(run)) = cli.command else {
            panic!("not run: {cli:?}")
        };
        assert_eq!(run.target.as_deref(), Some("read"));
        assert_eq!(run.worker.connection.kafka_servers, ["a:1"]);

        let cli = parse(&["./read", "--kafka-servers", "a:1"]);
        assert!(cli.command.is_none());
        assert_eq!(cli.run.target.as_deref(), Some("./read"));

        for command in ["streams", "groups"] {
            let cli = parse(&[command, "--json"]);
            assert!(cli.command.is_some(), "{command}: {cli:?}");
        }
        let err = Cli::try_parse_from(["kafkaesk", "run"]).unwrap_err();
        assert!(one_line(&err).contains("TARGET"), "{}", one_line(&err));
    }

    #[test]
    fn schemas_is_a_command_and_a_crate_named_schemas_runs_with_run_or_its_path() {
        let cli = parse(&[
            "schemas",
            "examples/service",
            "--out",
            "out",
            "--topic-prefix",
            "p.",
        ]);
        let Some(Command::Schemas(args)) = cli.command else {
            panic!("not schemas: {cli:?}")
        };
        assert_eq!(args.target.as_deref(), Some("examples/service"));
        assert_eq!(args.out.as_deref(), Some(std::path::Path::new("out")));
        assert_eq!(args.connection.topic_prefix.as_deref(), Some("p."));
        // No TARGET parses (room for commands that need none); running refuses it.
        let cli = parse(&["schemas"]);
        let Some(Command::Schemas(args)) = cli.command else {
            panic!("not schemas: {cli:?}")
        };
        assert!(args.check().unwrap_err().contains("no TARGET"));

        let cli = parse(&["run", "schemas", "--kafka-servers", "a:1"]);
        let Some(Command::Run(run)) = cli.command else {
            panic!("not run: {cli:?}")
        };
        assert_eq!(run.target.as_deref(), Some("schemas"));
        let cli = parse(&["./schemas"]);
        assert_eq!(cli.run.target.as_deref(), Some("./schemas"));
        let cli = parse(&["--topic-prefix", "p.", "schemas"]);
        let message = implicit_target(&cli.run).unwrap_err();
        assert!(message.contains("kafkaesk run schemas"), "{message}");
    }

    #[test]
    fn dead_letters_takes_a_stream_an_action_and_filters() {
        let cli = parse(&["dead-letters", "orders.dead"]);
        let Some(Command::DeadLetters(args)) = cli.command else {
            panic!("not dead-letters: {cli:?}")
        };
        assert_eq!(args.stream, "orders.dead");
        assert_eq!(args.action, dead_letters::Action::List);
        let cli = parse(&[
            "dead-letters",
            "orders.dead",
            "replay",
            "--subscription",
            "billing",
            "--error-contains",
            "timed out",
            "--since",
            "-1h",
            "--limit",
            "5",
            "--topic-prefix",
            "p.",
        ]);
        let Some(Command::DeadLetters(args)) = cli.command else {
            panic!("not dead-letters: {cli:?}")
        };
        assert_eq!(args.action, dead_letters::Action::Replay);
        assert_eq!(args.subscription.as_deref(), Some("billing"));
        assert_eq!(args.error_contains.as_deref(), Some("timed out"));
        assert_eq!(
            args.since,
            Some(kafkaesk::subscription::Position::Since(
                std::time::Duration::from_secs(3600)
            ))
        );
        assert_eq!(args.limit, Some(5));
        assert_eq!(args.connection.topic_prefix.as_deref(), Some("p."));
        let err = Cli::try_parse_from(["kafkaesk", "dead-letters", "d", "purge"]).unwrap_err();
        assert!(one_line(&err).contains("purge"), "{}", one_line(&err));
        let cli = parse(&["--topic-prefix", "p.", "dead-letters"]);
        let message = implicit_target(&cli.run).unwrap_err();
        assert!(message.contains("kafkaesk run dead-letters"), "{message}");
    }

    #[test]
    fn backward_with_follow_is_refused_before_connecting() {
        let cli = parse(&["read", "orders", "--backward", "--follow"]);
        let Some(Command::Read(args)) = cli.command else {
            panic!("not read: {cli:?}")
        };
        let Err(Failure::Usage(message)) = args.check() else {
            panic!("--backward --follow accepted")
        };
        assert!(
            message.contains("--backward cannot be used with --follow"),
            "{message}"
        );
        let cli = parse(&["read", "orders", "--backward", "--limit", "1"]);
        let Some(Command::Read(args)) = cli.command else {
            panic!("not read: {cli:?}")
        };
        assert!(args.check().is_ok());
    }

    #[test]
    fn a_bad_position_is_a_one_line_error_naming_the_flag() {
        let err =
            Cli::try_parse_from(["kafkaesk", "read", "orders", "--from", "yesterday"]).unwrap_err();
        let line = one_line(&err);
        assert!(
            line.contains("--from") && line.contains("`yesterday` is not a position"),
            "{line}"
        );
    }

    #[test]
    fn worker_flags_before_a_command_are_refused_not_ignored() {
        let err = Cli::try_parse_from(["kafkaesk", "--topic-prefix", "p.", "read", "orders"])
            .map(|cli| format!("{cli:?}"))
            .unwrap_err();
        assert_eq!(err.exit_code(), 2, "{}", one_line(&err));
        // Without a stream after it, clap takes `read` for the target.
        let cli = parse(&["--topic-prefix", "p.", "read"]);
        assert!(cli.command.is_none());
        let message = implicit_target(&cli.run).unwrap_err();
        assert!(message.contains("kafkaesk run read"), "{message}");
        assert!(implicit_target(&parse(&["--topic-prefix", "p.", "./read"]).run).is_ok());
        assert!(implicit_target(&parse(&["read::app"]).run).is_ok());
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
