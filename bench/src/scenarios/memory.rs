//! Scenario 5: peak memory while draining a large backlog.
//!
//! Each drain runs in a child process (this binary's hidden `drain` command),
//! so its peak RSS (`VmHWM`) is its own and not the benchmark's, which holds
//! other scenarios' data.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::consume::ConsumeSpec;

/// Which consumer a drain uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The hand-written rdkafka consumer.
    Baseline,
    /// kafkaesk.
    Kafkaesk,
    /// RustStream (`--features ruststream`).
    #[cfg(feature = "ruststream")]
    Ruststream,
}

/// What a drain child reports on its last stdout line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DrainReport {
    /// Which consumer drained.
    pub side: Side,
    /// kafkaesk's concurrency, or RustStream's workers (1 for the baseline).
    pub concurrency: usize,
    /// Messages consumed.
    pub messages: usize,
    /// First to last message, seconds.
    pub seconds: f64,
    /// CPU time of the child, seconds.
    pub cpu_seconds: f64,
    /// RSS before consuming started, KiB.
    pub start_rss_kib: u64,
    /// Peak RSS of the child, KiB.
    pub peak_rss_kib: u64,
}

/// Runs one drain in a child process and reads its report.
pub fn run_child(
    side: Side,
    spec: &ConsumeSpec,
    concurrency: usize,
    extra_args: &[String],
) -> Result<DrainReport> {
    let exe: PathBuf = std::env::current_exe().context("locating the benchmark binary")?;
    let output = Command::new(&exe)
        .arg("drain")
        .arg("--side")
        .arg(match side {
            Side::Baseline => "baseline",
            Side::Kafkaesk => "kafkaesk",
            #[cfg(feature = "ruststream")]
            Side::Ruststream => "ruststream",
        })
        .args(["--kafka", &spec.servers])
        .args(["--prefix", &spec.prefix])
        .args(["--stream", &spec.stream])
        .args(["--group", &spec.group])
        .args(["--messages", &spec.messages.to_string()])
        .args(["--concurrency", &concurrency.to_string()])
        .args(["--timeout-seconds", &spec.timeout.as_secs().to_string()])
        .args(extra_args)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {} drain", exe.display()))?;
    if !output.status.success() {
        bail!("the {side:?} drain child failed: {}", output.status);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).with_context(|| format!("reading the drain report {last:?}"))
}
