//! The machine, broker and build a run measured, for the report's
//! "Where the numbers come from" table.

use std::process::Command;

/// Where the numbers came from: a figure means little without the machine,
/// broker and build that produced it.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// When the run ended, UTC.
    pub(super) date: String,
    /// CPU model, logical CPUs and clock, from /proc/cpuinfo.
    pub(super) cpu: String,
    /// The CPUs this process may use, which can be fewer than the machine's.
    pub(super) nproc: String,
    /// Memory as `free -m` saw it at the end of the run.
    pub(super) memory: String,
    /// `uname -srm`.
    pub(super) kernel: String,
    /// The broker as the run's `--broker-name` named it.
    pub(super) broker: String,
    /// The kafkaesk commit measured, and whether it had local changes.
    pub(super) source: String,
    /// `rustc -V`.
    pub(super) rustc: String,
}

/// The trimmed stdout of a command that succeeded: a missing tool leaves
/// its fact out instead of failing the run.
fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

impl Context {
    /// Reads the machine's facts: /proc/cpuinfo, nproc, free, uname, git, rustc.
    pub fn gather(broker: &str) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|rest| rest.trim_start_matches([' ', '\t', ':']).trim().to_owned())
            .unwrap_or_else(|| "unknown".to_owned());
        let logical = cpuinfo
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count();
        let mhz = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("cpu MHz"))
            .map(|rest| rest.trim_start_matches([' ', '\t', ':']).trim().to_owned());
        let cpu = match mhz {
            Some(mhz) => format!("{model}, {logical} logical CPUs in /proc/cpuinfo, {mhz} MHz"),
            None => format!("{model}, {logical} logical CPUs in /proc/cpuinfo"),
        };
        let nproc = command_output("nproc", &[]).unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.to_string())
                .unwrap_or_default()
        });
        let memory = command_output("free", &["-m"])
            .and_then(|out| {
                out.lines()
                    .find(|l| l.starts_with("Mem:"))
                    .map(|l| {
                        let cols: Vec<&str> = l.split_whitespace().collect();
                        format!(
                            "{} MiB total, {} MiB used, {} MiB available (free -m at the end of the run)",
                            cols.get(1).unwrap_or(&"?"),
                            cols.get(2).unwrap_or(&"?"),
                            cols.last().unwrap_or(&"?")
                        )
                    })
            })
            .unwrap_or_else(|| "unknown".to_owned());
        let kernel = command_output("uname", &["-srm"]).unwrap_or_default();
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        let commit = command_output("git", &["-C", root, "rev-parse", "--short", "HEAD"]);
        let dirty = command_output(
            "git",
            &[
                "-C",
                root,
                "status",
                "--porcelain",
                "--",
                "kafkaesk",
                "kafkaesk-macros",
            ],
        )
        .map(|s| !s.is_empty());
        let source = match (commit, dirty) {
            (Some(c), Some(true)) => {
                format!("commit {c} plus uncommitted changes in kafkaesk/ (work in progress)")
            }
            (Some(c), _) => format!("commit {c}"),
            _ => "unknown".to_owned(),
        };
        Context {
            date: command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_default(),
            cpu,
            nproc,
            memory,
            kernel,
            broker: broker.to_owned(),
            source,
            rustc: command_output("rustc", &["-V"]).unwrap_or_default(),
        }
    }
}
