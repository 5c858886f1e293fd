//! Scenario 6: Python kafkaesk 0.8.5 in a pinned virtual environment.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::RunResult;

/// The Python side: an interpreter in the pinned environment and the script.
#[derive(Debug, Clone)]
pub struct Python {
    python: PathBuf,
    script: PathBuf,
    /// `kafkaesk` and `python` versions as the script reports them.
    pub versions: Option<String>,
}

/// `bench/python` in the source tree.
fn python_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("python")
}

impl Python {
    /// Creates (or reuses) the virtual environment with `setup.sh`.
    pub fn setup(venv: &Path) -> Result<Self> {
        let dir = python_dir();
        let status = Command::new("bash")
            .arg(dir.join("setup.sh"))
            .arg(venv)
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .status()
            .context("running bench/python/setup.sh")?;
        if !status.success() {
            bail!("bench/python/setup.sh failed ({status}); see its output above");
        }
        Ok(Python {
            python: venv.join("bin").join("python"),
            script: dir.join("bench.py"),
            versions: None,
        })
    }

    /// Runs `bench.py` with `args` and reads the JSON result on its last line.
    pub fn run(&mut self, args: &[String], timeout: Duration) -> Result<RunResult> {
        let output = Command::new(&self.python)
            .arg(&self.script)
            .args(args)
            .arg("--timeout")
            .arg(timeout.as_secs().to_string())
            .stderr(Stdio::piped())
            .output()
            .context("running bench/python/bench.py")?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "python kafkaesk {} failed ({}):\n{}",
                args.first().map(String::as_str).unwrap_or_default(),
                output.status,
                tail.join("\n")
            );
        }
        let last = stdout.lines().last().unwrap_or_default();
        let value: serde_json::Value = serde_json::from_str(last)
            .with_context(|| format!("reading the python result {last:?}"))?;
        let number = |key: &str| {
            value[key]
                .as_f64()
                .with_context(|| format!("python result without `{key}`: {last}"))
        };
        if self.versions.is_none() {
            self.versions = Some(format!(
                "kafkaesk {} on Python {}",
                value["kafkaesk_version"].as_str().unwrap_or("?"),
                value["python"].as_str().unwrap_or("?")
            ));
        }
        Ok(RunResult {
            messages: number("messages")? as usize,
            seconds: number("seconds")?,
            cpu: Duration::from_secs_f64(number("cpu_seconds")?.max(0.0)),
        })
    }
}
