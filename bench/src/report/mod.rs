//! The table and `BENCHMARKS.md`, from the measured numbers; the plots it
//! shows are drawn by `crate::plot`, the figures come from `crate::stats`.

mod context;
mod markdown;
mod peer;
mod settings;
mod targets;
mod terminal;

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

pub use context::Context;
pub use terminal::{latency_progress, memory_progress, progress, terminal_table};

use crate::plot;
use crate::scenarios::latency::LatencyResult;
use crate::scenarios::memory::{DrainReport, Side};
use crate::stats::{med, Med};
use crate::{Results, Summary};

/// A drain's side as the tables name it, with the concurrency it drained at.
fn side_label(report: &DrainReport) -> String {
    match report.side {
        Side::Baseline => "rdkafka baseline".to_owned(),
        Side::Kafkaesk => format!("kafkaesk c={}", report.concurrency),
        #[cfg(feature = "ruststream")]
        Side::Ruststream => format!("RustStream workers={}", report.concurrency),
    }
}

/// The latency runs of each side, by the name the report gives the side.
fn latency_sides(results: &Results) -> [(&'static str, &[LatencyResult]); 3] {
    [
        ("rdkafka baseline", &results.latency_baseline),
        ("kafkaesk", &results.latency_kafkaesk),
        ("RustStream", &results.latency_ruststream),
    ]
}

/// Whether RustStream ran (`--features ruststream`): its section, targets
/// and settings appear only then.
fn ruststream_ran(results: &Results) -> bool {
    !results.consume_ruststream.is_empty()
        || !results.publish_ruststream.is_empty()
        || !results.latency_ruststream.is_empty()
}

/// A row's throughput and CPU against the baseline's, as table cells; the
/// baseline's own row (no baseline to compare with) is 1.00 on both.
fn ratio_cells(m: &Med, base: Option<&Med>) -> (String, String) {
    match base {
        Some(b) => (
            format!("{:.2}", m.rate / b.rate),
            format!("{:.2}", m.cpu_us / b.cpu_us),
        ),
        None => ("1.00".into(), "1.00".into()),
    }
}

/// One row of a throughput table: scenario, side, its median, and the median
/// of the scenario's baseline (`None` on the baseline's own row).
type ThroughputRow = (String, String, Med, Option<Med>);

/// Rows of the throughput tables, every side of every scenario that ran: the
/// terminal prints them in one table, `BENCHMARKS.md` in one per scenario.
fn throughput_rows(results: &Results) -> Vec<ThroughputRow> {
    let mut rows = Vec::new();
    let base_c = med(&results.consume_baseline);
    if let Some(b) = base_c {
        rows.push(("consume".into(), "rdkafka baseline".into(), b, None));
    }
    for (c, runs) in &results.consume_kafkaesk {
        if let Some(m) = med(runs) {
            rows.push(("consume".into(), format!("kafkaesk c={c}"), m, base_c));
        }
    }
    for (w, runs) in &results.consume_ruststream {
        if let Some(m) = med(runs) {
            rows.push((
                "consume".into(),
                format!("RustStream workers={w}"),
                m,
                base_c,
            ));
        }
    }
    for (label, runs) in &results.python_consume {
        if let Some(m) = med(runs) {
            rows.push((
                "consume".into(),
                format!("Python kafkaesk c={label}"),
                m,
                base_c,
            ));
        }
    }
    let base_p = med(&results.publish_baseline);
    if let Some(b) = base_p {
        rows.push(("publish".into(), "rdkafka baseline".into(), b, None));
    }
    if let Some(m) = med(&results.publish_kafkaesk) {
        rows.push(("publish".into(), "kafkaesk (validated)".into(), m, base_p));
    }
    if let Some(m) = med(&results.publish_kafkaesk_plain) {
        rows.push((
            "publish".into(),
            "kafkaesk (validated), not idempotent".into(),
            m,
            base_p,
        ));
    }
    if let Some(m) = med(&results.publish_kafkaesk_transactional) {
        rows.push((
            "publish".into(),
            format!(
                "kafkaesk (validated), transactions of {}",
                results.transaction_size
            ),
            m,
            base_p,
        ));
    }
    if let Some(m) = med(&results.publish_ruststream) {
        rows.push(("publish".into(), "RustStream".into(), m, base_p));
    }
    if let Some(m) = med(&results.python_publish) {
        rows.push(("publish".into(), "Python kafkaesk".into(), m, base_p));
    }
    rows
}

/// Writes `BENCHMARKS.md` at `path` and its plots under `bench/plots/` beside
/// it, so that the report's image links resolve.
pub fn write(path: &Path, results: &Results, context: &Context, summary: &Summary) -> Result<()> {
    let dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    // Made here, not by the plots alone: a run with nothing to plot (`--only
    // micro`) still writes its report.
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    plot::write_all(&dir, results)?;
    std::fs::write(path, markdown::markdown(results, context, summary))
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use super::*;
    use crate::kafka::ExtraSettings;
    use crate::scenarios::latency::LatencyResult;
    use crate::RunResult;

    /// A run of 200,000 messages at `rate` msg/s costing `cpu_us` µs each.
    fn run(rate: f64, cpu_us: f64) -> RunResult {
        let messages = 200_000;
        RunResult {
            messages,
            seconds: messages as f64 / rate,
            cpu: Duration::from_secs_f64(cpu_us * messages as f64 / 1e6),
        }
    }

    /// A latency run of 10,000 samples with these percentiles.
    fn latency(p50_ms: f64, p99_ms: f64) -> LatencyResult {
        LatencyResult {
            samples: 10_000,
            p50_ms,
            p99_ms,
            max_ms: p99_ms + 2.0,
        }
    }

    /// A drain of a million messages by `side` peaking at `peak_mb`.
    fn drain(side: Side, concurrency: usize, peak_mb: f64) -> DrainReport {
        DrainReport {
            side,
            concurrency,
            messages: 1_000_000,
            seconds: 2.0,
            cpu_seconds: 1.8,
            start_rss_kib: 8_400,
            peak_rss_kib: (peak_mb * 1e6 / 1024.0) as u64,
        }
    }

    /// Every side of every scenario, with figures shaped like a real run's
    /// (Python at a thirtieth of the Rust rates); RustStream with the feature.
    pub(crate) fn sample_results() -> Results {
        let mut results = Results {
            consume_baseline: vec![run(1_297_172.0, 1.00), run(1_250_000.0, 1.10)],
            publish_baseline: vec![run(472_845.0, 2.86)],
            publish_kafkaesk: vec![run(411_693.0, 3.05)],
            publish_kafkaesk_plain: vec![run(437_979.0, 3.00)],
            python_publish: vec![run(14_607.0, 67.63)],
            python_versions: Some("kafkaesk 0.8.5 on Python 3.11.7".into()),
            latency_baseline: vec![latency(12.25, 17.48)],
            latency_kafkaesk: vec![latency(12.00, 17.33)],
            memory: vec![
                drain(Side::Baseline, 1, 38.7),
                drain(Side::Kafkaesk, 100, 32.3),
            ],
            ..Results::default()
        };
        results
            .consume_kafkaesk
            .insert(1, vec![run(684_183.0, 1.75)]);
        results
            .consume_kafkaesk
            .insert(100, vec![run(843_459.0, 1.51)]);
        results
            .python_consume
            .insert("default".into(), vec![run(7_632.0, 130.77)]);
        results
            .python_consume
            .insert("500".into(), vec![run(24_342.0, 41.24)]);
        #[cfg(feature = "ruststream")]
        {
            results
                .consume_ruststream
                .insert(1, vec![run(215_000.0, 2.40)]);
            results
                .consume_ruststream
                .insert(100, vec![run(420_000.0, 2.10)]);
            results.publish_ruststream = vec![run(205_000.0, 4.10)];
            results.latency_ruststream = vec![latency(13.10, 19.20)];
            results.ruststream_versions = Some("ruststream 0.7.7".into());
            results.memory.push(drain(Side::Ruststream, 100, 41.0));
        }
        results
    }

    /// The options of a full run without extra settings.
    pub(crate) fn sample_summary() -> Summary {
        Summary {
            command: "cargo run -p kafkaesk-bench --release --".into(),
            messages: 200_000,
            rounds: 1,
            python_messages: 200_000,
            python_concurrency: 500,
            latency_rate: 1000,
            latency_seconds: 10.0,
            backlog: 1_000_000,
            micro_messages: 100_000,
            quick: false,
            settings: ExtraSettings::default(),
        }
    }

    #[test]
    fn a_run_with_nothing_to_plot_writes_its_report_into_a_new_directory() {
        let dir =
            std::env::temp_dir().join(format!("kafkaesk-bench-report-{}", std::process::id()));
        let path = dir.join("partial").join("BENCHMARKS.md");
        write(
            &path,
            &Results::default(),
            &Context::default(),
            &sample_summary(),
        )
        .unwrap();
        assert!(std::fs::read_to_string(&path)
            .unwrap()
            .starts_with("# Benchmarks"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
