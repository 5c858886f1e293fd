//! The figures derived from the runs: medians, best settings, ratios and
//! units. Both the report and the plots print them, so they live apart from
//! either; otherwise the two would import each other.

use std::collections::BTreeMap;

use kafkaesk_bench::measure::median;

use crate::scenarios::latency::LatencyResult;
use crate::scenarios::memory::DrainReport;
use crate::{Results, RunResult};

/// Median throughput and CPU per message of a set of runs: the pair every
/// table, target and plot compares, so single noisy runs do not decide.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Med {
    /// Messages per second.
    pub(crate) rate: f64,
    /// CPU microseconds per message.
    pub(crate) cpu_us: f64,
}

/// The medians of `runs`, or `None` when the side did not run, so that a
/// missing side shows as "n/a" instead of a made-up zero.
pub(crate) fn med(runs: &[RunResult]) -> Option<Med> {
    if runs.is_empty() {
        return None;
    }
    let rates: Vec<f64> = runs.iter().map(RunResult::rate).collect();
    let cpus: Vec<f64> = runs.iter().map(RunResult::cpu_us).collect();
    Some(Med {
        rate: median(&rates),
        cpu_us: median(&cpus),
    })
}

/// Throughput and CPU per message of one drain, in the same terms as a
/// consume run's so that drains compare with the other figures.
pub(crate) fn drain_med(r: &DrainReport) -> Med {
    Med {
        rate: r.messages as f64 / r.seconds.max(1e-9),
        cpu_us: r.cpu_seconds * 1e6 / r.messages.max(1) as f64,
    }
}

/// Medians of the latency runs, field by field: each percentile of a round
/// is already an aggregate, so the median over rounds damps one bad round.
pub(crate) fn latency_med(runs: &[LatencyResult]) -> Option<LatencyResult> {
    if runs.is_empty() {
        return None;
    }
    let m = |f: fn(&LatencyResult) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
    Some(LatencyResult {
        samples: runs.iter().map(|r| r.samples).sum(),
        p50_ms: m(|r| r.p50_ms),
        p99_ms: m(|r| r.p99_ms),
        max_ms: m(|r| r.max_ms),
    })
}

/// The setting (concurrency, workers) of `runs` with the highest median
/// throughput: a side is compared at its best, not at an arbitrary setting.
fn best_setting(runs: &BTreeMap<usize, Vec<RunResult>>) -> Option<usize> {
    runs.iter()
        .filter_map(|(c, runs)| med(runs).map(|m| (*c, m.rate)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(c, _)| c)
}

/// The kafkaesk consume concurrency with the highest median throughput; the
/// memory scenario drains at it and the targets judge it.
pub fn best_concurrency(results: &Results) -> Option<usize> {
    best_setting(&results.consume_kafkaesk)
}

/// The RustStream consume workers with the highest median throughput, so
/// that issue 19 compares kafkaesk with RustStream at its best too.
pub fn best_ruststream_workers(results: &Results) -> Option<usize> {
    best_setting(&results.consume_ruststream)
}

/// The Python consume run (by label) with the highest median throughput:
/// the fair side to hold kafkaesk against in the Python targets.
pub(crate) fn best_python_consume(results: &Results) -> Option<(String, Med)> {
    results
        .python_consume
        .iter()
        .filter_map(|(label, runs)| med(runs).map(|m| (label.clone(), m)))
        .max_by(|a, b| a.1.rate.total_cmp(&b.1.rate))
}

/// `a` as a multiple of `b`; named so that every comparison in the report
/// reads the same way round (the first side over the second).
pub(crate) fn ratio(a: f64, b: f64) -> f64 {
    a / b
}

/// KiB to MB (10^6 bytes): `/proc` counts KiB, the report speaks MB.
pub(crate) fn mb(kib: u64) -> f64 {
    kib as f64 * 1024.0 / 1e6
}

/// A rate (or any whole number) with thousands separators, so that rates of
/// a million and of a few thousand side by side stay readable.
pub(crate) fn fmt_rate(rate: f64) -> String {
    if rate.is_nan() {
        "n/a".to_owned()
    } else {
        // Thousands separators keep large rates readable.
        let whole = rate.round() as u64;
        let digits = whole.to_string();
        let mut out = String::new();
        for (i, ch) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(ch);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A run of `messages` in `seconds` costing 0.1 s of CPU: round figures
    /// whose medians are easy to check by hand.
    fn run(messages: usize, seconds: f64) -> RunResult {
        RunResult {
            messages,
            seconds,
            cpu: Duration::from_millis(100),
        }
    }

    #[test]
    fn medians_and_the_best_setting() {
        assert!(med(&[]).is_none());
        let m = med(&[run(100, 1.0), run(300, 1.0), run(200, 1.0)]).unwrap();
        assert_eq!(m.rate, 200.0);
        assert_eq!(m.cpu_us, 500.0);
        let mut results = Results::default();
        assert_eq!(best_concurrency(&results), None);
        results.consume_kafkaesk.insert(1, vec![run(100, 1.0)]);
        results.consume_kafkaesk.insert(10, vec![run(300, 1.0)]);
        results.consume_kafkaesk.insert(100, vec![run(200, 1.0)]);
        assert_eq!(best_concurrency(&results), Some(10));
        assert_eq!(best_ruststream_workers(&results), None);
    }

    #[test]
    fn rates_get_thousands_separators() {
        assert_eq!(fmt_rate(0.0), "0");
        assert_eq!(fmt_rate(999.4), "999");
        assert_eq!(fmt_rate(1_297_172.0), "1,297,172");
        assert_eq!(fmt_rate(f64::NAN), "n/a");
        assert_eq!(mb(1_000_000), 1024.0);
    }
}
