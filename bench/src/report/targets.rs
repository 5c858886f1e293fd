//! The project's targets, judged on the medians of a run.

use crate::scenarios::memory::Side;
use crate::stats::{best_concurrency, best_python_consume, latency_med, mb, med, ratio, Med};
use crate::Results;

/// One line of a targets table; the terminal and `BENCHMARKS.md` print the
/// same lines, each in its own layout.
pub(super) struct Target {
    /// What is compared.
    pub(super) name: String,
    /// The bar it must clear.
    pub(super) goal: String,
    /// This run's figure, with its unit.
    pub(super) measured: String,
    /// `met`, `**missed**` or `not measured`; bold so a miss stands out in
    /// the markdown (the terminal strips the stars).
    pub(super) status: &'static str,
}

/// The status cell of a target, so that every target words its outcome alike;
/// `None` when a side it needs did not run.
pub(super) fn status(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "**missed**",
        None => "not measured",
    }
}

/// The project's own targets, from the medians of this run: the verdict a
/// reader looks for first.
pub(super) fn targets(results: &Results) -> Vec<Target> {
    let mut out = Vec::new();
    let base_c = med(&results.consume_baseline);
    let best = best_concurrency(results);
    let best_c = best.and_then(|c| med(&results.consume_kafkaesk[&c]));
    let c1 = results.consume_kafkaesk.get(&1).and_then(|r| med(r));
    let both = |a: Option<Med>, b: Option<Med>| a.zip(b);

    let r = both(best_c, base_c).map(|(k, b)| ratio(k.rate, b.rate));
    out.push(Target {
        name: "consume throughput".into(),
        goal: "≥ 0.90 × baseline".into(),
        measured: r.map_or("n/a".into(), |r| {
            format!("{r:.2} × (kafkaesk c={})", best.unwrap_or(1))
        }),
        status: status(r.map(|r| r >= 0.90)),
    });
    let r = both(best_c, base_c).map(|(k, b)| ratio(k.cpu_us, b.cpu_us));
    let r1 = both(c1, base_c).map(|(k, b)| ratio(k.cpu_us, b.cpu_us));
    out.push(Target {
        name: "consume CPU per message".into(),
        goal: "≤ 1.15 × baseline".into(),
        measured: match (r, r1) {
            (Some(r), Some(r1)) => format!("{r:.2} × at c={}, {r1:.2} × at c=1", best.unwrap_or(1)),
            (Some(r), None) => format!("{r:.2} ×"),
            _ => "n/a".into(),
        },
        status: status(r.map(|r| r <= 1.15)),
    });
    let pb = med(&results.publish_baseline);
    let pk = med(&results.publish_kafkaesk);
    let r = both(pk, pb).map(|(k, b)| ratio(k.rate, b.rate));
    out.push(Target {
        name: "publish throughput (validated)".into(),
        goal: "≥ 0.85 × baseline".into(),
        measured: r.map_or("n/a".into(), |r| format!("{r:.2} ×")),
        status: status(r.map(|r| r >= 0.85)),
    });
    let r = results
        .micro
        .map_or(f64::NAN, |m| ratio(m.dispatch_ns, m.plain_decode_ns));
    out.push(Target {
        name: "decode + validate + dispatch".into(),
        goal: "≤ 1.5 × serde_json".into(),
        measured: if r.is_finite() {
            format!("{r:.2} ×")
        } else {
            "n/a".into()
        },
        status: if r.is_finite() {
            if r <= 1.5 {
                "met"
            } else {
                "**missed**"
            }
        } else {
            "not measured"
        },
    });
    let lat = latency_med(&results.latency_kafkaesk);
    out.push(Target {
        name: "p99 publish-to-handler latency".into(),
        goal: "≤ 20 ms at 1,000 msg/s".into(),
        measured: lat.map_or("n/a".into(), |l| format!("{:.2} ms", l.p99_ms)),
        status: status(lat.map(|l| l.p99_ms <= 20.0)),
    });
    let peak = results
        .memory
        .iter()
        .find(|r| r.side == Side::Kafkaesk)
        .map(|r| mb(r.peak_rss_kib));
    out.push(Target {
        name: "peak RSS draining the backlog".into(),
        goal: "≤ 100 MB".into(),
        measured: peak.map_or("n/a".into(), |p| format!("{p:.1} MB")),
        status: status(peak.map(|p| p <= 100.0)),
    });
    let py_c = best_python_consume(results).map(|(_, m)| m);
    let py_p = med(&results.python_publish);
    for (name, k, py) in [
        ("consume throughput vs Python", best_c, py_c),
        ("publish throughput vs Python", pk, py_p),
    ] {
        let r = both(k, py).map(|(k, p)| ratio(k.rate, p.rate));
        out.push(Target {
            name: name.into(),
            goal: "≥ 4 × Python kafkaesk".into(),
            measured: r.map_or("n/a".into(), |r| format!("{r:.1} ×")),
            status: status(r.map(|r| r >= 4.0)),
        });
    }
    for (name, k, py) in [
        ("consume CPU/msg vs Python", best_c, py_c),
        ("publish CPU/msg vs Python", pk, py_p),
    ] {
        let r = both(k, py).map(|(k, p)| ratio(p.cpu_us, k.cpu_us));
        out.push(Target {
            name: name.into(),
            goal: "≥ 10 × less than Python".into(),
            measured: r.map_or("n/a".into(), |r| format!("{r:.1} × less")),
            status: status(r.map(|r| r >= 10.0)),
        });
    }
    out
}
