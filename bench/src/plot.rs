//! The plots of `BENCHMARKS.md`, one per scenario, as hand-written SVG bar
//! charts: no plotting crate, so the benchmark builds quickly and the files
//! are small text that diffs well.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context as _, Result};

use crate::scenarios::memory::Side;
use crate::stats::{
    best_concurrency, best_ruststream_workers, fmt_rate, latency_med, mb, med, Med,
};
use crate::Results;

/// The plots `BENCHMARKS.md` shows, one per scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plot {
    /// Consume throughput.
    Consume,
    /// Publish throughput.
    Publish,
    /// CPU per message of consume and publish.
    Cpu,
    /// Publish-to-handler latency, p50 and p99.
    Latency,
    /// Peak RSS draining the backlog.
    Memory,
}

impl Plot {
    /// Every plot, in the order `BENCHMARKS.md` shows them.
    pub const ALL: [Plot; 5] = [
        Plot::Consume,
        Plot::Publish,
        Plot::Cpu,
        Plot::Latency,
        Plot::Memory,
    ];

    /// Where the plot lives, relative to the directory of `BENCHMARKS.md`;
    /// also the link the markdown uses, so the two cannot disagree.
    pub fn path(self) -> &'static str {
        match self {
            Plot::Consume => "bench/plots/consume.svg",
            Plot::Publish => "bench/plots/publish.svg",
            Plot::Cpu => "bench/plots/cpu.svg",
            Plot::Latency => "bench/plots/latency.svg",
            Plot::Memory => "bench/plots/memory.svg",
        }
    }

    /// The markdown image line that shows the plot.
    pub fn embed(self) -> String {
        let alt = match self {
            Plot::Consume => "Consume throughput of every side, medians",
            Plot::Publish => "Publish throughput of every side, medians",
            Plot::Cpu => "CPU microseconds per message of every side, consume and publish",
            Plot::Latency => "p50 and p99 publish-to-handler latency of every side",
            Plot::Memory => "Peak RSS of every side draining the backlog",
        };
        format!("![{alt}]({})", self.path())
    }

    /// The chart of this run's numbers, or `None` when the scenario did not run.
    pub fn chart(self, results: &Results) -> Option<BarChart> {
        let chart = match self {
            Plot::Consume => BarChart {
                title: "Consume: median messages per second (higher is better)",
                axis: "msg/s",
                groups: by_side(&consume_entries(results), |m| m.rate),
                format: fmt_rate,
            },
            Plot::Publish => BarChart {
                title:
                    "Publish: median messages per second, every delivery awaited (higher is better)",
                axis: "msg/s",
                groups: by_side(&publish_entries(results), |m| m.rate),
                format: fmt_rate,
            },
            Plot::Cpu => BarChart {
                title: "CPU per message: median µs of user + system time (lower is better)",
                axis: "CPU µs/msg",
                groups: vec![
                    flat("consume", &consume_entries(results), |m| m.cpu_us),
                    flat("publish", &publish_entries(results), |m| m.cpu_us),
                ],
                format: |v| format!("{v:.2}"),
            },
            Plot::Latency => BarChart {
                title: "Publish-to-handler latency: median p50 and p99 (lower is better)",
                axis: "ms",
                groups: latency_groups(results),
                format: |v| format!("{v:.2}"),
            },
            Plot::Memory => BarChart {
                title: "Peak RSS (VmHWM) draining the backlog (lower is better)",
                axis: "MB",
                groups: memory_groups(results),
                format: |v| format!("{v:.1}"),
            },
        };
        chart.has_bars().then_some(chart)
    }
}

/// Writes every plot with data under `dir/bench/plots/`, and removes the
/// file of a plot without data, which would otherwise show an older run.
pub fn write_all(dir: &Path, results: &Results) -> Result<()> {
    for plot in Plot::ALL {
        let path = dir.join(plot.path());
        match plot.chart(results) {
            Some(chart) => {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)
                        .with_context(|| format!("creating {}", parent.display()))?;
                }
                std::fs::write(&path, chart.svg())
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            None => match std::fs::remove_file(&path) {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                    return Err(err).with_context(|| format!("removing {}", path.display()));
                }
                _ => {}
            },
        }
    }
    Ok(())
}

/// A side of the benchmark, with its own colours in every plot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hue {
    Baseline,
    Kafkaesk,
    Ruststream,
    Python,
}

