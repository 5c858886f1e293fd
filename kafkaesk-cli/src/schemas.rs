//! `kafkaesk schemas TARGET --out DIR`: writes the JSON Schema of every
//! schema a crate registered (`<Id>-<version>.json`) and its AsyncAPI
//! document (`asyncapi.json`) into a directory.
//!
//! `kafkaesk schemas --check` reads the schema registrations on a broker's
//! `kafkaesk.schemas` stream instead (see `kafkaesk::app::registration`),
//! prints every conflict and incompatible version, and exits with 1 when
//! there is any: a check for CI pipelines.
//!
//! The crate is built with the generated runner, as for a worker, and the
//! runner writes the files (its `--export-schemas DIR` mode, in
//! `kafkaesk::worker`): the documents are those of the application the
//! worker would run, with the same flags applied, and what
//! `Application::write_schemas` gives a service itself.

use std::path::PathBuf;
use std::process::ExitCode;

use kafkaesk::worker::ConnectionOptions;

use crate::connection::{connect, Failure};
use crate::{runner, target};

/// The flags of `kafkaesk schemas`.
#[derive(Debug, Clone, clap::Args)]
pub struct SchemasArgs {
    /// The crate whose schemas to write, optionally followed by `::path::to::app`.
    #[arg(value_name = "TARGET")]
    pub target: Option<String>,

    /// The directory to write into, created if needed (required with a TARGET).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// The broker (with --check), or the document's `servers` and the channels'
    /// addresses (with a TARGET).
    #[command(flatten)]
    pub connection: ConnectionOptions,

    /// Replication factor of topics kafkaesk creates: the channels' `replicas`
    /// [default: min(number of servers, 3)].
    #[arg(long, env = "KAFKAESK_REPLICATION_FACTOR", value_parser = clap::value_parser!(i32).range(1..))]
    pub replication_factor: Option<i32>,

    /// Build the target with the release profile.
    #[arg(long, env = "KAFKAESK_RELEASE")]
    pub release: bool,

    /// Instead of writing a crate's schemas, check those every service registered on the
    /// broker's `kafkaesk.schemas` stream: list conflicts and incompatible versions, and exit
    /// with 1 when there is any. Needs --kafka-servers, takes no TARGET.
    #[arg(long, conflicts_with_all = ["target", "out", "release"])]
    pub check: bool,
}

impl SchemasArgs {
    /// Checks the flags before anything is built; the message is a usage error.
    pub fn check(&self) -> Result<(&str, &PathBuf), String> {
        match (&self.target, &self.out) {
            (Some(target), Some(out)) => Ok((target, out)),
            (Some(_), None) => Err("--out DIR is required with a TARGET: \
                                    `kafkaesk schemas TARGET --out DIR`"
                .to_owned()),
            (None, _) => Err("no TARGET: `kafkaesk schemas TARGET --out DIR` writes the \
                              schemas a crate registered (see `kafkaesk schemas --help`)"
                .to_owned()),
        }
    }

    /// The runner's flags: its export mode, with the crate's name and
    /// version as the document's title and version.
    fn runner_args(&self, out: &std::path::Path, target: &target::Target) -> Vec<String> {
        let mut args = vec![
            format!("--export-schemas={}", out.display()),
            format!("--export-title={}", target.package),
            format!("--export-version={}", target.version),
        ];
        let connection = &self.connection;
        if !connection.kafka_servers.is_empty() {
            args.push(format!(
                "--kafka-servers={}",
                connection.kafka_servers.join(",")
            ));
        }
        if let Some(prefix) = &connection.topic_prefix {
            args.push(format!("--topic-prefix={prefix}"));
        }
        if let Some(factor) = self.replication_factor {
            args.push(format!("--replication-factor={factor}"));
        }
        args
    }
}

/// `kafkaesk schemas --check`: every finding among the registrations on
/// the broker, on stdout; exit code 1 when there is any.
pub async fn check(args: SchemasArgs) -> Result<(), Failure> {
    let app = connect(&args.connection).await?;
    let registrations = app.schema_registrations().await?;
    let findings = kafkaesk::schema::contract::check(&registrations);
    let services: std::collections::BTreeSet<&str> =
        registrations.iter().map(|r| r.service.as_str()).collect();
    println!(
        "{} schema registrations by {} services on {}",
        registrations.len(),
        services.len(),
        app.settings()
            .topic(kafkaesk::schema::contract::SCHEMAS_STREAM)
    );
    for finding in &findings {
        let kind = if finding.is_conflict() {
            "conflict"
        } else {
            "incompatible"
        };
        println!("{kind}: {finding}");
    }
    if findings.is_empty() {
        println!("no conflicts, no incompatible versions");
        Ok(())
    } else {
        Err(Failure::Reported)
    }
}

/// Builds the target's runner and replaces this process with it in export
/// mode. Errors before that are usage errors (exit code 2).
pub fn run(args: SchemasArgs) -> Result<ExitCode, String> {
    let (spec, out) = args.check()?;
    let target = target::resolve(spec)?;
    let runner = runner::build(&target, args.release)?;
    let mut command = std::process::Command::new(runner);
    command.args(args.runner_args(out, &target));
    crate::exec(command)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(target: Option<&str>, out: Option<&str>) -> SchemasArgs {
        SchemasArgs {
            target: target.map(str::to_owned),
            out: out.map(PathBuf::from),
            connection: ConnectionOptions {
                kafka_servers: vec!["a:1".into(), "b:2".into()],
                topic_prefix: Some("p.".into()),
                ..ConnectionOptions::default()
            },
            replication_factor: None,
            release: false,
            check: false,
        }
    }

    #[test]
    fn a_target_needs_an_out_dir() {
        assert!(args(Some("svc"), Some("d")).check().is_ok());
        let err = args(Some("svc"), None).check().unwrap_err();
        assert!(err.contains("--out DIR is required"), "{err}");
        let err = args(None, Some("d")).check().unwrap_err();
        assert!(err.contains("no TARGET"), "{err}");
    }

    #[test]
    fn the_runner_exports_under_the_crate_name_and_version_with_the_flags() {
        let target = target::Target {
            package: "svc".into(),
            version: "1.2.3".into(),
            manifest_dir: "/s".into(),
            app_path: None,
            workspace_root: "/s".into(),
            target_dir: "/s/target".into(),
            kafkaesk: target::KafkaeskSource::Registry("0.1.0".into()),
        };
        let args = args(Some("svc"), Some("out"));
        assert_eq!(
            args.runner_args(std::path::Path::new("out"), &target),
            [
                "--export-schemas=out",
                "--export-title=svc",
                "--export-version=1.2.3",
                "--kafka-servers=a:1,b:2",
                "--topic-prefix=p.",
            ]
        );
    }
}
