//! What the terminal shows: a line per run as it finishes, and the table
//! at the end.

use std::fmt::Write as _;

use super::peer::peer_targets;
use super::targets::targets;
use super::{latency_sides, ratio_cells, ruststream_ran, side_label, throughput_rows};
use crate::scenarios::latency::LatencyResult;
use crate::scenarios::memory::DrainReport;
use crate::stats::{drain_med, fmt_rate, latency_med, mb};
use crate::{Results, RunResult, Summary};

/// Prints one run as it finishes, so a long benchmark shows progress.
pub fn progress(scenario: &str, side: &str, run: &RunResult) {
    eprintln!(
        "  {scenario:<8} {side:<26} {:>10.0} msg/s  {:>7.2} µs CPU/msg  ({} msgs, {:.2} s)",
        run.rate(),
        run.cpu_us(),
        run.messages,
        run.seconds
    );
}

/// Prints one latency run, so a long benchmark shows progress.
pub fn latency_progress(side: &str, run: &LatencyResult) {
    eprintln!(
        "  latency  {side:<26} p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  ({} msgs)",
        run.p50_ms, run.p99_ms, run.max_ms, run.samples
    );
}

/// Prints one memory drain, so a long benchmark shows progress.
pub fn memory_progress(report: &DrainReport) {
    eprintln!(
        "  memory   {:<26} peak RSS {:.1} MB (start {:.1} MB), {:.0} msg/s",
        side_label(report),
        mb(report.peak_rss_kib),
        mb(report.start_rss_kib),
        drain_med(report).rate
    );
}

/// The table printed at the end of a run: the figures of `BENCHMARKS.md`
/// at a glance, for a run read in the terminal.
pub fn terminal_table(results: &Results, summary: &Summary) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nkafkaesk benchmarks: medians of {} round(s), {} messages per run",
        summary.rounds, summary.messages
    );
    let _ = writeln!(
        out,
        "{:<8} {:<26} {:>12} {:>12} {:>10} {:>10}",
        "scenario", "side", "msg/s", "CPU µs/msg", "× rate", "× CPU"
    );
    for (scenario, side, m, base) in throughput_rows(results) {
        let (rr, rc) = ratio_cells(&m, base.as_ref());
        let _ = writeln!(
            out,
            "{scenario:<8} {side:<26} {:>12} {:>12.2} {rr:>10} {rc:>10}",
            fmt_rate(m.rate),
            m.cpu_us
        );
    }
    for (side, runs) in latency_sides(results) {
        if let Some(l) = latency_med(runs) {
            let _ = writeln!(
                out,
                "latency  {side:<26} p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                l.p50_ms, l.p99_ms, l.max_ms
            );
        }
    }
    for report in &results.memory {
        let _ = writeln!(
            out,
            "memory   {:<26} peak RSS {:.1} MB",
            side_label(report),
            mb(report.peak_rss_kib)
        );
    }
    if let Some(m) = &results.micro {
        let _ = writeln!(
            out,
            "micro    decode: serde_json {:.0} ns, kafkaesk decode + dispatch {:.0} ns ({:.2} ×); \
         encode: serde_json {:.0} ns, kafkaesk validated {:.0} ns ({:.2} ×)",
            m.plain_decode_ns,
            m.dispatch_ns,
            m.dispatch_ns / m.plain_decode_ns,
            m.plain_encode_ns,
            m.kafkaesk_encode_ns,
            m.kafkaesk_encode_ns / m.plain_encode_ns
        );
    }
    if let Some(err) = &results.python_error {
        let _ = writeln!(out, "python   {}", err.lines().next().unwrap_or_default());
    }
    if ruststream_ran(results) {
        let _ = writeln!(out, "\nissue 19 (against the Rust peer):");
        for t in peer_targets(results) {
            let _ = writeln!(
                out,
                "  {:<44} {:<30} {:<52} {}",
                t.name,
                t.goal,
                t.measured,
                t.status.replace("**", "")
            );
        }
    }
    let _ = writeln!(out, "\ntargets:");
    for t in targets(results) {
        let _ = writeln!(
            out,
            "  {:<32} {:<26} {:<44} {}",
            t.name,
            t.goal,
            t.measured,
            t.status.replace("**", "")
        );
    }
    out
}