impl Hue {
    /// The side's name, as the tables spell it.
    fn name(self) -> &'static str {
        match self {
            Hue::Baseline => "rdkafka baseline",
            Hue::Kafkaesk => "kafkaesk",
            Hue::Ruststream => "RustStream",
            Hue::Python => "Python kafkaesk",
        }
    }

    /// Shade `i` of the side's colour: the first bar of a side (c=1, p50) in
    /// the middle shade, the next (best, p99) darker, a third lighter.
    fn color(self, i: usize) -> &'static str {
        let shades = match self {
            Hue::Baseline => ["#7f7f7f", "#404040", "#b5b5b5"],
            Hue::Kafkaesk => ["#6aa3d5", "#1f5f9e", "#a9cbe8"],
            Hue::Ruststream => ["#6cc08b", "#24804a", "#a8dcb9"],
            Hue::Python => ["#f0b050", "#b8720c", "#f6d49a"],
        };
        shades[i.min(shades.len() - 1)]
    }
}

/// One measured setting of a side in a throughput scenario.
struct Entry {
    hue: Hue,
    /// The setting within the side (`c=1`), empty when the side has one.
    setting: String,
    med: Med,
}

impl Entry {
    /// Adds the entry to `out` when the setting ran (`m` is its median).
    fn push(out: &mut Vec<Entry>, hue: Hue, setting: String, m: Option<Med>) {
        if let Some(med) = m {
            out.push(Entry { hue, setting, med });
        }
    }
}

/// The consume sides: the baseline, kafkaesk and RustStream at one at a time
/// and at their best, and every Python run.
fn consume_entries(results: &Results) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut push = |hue, setting: String, m: Option<Med>| Entry::push(&mut out, hue, setting, m);
    push(Hue::Baseline, String::new(), med(&results.consume_baseline));
    for (hue, runs, best, name) in [
        (
            Hue::Kafkaesk,
            &results.consume_kafkaesk,
            best_concurrency(results),
            "c",
        ),
        (
            Hue::Ruststream,
            &results.consume_ruststream,
            best_ruststream_workers(results),
            "workers",
        ),
    ] {
        let one = runs.get(&1).and_then(|r| med(r));
        let best_tag = |c: usize| if best == Some(c) { " (best)" } else { "" };
        push(hue, format!("{name}=1{}", best_tag(1)), one);
        if let Some(c) = best.filter(|c| *c != 1) {
            push(
                hue,
                format!("{name}={c}{}", best_tag(c)),
                runs.get(&c).and_then(|r| med(r)),
            );
        }
    }
    // kafkaesk's default concurrency first, as in the Python tables' prose.
    let mut python: Vec<_> = results.python_consume.iter().collect();
    python.sort_by_key(|(label, _)| (label.as_str() != "default", label.as_str()));
    for (label, runs) in python {
        push(Hue::Python, format!("c={label}"), med(runs));
    }
    out
}

/// The publish sides: the baseline, kafkaesk in each mode that ran,
/// RustStream and Python.
fn publish_entries(results: &Results) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut push = |hue, setting: String, m: Option<Med>| Entry::push(&mut out, hue, setting, m);
    push(Hue::Baseline, String::new(), med(&results.publish_baseline));
    push(
        Hue::Kafkaesk,
        "validated".into(),
        med(&results.publish_kafkaesk),
    );
    push(
        Hue::Kafkaesk,
        "not idempotent".into(),
        med(&results.publish_kafkaesk_plain),
    );
    push(
        Hue::Kafkaesk,
        format!("transactions of {}", results.transaction_size),
        med(&results.publish_kafkaesk_transactional),
    );
    push(
        Hue::Ruststream,
        String::new(),
        med(&results.publish_ruststream),
    );
    push(Hue::Python, String::new(), med(&results.python_publish));
    out
}

/// One group per side, one bar per setting, shaded in turn.
fn by_side(entries: &[Entry], value: fn(&Med) -> f64) -> Vec<Group> {
    let mut groups: Vec<(Hue, Group)> = Vec::new();
    for e in entries {
        if groups.last().is_none_or(|(hue, _)| *hue != e.hue) {
            groups.push((e.hue, Group::new(e.hue.name())));
        }
        if let Some((_, group)) = groups.last_mut() {
            let shade = group.bars.len();
            group.bars.push(Bar {
                label: e.setting.clone(),
                value: value(&e.med),
                color: e.hue.color(shade),
            });
        }
    }
    groups.into_iter().map(|(_, g)| g).collect()
}

