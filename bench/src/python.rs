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

/// librdkafka properties and their aiokafka equivalents, which Python
/// kafkaesk passes through from its `kafka_settings`.
const AIOKAFKA_NAMES: [(&str, &str); 6] = [
    ("fetch.wait.max.ms", "fetch_max_wait_ms"),
    ("fetch.min.bytes", "fetch_min_bytes"),
    ("fetch.max.bytes", "fetch_max_bytes"),
    ("max.partition.fetch.bytes", "max_partition_fetch_bytes"),
    ("linger.ms", "linger_ms"),
    ("max.poll.interval.ms", "max_poll_interval_ms"),
];

/// librdkafka properties for a behaviour aiokafka does not have, left out of
/// Python kafkaesk's settings: aiokafka fetches again as soon as a
/// partition's buffered records are taken, with no back-off to shorten.
const LIBRDKAFKA_ONLY: [&str; 1] = ["fetch.queue.backoff.ms"];

/// aiokafka's name for the librdkafka property `key`, if it has one.
pub(crate) fn aiokafka_name(key: &str) -> Option<&'static str> {
    AIOKAFKA_NAMES
        .iter()
        .find(|(rd, _)| *rd == key)
        .map(|(_, name)| *name)
}

/// The aiokafka form of `--setting`s, as a JSON object of integers. A setting
/// aiokafka has no equivalent for is an error: the comparison would no
/// longer be like for like.
fn aiokafka_settings(settings: &[(String, String)]) -> Result<serde_json::Value> {
    let mut out = serde_json::Map::new();
    for (key, value) in settings {
        if LIBRDKAFKA_ONLY.contains(&key.as_str()) {
            continue;
        }
        let Some(name) = aiokafka_name(key) else {
            bail!(
                "--setting {key} has no aiokafka equivalent for Python kafkaesk; \
                 leave Python out with --only, or use one of: {}",
                AIOKAFKA_NAMES.map(|(rd, _)| rd).join(", ")
            );
        };
        let number: u64 = value
            .parse()
            .with_context(|| format!("--setting {key}={value}: expected a whole number"))?;
        out.insert(name.to_owned(), number.into());
    }
    Ok(serde_json::Value::Object(out))
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
    /// The `--setting`s that aiokafka also has are passed to it, so both sides
    /// run against the broker the same way.
    pub fn run(&mut self, args: &[String], timeout: Duration) -> Result<RunResult> {
        let settings = aiokafka_settings(&crate::kafka::extra_settings().both)?;
        let output = Command::new(&self.python)
            .arg(&self.script)
            .args(args)
            .arg("--kafka-settings")
            .arg(settings.to_string())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_map_to_aiokafka_names_or_fail() {
        let settings = [
            ("fetch.wait.max.ms".to_owned(), "5".to_owned()),
            ("fetch.queue.backoff.ms".to_owned(), "10".to_owned()),
        ];
        let json = aiokafka_settings(&settings).unwrap();
        assert_eq!(json, serde_json::json!({"fetch_max_wait_ms": 5}));
        let unknown = [("queued.max.messages.kbytes".to_owned(), "1".to_owned())];
        assert!(aiokafka_settings(&unknown).is_err());
    }
}