/// One group named `name`, a bar per entry labelled with its side and setting.
fn flat(name: &str, entries: &[Entry], value: fn(&Med) -> f64) -> Group {
    let mut group = Group::new(name);
    let mut previous: Option<Hue> = None;
    let mut shade = 0;
    for e in entries {
        shade = if previous == Some(e.hue) {
            shade + 1
        } else {
            0
        };
        previous = Some(e.hue);
        group.bars.push(Bar {
            label: format!("{} {}", e.hue.name(), e.setting)
                .trim_end()
                .to_owned(),
            value: value(&e.med),
            color: e.hue.color(shade),
        });
    }
    group
}

/// p50 and p99 side by side, per side.
fn latency_groups(results: &Results) -> Vec<Group> {
    [
        (Hue::Baseline, &results.latency_baseline),
        (Hue::Kafkaesk, &results.latency_kafkaesk),
        (Hue::Ruststream, &results.latency_ruststream),
    ]
    .into_iter()
    .filter_map(|(hue, runs)| {
        let l = latency_med(runs)?;
        let mut group = Group::new(hue.name());
        for (i, (label, value)) in [("p50", l.p50_ms), ("p99", l.p99_ms)]
            .into_iter()
            .enumerate()
        {
            group.bars.push(Bar {
                label: label.into(),
                value,
                color: hue.color(i),
            });
        }
        Some(group)
    })
    .collect()
}

/// Peak RSS, one bar per drain, grouped by side.
fn memory_groups(results: &Results) -> Vec<Group> {
    results
        .memory
        .iter()
        .map(|r| {
            let (hue, setting) = match r.side {
                Side::Baseline => (Hue::Baseline, String::new()),
                Side::Kafkaesk => (Hue::Kafkaesk, format!("c={}", r.concurrency)),
                #[cfg(feature = "ruststream")]
                Side::Ruststream => (Hue::Ruststream, format!("workers={}", r.concurrency)),
            };
            let mut group = Group::new(hue.name());
            group.bars.push(Bar {
                label: setting,
                value: mb(r.peak_rss_kib),
                color: hue.color(0),
            });
            group
        })
        .collect()
}

/// One bar: its label under the axis, its value, its fill colour.
#[derive(Debug, Clone)]
pub struct Bar {
    /// Printed under the bar; may be empty when the group's name says it all.
    pub label: String,
    /// The bar's height in the chart's unit.
    pub value: f64,
    /// Fill colour, `#rrggbb`.
    pub color: &'static str,
}

/// Bars drawn side by side over one name.
#[derive(Debug, Clone)]
pub struct Group {
    /// Printed under the group's bars.
    pub name: String,
    /// The bars, left to right.
    pub bars: Vec<Bar>,
}

impl Group {
    fn new(name: &str) -> Self {
        Group {
            name: name.to_owned(),
            bars: Vec::new(),
        }
    }
}

/// A vertical bar chart on a linear axis from zero.
#[derive(Debug, Clone)]
pub struct BarChart {
    /// The heading over the chart.
    pub title: &'static str,
    /// What the values are, printed along the vertical axis.
    pub axis: &'static str,
    /// Groups of bars, left to right.
    pub groups: Vec<Group>,
    /// Prints a value, for the label over each bar.
    pub format: fn(f64) -> String,
}

// Layout, in pixels. Text widths are estimated from character counts: enough
// to size the canvas so that nothing is cut off, without a font engine.
const BAR_W: f64 = 56.0;
const BAR_GAP: f64 = 10.0;
const GROUP_GAP: f64 = 36.0;
const LEFT: f64 = 96.0;
const TOP: f64 = 56.0;
const PLOT_H: f64 = 260.0;
const MARGIN: f64 = 20.0;
const CHAR_W: f64 = 6.4;
const GROUP_CHAR_W: f64 = 7.6;
const TITLE_CHAR_W: f64 = 9.6;
// Bar labels are turned by 35° so that long ones do not collide.
const LABEL_COS: f64 = 0.82;
const LABEL_SIN: f64 = 0.57;

fn text_width(text: &str) -> f64 {
    text.chars().count() as f64 * CHAR_W
}

impl BarChart {
    fn has_bars(&self) -> bool {
        self.groups.iter().any(|g| !g.bars.is_empty())
    }

    /// The chart as a standalone SVG document.
    pub fn svg(&self) -> String {
        let groups: Vec<&Group> = self.groups.iter().filter(|g| !g.bars.is_empty()).collect();
        let (top_value, step) = axis_scale(
            groups
                .iter()
                .flat_map(|g| g.bars.iter().map(|b| b.value))
                .filter(|v| v.is_finite())
                .fold(0.0, f64::max),
        );
        let axis_y = TOP + PLOT_H;
        let label_drop = groups
            .iter()
            .flat_map(|g| g.bars.iter().map(|b| text_width(&b.label)))
            .fold(0.0, f64::max)
            * LABEL_SIN;
        let group_name_y = axis_y + label_drop + 30.0;
        let height = group_name_y + MARGIN;

        // Bars first, so the canvas can be as wide as the furthest text.
        let mut body = String::new();
        let mut right: f64 = 0.0;
        let mut x = LEFT + BAR_GAP;
        for group in &groups {
            // A group is as wide as its name, so that single bars' names do
            // not run into each other; its bars sit in the middle.
            let bars_w = group.bars.len() as f64 * (BAR_W + BAR_GAP) - BAR_GAP;
            let span = bars_w.max(GROUP_CHAR_W * group.name.chars().count() as f64);
            let mut bar_x = x + (span - bars_w) / 2.0;
            for bar in &group.bars {
                right = right.max(self.bar(&mut body, bar, &group.name, bar_x, top_value));
                bar_x += BAR_W + BAR_GAP;
            }
            let _ = writeln!(
                body,
                r#"<text x="{:.1}" y="{group_name_y:.1}" text-anchor="middle" font-weight="bold">{}</text>"#,
                x + span / 2.0,
                xml_escape(&group.name)
            );
            x += span + GROUP_GAP;
        }
        let axis_end = x - GROUP_GAP + BAR_GAP;
        let width = (right.max(axis_end) + MARGIN)
            .max(MARGIN + self.title.chars().count() as f64 * TITLE_CHAR_W);

        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = writeln!(
            s,
            r#"<text x="{MARGIN}" y="26" font-size="15" font-weight="bold">{}</text>"#,
            xml_escape(self.title)
        );
        let _ = writeln!(
            s,
            r#"<text transform="translate(18,{:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
            TOP + PLOT_H / 2.0,
            xml_escape(self.axis)
        );
        let ticks = (top_value / step).round() as usize;
        for i in 0..=ticks {
            let v = step * i as f64;
            let y = axis_y - PLOT_H * v / top_value;
            let _ = writeln!(
                s,
                r##"<line x1="{LEFT}" y1="{y:.1}" x2="{axis_end:.1}" y2="{y:.1}" stroke="#dddddd"/><text x="{:.0}" y="{:.1}" text-anchor="end">{}</text>"##,
                LEFT - 6.0,
                y + 4.0,
                xml_escape(&tick_label(v, step))
            );
        }
        s.push_str(&body);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{axis_y:.1}" x2="{axis_end:.1}" y2="{axis_y:.1}" stroke="#333333"/>"##
        );
        s.push_str("</svg>\n");
        s
    }

    /// Draws one bar at `x` with its value over it and its label under the
    /// axis; returns how far right its text reaches.
    fn bar(&self, out: &mut String, bar: &Bar, group: &str, x: f64, top_value: f64) -> f64 {
        let value = if bar.value.is_finite() {
            bar.value.max(0.0)
        } else {
            0.0
        };
        let h = PLOT_H * value / top_value;
        let y = TOP + PLOT_H - h;
        let centre = x + BAR_W / 2.0;
        let shown = if bar.value.is_finite() {
            (self.format)(bar.value)
        } else {
            "n/a".to_owned()
        };
        let name = format!("{group} {}", bar.label);
        let _ = writeln!(
            out,
            r#"<rect x="{x:.1}" y="{y:.1}" width="{BAR_W}" height="{h:.1}" fill="{}"><title>{}: {} {}</title></rect>"#,
            bar.color,
            xml_escape(name.trim_end()),
            xml_escape(&shown),
            xml_escape(self.axis)
        );
        // The value over every bar keeps a short bar readable when another
        // side's bar sets the scale (Python at 1/30 of Rust's rate).
        let _ = writeln!(
            out,
            r#"<text x="{centre:.1}" y="{:.1}" text-anchor="middle" font-size="10">{}</text>"#,
            y - 4.0,
            xml_escape(&shown)
        );
        if bar.label.is_empty() {
            return centre + text_width(&shown) / 2.0;
        }
        let _ = writeln!(
            out,
            r#"<text transform="translate({:.1},{:.1}) rotate(35)" font-size="11">{}</text>"#,
            centre - 8.0,
            TOP + PLOT_H + 14.0,
            xml_escape(&bar.label)
        );
        centre - 8.0 + text_width(&bar.label) * LABEL_COS
    }
}

/// The top of the axis and the step between ticks: a round step (1, 2, 2.5
/// or 5 times a power of ten) giving at most five steps over `max`.
fn axis_scale(max: f64) -> (f64, f64) {
    if max <= 0.0 {
        return (1.0, 0.25);
    }
    let rough = max / 5.0;
    let power = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|s| *s >= rough)
        .unwrap_or(10.0 * power);
    ((max / step).ceil().max(1.0) * step, step)
}

/// A tick's label, with as few decimals as the step needs (0.25: two) and
/// thousands separators on whole numbers.
fn tick_label(v: f64, step: f64) -> String {
    let decimals = (0..6)
        .find(|d| {
            let scaled = step * 10f64.powi(*d);
            (scaled - scaled.round()).abs() < 1e-6 * scaled.max(1.0)
        })
        .unwrap_or(6) as usize;
    if decimals == 0 {
        fmt_rate(v)
    } else {
        format!("{v:.decimals$}")
    }
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::sample_results;

    /// Checks that `svg` is one `<svg>` element whose tags nest and whose text
    /// has no stray `<` or `&`: what a browser needs to show the image,
    /// without an XML parser in the dependencies.
    fn assert_well_formed(svg: &str) {
        let check_text = |text: &str| {
            for (i, _) in text.match_indices('&') {
                assert!(
                    ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"]
                        .iter()
                        .any(|e| text[i..].starts_with(e)),
                    "bare & in {text:?}"
                );
            }
        };
        let mut open: Vec<&str> = Vec::new();
        let mut roots = 0;
        let mut rest = svg;
        while let Some(lt) = rest.find('<') {
            let text = &rest[..lt];
            assert!(
                !open.is_empty() || text.trim().is_empty(),
                "text outside <svg>: {text:?}"
            );
            check_text(text);
            let gt = lt + rest[lt..].find('>').expect("a tag without >");
            let tag = &rest[lt + 1..gt];
            assert!(!tag.contains('<'), "< inside the tag {tag:?}");
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(
                    open.pop(),
                    Some(name.trim()),
                    "</{name}> closes nothing open"
                );
            } else {
                let name = tag.split_whitespace().next().unwrap_or_default();
                assert!(!name.is_empty(), "an empty tag");
                if open.is_empty() {
                    assert_eq!(name, "svg", "the root element");
                    roots += 1;
                }
                check_text(tag);
                if !tag.ends_with('/') {
                    open.push(name);
                }
            }
            rest = &rest[gt + 1..];
        }
        assert!(rest.trim().is_empty(), "text after </svg>: {rest:?}");
        assert!(open.is_empty(), "unclosed elements {open:?}");
        assert_eq!(roots, 1, "one root element");
    }

    /// The labels each plot must show: every side that ran in its scenario.
    fn expected_labels(plot: Plot) -> Vec<&'static str> {
        #[allow(unused_mut)]
        let mut labels = match plot {
            Plot::Consume => vec![
                "rdkafka baseline",
                "kafkaesk",
                "c=1",
                "c=100 (best)",
                "Python kafkaesk",
                "c=default",
                "c=500",
            ],
            Plot::Publish => vec![
                "rdkafka baseline",
                "kafkaesk",
                "validated",
                "not idempotent",
                "Python kafkaesk",
            ],
            Plot::Cpu => vec![
                "consume",
                "publish",
                "rdkafka baseline",
                "kafkaesk c=1",
                "kafkaesk c=100 (best)",
                "kafkaesk validated",
                "Python kafkaesk c=default",
                "Python kafkaesk c=500",
            ],
            Plot::Latency => vec!["rdkafka baseline", "kafkaesk", "p50", "p99"],
            Plot::Memory => vec!["rdkafka baseline", "kafkaesk", "c=100"],
        };
        #[cfg(feature = "ruststream")]
        labels.extend(match plot {
            Plot::Consume => vec!["RustStream", "workers=1", "workers=100 (best)"],
            Plot::Cpu => vec!["RustStream workers=1", "RustStream workers=100 (best)"],
            Plot::Memory => vec!["RustStream", "workers=100"],
            Plot::Publish | Plot::Latency => vec!["RustStream"],
        });
        labels
    }

    #[test]
    fn every_plot_is_well_formed_and_shows_every_side() {
        let results = sample_results();
        for plot in Plot::ALL {
            let chart = plot
                .chart(&results)
                .unwrap_or_else(|| panic!("{plot:?} has no chart"));
            let svg = chart.svg();
            assert_well_formed(&svg);
            for label in expected_labels(plot) {
                assert!(
                    svg.contains(&format!(">{label}<")),
                    "{plot:?} lacks the label {label:?}:\n{svg}"
                );
            }
        }
        let latency = Plot::Latency.chart(&results).map(|c| c.svg());
        assert!(latency.is_some_and(|svg| !svg.contains("Python")));
    }

    #[test]
    fn a_dwarfed_bar_still_shows_its_value() {
        let svg = Plot::Consume
            .chart(&sample_results())
            .map(|c| c.svg())
            .unwrap_or_default();
        // Python's default at 7,632 msg/s beside the baseline's median of
        // 1,297,172 and 1,250,000.
        assert!(svg.contains(">7,632<"), "{svg}");
        assert!(svg.contains(">1,273,586<"), "{svg}");
        let cpu = Plot::Cpu
            .chart(&sample_results())
            .map(|c| c.svg())
            .unwrap_or_default();
        assert!(cpu.contains(">1.75<") && cpu.contains(">130.77<"), "{cpu}");
    }

    #[test]
    fn no_chart_without_data() {
        let results = Results::default();
        for plot in Plot::ALL {
            assert!(plot.chart(&results).is_none(), "{plot:?}");
        }
    }

    #[test]
    fn write_all_writes_the_plots_and_removes_stale_ones() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("kafkaesk-bench-plots-{}", std::process::id()));
        write_all(&dir, &sample_results())?;
        for plot in Plot::ALL {
            assert!(dir.join(plot.path()).is_file(), "{}", plot.path());
        }
        // A run without latency or memory leaves no older run's plot behind.
        let mut fewer = sample_results();
        fewer.latency_baseline.clear();
        fewer.latency_kafkaesk.clear();
        fewer.latency_ruststream.clear();
        fewer.memory.clear();
        write_all(&dir, &fewer)?;
        assert!(!dir.join(Plot::Latency.path()).exists());
        assert!(!dir.join(Plot::Memory.path()).exists());
        assert!(dir.join(Plot::Consume.path()).is_file());
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }

    #[test]
    fn the_axis_has_round_steps_above_the_largest_bar() {
        for max in [0.4, 17.48, 38.7, 130.77, 1_297_172.0] {
            let (top, step) = axis_scale(max);
            assert!(top >= max, "{max}: top {top}");
            assert!(top / step <= 5.0 + 1e-9, "{max}: {top} / {step}");
        }
        assert_eq!(axis_scale(1_297_172.0), (1_500_000.0, 500_000.0));
        assert_eq!(axis_scale(0.0), (1.0, 0.25));
        assert_eq!(tick_label(1_000_000.0, 500_000.0), "1,000,000");
        assert_eq!(tick_label(0.5, 0.25), "0.50");
        assert_eq!(tick_label(4.0, 2.0), "4");
    }

    #[test]
    fn text_is_escaped() {
        let chart = BarChart {
            title: "a <b> & c",
            axis: "x",
            groups: vec![Group {
                name: "<side>".into(),
                bars: vec![Bar {
                    label: "c=1 & more".into(),
                    value: 1.0,
                    color: "#000000",
                }],
            }],
            format: |v| format!("{v}"),
        };
        assert_well_formed(&chart.svg());
    }
}
