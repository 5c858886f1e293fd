//! `kafkaesk dead-letters STREAM [list|show|replay]`: what a dead-letter
//! stream holds, grouped or record by record, and its replay.
//!
//! Everything here comes from the bus, headers included, and whoever can
//! publish to the stream chose it: text shown in the table goes through
//! [`printable`], grouping keys are cut short, and the groups are bounded
//! ([`MAX_GROUPS`], then one "other" bucket), so a hostile stream can
//! neither drive the terminal nor memory. `show` prints records as
//! `kafkaesk read` does ([`crate::read::render`]), as JSON. `replay` is the
//! library's [`DeadLetterReplay`](kafkaesk::dead_letter::DeadLetterReplay)
//! with [`ReplayTargets::CommittedGroups`]: there is no application here to
//! say which topics a subscription consumes, so the broker's commits do.

use std::collections::HashMap;
use std::io::{IsTerminal as _, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt as _;
use kafkaesk::dead_letter::{
    DeadLetterFilter, ReplayCounts, ReplayTargets, DLQ_ERROR, DLQ_OFFSET, DLQ_PARTITION,
    DLQ_SUBSCRIPTION, DLQ_TOPIC,
};
use kafkaesk::record::printable;
use kafkaesk::subscription::Position;
use kafkaesk::worker::ConnectionOptions;
use kafkaesk::Record;
use serde_json::json;

use crate::connection::{connect, Failure};

/// The most groups `list` keeps; records of further groups are counted in
/// one "other" bucket.
pub const MAX_GROUPS: usize = 1000;

/// The most characters of an error that group records together: errors
/// often quote the record after a common start.
const ERROR_CHARS: usize = 80;

/// The most characters of a subscription or topic name shown.
const NAME_CHARS: usize = 120;

/// What to do with the stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Action {
    /// Count the records by subscription, source topic and error.
    #[default]
    List,
    /// Print the records as JSON lines, as `kafkaesk read` does.
    Show,
    /// Republish the records to the topics they came from.
    Replay,
}

/// The flags of `kafkaesk dead-letters`.
#[derive(Debug, Clone, clap::Args)]
pub struct DeadLettersArgs {
    /// The dead-letter stream, such as `orders.dead`.
    pub stream: String,

    /// list (the default), show or replay.
    #[arg(value_enum, default_value_t = Action::List)]
    pub action: Action,

    /// Only records dead-lettered by this subscription (kafkaesk-dlq-subscription).
    #[arg(long, value_name = "NAME")]
    pub subscription: Option<String>,

    /// Only records whose error (kafkaesk-dlq-error) contains TEXT, case-sensitive.
    #[arg(long, value_name = "TEXT")]
    pub error_contains: Option<String>,

    /// Only records dead-lettered at or after TIME: a UTC time (2026-12-03T10:00:00Z) or a
    /// time ago (1h, 15m, -24h).
    #[arg(long, value_name = "TIME", value_parser = parse_since, allow_hyphen_values = true)]
    pub since: Option<Position>,

    /// At most N matching records: shown, counted, or replayed (republished or refused).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,

    /// list: one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub connection: ConnectionOptions,
}

/// `--since`: a time, or a time ago with or without its minus.
fn parse_since(text: &str) -> Result<Position, String> {
    let text = text.trim();
    if let Ok(ago) = humantime::parse_duration(text) {
        return Ok(Position::Since(ago));
    }
    match text.parse::<Position>() {
        Ok(position @ (Position::Since(_) | Position::Timestamp(_))) => Ok(position),
        _ => Err(format!(
            "`{}` is not a time: use a UTC time (2026-12-03T10:00:00Z) or a time ago (1h, 15m, \
             -24h)",
            printable(text)
        )),
    }
}

impl DeadLettersArgs {
    /// The filter the flags describe, with times ago counted from now.
    fn filter(&self) -> DeadLetterFilter {
        let mut filter = DeadLetterFilter::default();
        if let Some(name) = &self.subscription {
            filter = filter.subscription(name.clone());
        }
        if let Some(text) = &self.error_contains {
            filter = filter.error_contains(text.clone());
        }
        if let Some(time) = self.since_time() {
            filter = filter.since(time);
        }
        filter
    }

    fn since_time(&self) -> Option<SystemTime> {
        match self.since? {
            Position::Since(ago) => Some(SystemTime::now().checked_sub(ago).unwrap_or(UNIX_EPOCH)),
            Position::Timestamp(time) => Some(time),
            _ => None,
        }
    }

    /// Refuses flags that do not apply, before any connection.
    pub fn check(&self) -> Result<(), Failure> {
        if self.json && self.action == Action::Replay {
            return Err(Failure::Usage(
                "--json is for `list` (`show` always prints JSON lines; `replay` prints a \
                 summary)"
                    .to_owned(),
            ));
        }
        Ok(())
    }
}

/// Runs `kafkaesk dead-letters`.
pub async fn run(args: DeadLettersArgs) -> Result<(), Failure> {
    args.check()?;
    let app = connect(&args.connection).await?;
    match args.action {
        Action::List => list(&app, &args).await,
        Action::Show => show(&app, &args).await,
        Action::Replay => replay(&app, &args).await,
    }
}

/// The records of the stream the flags select, in the reader's order, to
/// `each`; returns how many errors were reported.
async fn each_record(
    app: &kafkaesk::Application,
    args: &DeadLettersArgs,
    mut each: impl FnMut(&Record) -> Result<(), Failure>,
) -> Result<usize, Failure> {
    // The reader reads nothing, quietly, from a stream that does not exist.
    app.stream_configs([args.stream.as_str()]).await?;
    let filter = args.filter();
    let mut reader = app.reader(args.stream.clone());
    if let Some(time) = args.since_time() {
        // Records dead-lettered earlier need not be read at all.
        reader = reader.from(Position::Timestamp(time));
    }
    let mut items = reader.iter::<Record>();
    let (mut errors, mut matched) = (0, 0);
    while let Some(item) = items.next().await {
        match item {
            Ok(item) if filter.matches(&item.record) => {
                matched += 1;
                each(&item.record)?;
                if args.limit.is_some_and(|limit| matched >= limit) {
                    break;
                }
            }
            Ok(_) => {}
            Err(err) => {
                errors += 1;
                eprintln!("error: {}", printable(&err.to_string()));
            }
        }
    }
    Ok(errors)
}

/// `show`: the selected records as JSON lines.
async fn show(app: &kafkaesk::Application, args: &DeadLettersArgs) -> Result<(), Failure> {
    let prefix = app.settings().topic_prefix.clone();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut closed = false;
    let errors = each_record(app, args, |record| {
        if closed {
            return Ok(());
        }
        match writeln!(out, "{}", crate::read::render(record, &prefix)) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => {
                closed = true;
                Ok(())
            }
            Err(err) => Err(Failure::Runtime(format!("cannot write to stdout: {err}"))),
        }
    })
    .await?;
    match out.flush() {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => {
            return Err(Failure::Runtime(format!("cannot write to stdout: {err}")))
        }
        _ => {}
    }
    errors_to_failure(errors)
}

fn errors_to_failure(errors: usize) -> Result<(), Failure> {
    if errors == 0 {
        Ok(())
    } else {
        Err(Failure::Runtime(format!(
            "{errors} error(s) while reading (above)"
        )))
    }
}

/// What records of one group have in common: their subscription, source
/// topic and the start of their error, shown as text (`None`: no header).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Key {
    subscription: Option<String>,
    topic: Option<String>,
    error: Option<String>,
}

impl Key {
    fn of(record: &Record) -> Key {
        let headers = record.headers();
        Key {
            subscription: headers
                .get(DLQ_SUBSCRIPTION)
                .map(|v| shorten(&text_start(v), NAME_CHARS)),
            topic: headers
                .get(DLQ_TOPIC)
                .map(|v| shorten(&text_start(v), NAME_CHARS)),
            error: headers.get(DLQ_ERROR).map(|error| {
                // kafkaesk's errors name the record (`handler `x` failed on
                // record orders[3]@41: ...`): without it, records that
                // failed the same way group together.
                let mut text = text_start(error);
                let part = |key: &str| headers.get(key).map(|v| String::from_utf8_lossy(v));
                if let (Some(topic), Some(partition), Some(offset)) =
                    (part(DLQ_TOPIC), part(DLQ_PARTITION), part(DLQ_OFFSET))
                {
                    let position = format!("{topic}[{partition}]@{offset}");
                    text = text.replace(&position, "*");
                }
                shorten(&text, ERROR_CHARS)
            }),
        }
    }
}

/// The most bytes of a header read to make a key: a header can be as long
/// as the record.
const KEY_BYTES: usize = 4096;

/// The start of bytes from the bus as text, invalid UTF-8 replaced, and
/// `…` when there is more.
fn text_start(bytes: &[u8]) -> String {
    let start = &bytes[..bytes.len().min(KEY_BYTES)];
    let mut text = String::from_utf8_lossy(start).into_owned();
    if start.len() < bytes.len() {
        text.push('…');
    }
    text
}

/// Text from the bus as a short line: the first line only, at most `max`
/// characters, controls and bidirectional marks escaped.
fn shorten(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or("");
    let mut short: String = line.chars().take(max).collect();
    if line.chars().count() > max || text.lines().nth(1).is_some() {
        short.push('…');
    }
    printable(&short).into_owned()
}

/// How many records, and when the first and last were dead-lettered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Tally {
    count: u64,
    oldest: Option<i64>,
    newest: Option<i64>,
}

impl Tally {
    fn add(&mut self, timestamp: Option<i64>) {
        self.count += 1;
        if let Some(ts) = timestamp {
            self.oldest = Some(self.oldest.map_or(ts, |o| o.min(ts)));
            self.newest = Some(self.newest.map_or(ts, |n| n.max(ts)));
        }
    }
}

/// The counts of `list`, bounded in groups.
#[derive(Debug, Default)]
struct Groups {
    groups: HashMap<Key, Tally>,
    other: Tally,
    total: Tally,
}

impl Groups {
    fn add(&mut self, record: &Record) {
        let timestamp = record.timestamp();
        self.total.add(timestamp);
        let key = Key::of(record);
        if let Some(tally) = self.groups.get_mut(&key) {
            tally.add(timestamp);
        } else if self.groups.len() < MAX_GROUPS {
            self.groups.entry(key).or_default().add(timestamp);
        } else {
            self.other.add(timestamp);
        }
    }

    /// The groups, largest first.
    fn sorted(&self) -> Vec<(&Key, &Tally)> {
        let mut sorted: Vec<_> = self.groups.iter().collect();
        sorted.sort_by(|a, b| b.1.count.cmp(&a.1.count).then_with(|| a.0.cmp(b.0)));
        sorted
    }

    fn json(&self, stream: &str, topic: &str) -> String {
        let tally = |t: &Tally| json!({"count": t.count, "oldest": t.oldest, "newest": t.newest});
        json!({
            "stream": stream,
            "topic": topic,
            "total": self.total.count,
            "oldest": self.total.oldest,
            "newest": self.total.newest,
            "groups": self.sorted().into_iter().map(|(key, t)| json!({
                "subscription": key.subscription,
                "topic": key.topic,
                "error": key.error,
                "count": t.count,
                "oldest": t.oldest,
                "newest": t.newest,
            })).collect::<Vec<_>>(),
            "other": (self.other.count > 0).then(|| tally(&self.other)),
        })
        .to_string()
    }

    fn table(&self) -> String {
        let mut rows = vec![[
            "SUBSCRIPTION",
            "TOPIC",
            "COUNT",
            "OLDEST",
            "NEWEST",
            "ERROR",
        ]
        .map(str::to_owned)
        .to_vec()];
        let none = || "-".to_owned();
        for (key, t) in self.sorted() {
            rows.push(vec![
                key.subscription.clone().unwrap_or_else(none),
                key.topic.clone().unwrap_or_else(none),
                t.count.to_string(),
                time(t.oldest),
                time(t.newest),
                key.error.clone().unwrap_or_else(none),
            ]);
        }
        if self.other.count > 0 {
            rows.push(vec![
                format!("(other groups, past {MAX_GROUPS})"),
                none(),
                self.other.count.to_string(),
                time(self.other.oldest),
                time(self.other.newest),
                none(),
            ]);
        }
        let mut text = crate::listing::table(&rows);
        text.push_str(&format!(
            "\ntotal: {} record(s) in {} group(s), oldest {}, newest {}",
            self.total.count,
            self.groups.len() + usize::from(self.other.count > 0),
            time(self.total.oldest),
            time(self.total.newest),
        ));
        text
    }
}

/// A record timestamp (ms since the epoch) in UTC, to the second.
fn time(ms: Option<i64>) -> String {
    match ms.and_then(|ms| u64::try_from(ms).ok()) {
        Some(ms) => {
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
        }
        None => "-".to_owned(),
    }
}

/// `list`: counts by subscription, source topic and error.
async fn list(app: &kafkaesk::Application, args: &DeadLettersArgs) -> Result<(), Failure> {
    let mut groups = Groups::default();
    let errors = each_record(app, args, |record| {
        groups.add(record);
        Ok(())
    })
    .await?;
    let topic = app.settings().topic(&args.stream);
    let text = if args.json {
        groups.json(&args.stream, &topic)
    } else {
        groups.table()
    };
    crate::listing::print_lines(&[text])?;
    errors_to_failure(errors)
}

/// `replay`: the library's replay, with the broker's commits as the rule,
/// refusals on stderr, progress on a terminal, and a summary.
async fn replay(app: &kafkaesk::Application, args: &DeadLettersArgs) -> Result<(), Failure> {
    let progress_shown = std::io::stderr().is_terminal();
    let mut replay = app
        .dead_letter_replay(&args.stream)
        .filter(args.filter())
        .targets(ReplayTargets::CommittedGroups)
        .stop_on(signalled())
        .on_refusal(|record, reason| {
            eprintln!(
                "refused {}: {}",
                printable(&record.position().to_string()),
                printable(reason)
            );
        });
    if progress_shown {
        replay = replay.on_progress(Duration::from_secs(1), |counts| {
            eprint!("\r{}", summary(counts));
        });
    }
    if let Some(limit) = args.limit {
        replay = replay.limit(limit);
    }
    let report = replay.run().await;
    if progress_shown {
        eprintln!();
    }
    println!("{}", summary(&report.counts));
    match report.interrupted {
        None => Ok(()),
        Some(kafkaesk::Error::Stopped) => Err(Failure::Runtime(
            "replay stopped by a signal; what it republished or refused is committed, the rest \
             is left for the next replay"
                .to_owned(),
        )),
        Some(err) => Err(Failure::Runtime(format!(
            "replay ended early: {}; what it republished or refused is committed",
            printable(&err.to_string())
        ))),
    }
}

/// `republished N, refused N, left N`.
fn summary(counts: &ReplayCounts) -> String {
    format!(
        "republished {}, refused {}, left {}",
        counts.republished, counts.refused, counts.left
    )
}

/// Resolves on SIGINT or SIGTERM, so a replay stops and commits rather
/// than dying between a republish and its commit.
async fn signalled() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(mut interrupt), Ok(mut terminate)) => {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
            }
            // Without the handlers, the signals keep their default.
            _ => std::future::pending().await,
        }
    }
    #[cfg(not(unix))]
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafkaesk::Headers;

    fn dead_letter(subscription: &str, error: &[u8], timestamp: i64) -> Record {
        let headers = Headers::new()
            .with(DLQ_SUBSCRIPTION, subscription)
            .with(DLQ_TOPIC, "p.orders")
            .with(DLQ_ERROR, error);
        Record::new("p.orders.dead", 0, 0, None, None, headers, Some(timestamp))
    }

    #[test]
    fn the_records_own_position_does_not_split_a_group() {
        let failed = |offset: &str| {
            let headers = Headers::new()
                .with(DLQ_SUBSCRIPTION, "billing")
                .with(DLQ_TOPIC, "p.orders")
                .with(DLQ_PARTITION, "3")
                .with(DLQ_OFFSET, offset)
                .with(
                    DLQ_ERROR,
                    format!("handler `billing` failed on record p.orders[3]@{offset}: no stock"),
                );
            Record::new("p.orders.dead", 0, 0, None, None, headers, Some(1))
        };
        let mut groups = Groups::default();
        groups.add(&failed("41"));
        groups.add(&failed("1041"));
        let sorted = groups.sorted();
        assert_eq!(sorted.len(), 1, "{sorted:?}");
        assert_eq!(
            sorted[0].0.error.as_deref(),
            Some("handler `billing` failed on record *: no stock")
        );
    }

    #[test]
    fn since_takes_times_and_times_ago() {
        assert_eq!(
            parse_since("1h").unwrap(),
            Position::Since(Duration::from_secs(3600))
        );
        assert_eq!(
            parse_since("-15m").unwrap(),
            Position::Since(Duration::from_secs(900))
        );
        assert!(matches!(
            parse_since("2026-12-03T10:00:00Z").unwrap(),
            Position::Timestamp(_)
        ));
        for bad in ["latest", "42", "yesterday"] {
            assert!(
                parse_since(bad).unwrap_err().contains("not a time"),
                "{bad}"
            );
        }
    }

    #[test]
    fn records_group_by_subscription_topic_and_error_start() {
        let mut groups = Groups::default();
        let long = format!("cannot parse {}", "x".repeat(200));
        groups.add(&dead_letter("billing", long.as_bytes(), 2_000));
        groups.add(&dead_letter("billing", b"timed out", 1_000));
        groups.add(&dead_letter("billing", b"timed out", 3_000));
        let mut other_long = long.clone();
        other_long.push('y');
        groups.add(&dead_letter("billing", other_long.as_bytes(), 5_000));
        let sorted = groups.sorted();
        assert_eq!(sorted.len(), 2);
        assert_eq!(sorted[0].1.count, 2);
        assert_eq!(sorted[1].1.count, 2);
        let timed_out = sorted
            .iter()
            .find(|(k, _)| k.error.as_deref() == Some("timed out"))
            .unwrap();
        assert_eq!(
            *timed_out.1,
            Tally {
                count: 2,
                oldest: Some(1_000),
                newest: Some(3_000)
            }
        );
        let value: serde_json::Value = serde_json::from_str(&groups.json("d", "p.d")).unwrap();
        assert_eq!(value["total"], 4);
        assert_eq!(value["oldest"], 1_000);
        assert_eq!(value["newest"], 5_000);
        assert_eq!(value["other"], serde_json::Value::Null);
        let table = groups.table();
        assert!(table.contains("1970-01-01T00:00:01Z"), "{table}");
        assert!(table.ends_with("total: 4 record(s) in 2 group(s), oldest 1970-01-01T00:00:01Z, newest 1970-01-01T00:00:05Z"), "{table}");
    }

    #[test]
    fn groups_are_bounded_and_hostile_text_is_shown_not_run() {
        let mut groups = Groups::default();
        for i in 0..MAX_GROUPS + 5 {
            groups.add(&dead_letter("s", format!("error {i}").as_bytes(), 1));
        }
        assert_eq!(groups.groups.len(), MAX_GROUPS);
        assert_eq!(groups.other.count, 5);
        assert!(groups.table().contains("(other groups, past 1000)"));

        let mut groups = Groups::default();
        groups.add(&dead_letter(
            "evil\x1b]0;pwned\x07",
            b"bad \xff\xfe\x1b[2J\nsecond line",
            1,
        ));
        let table = groups.table();
        assert!(
            !table.chars().any(|c| c.is_control() && c != '\n'),
            "{table:?}"
        );
        assert_eq!(table.lines().count(), 3, "{table}");
        assert!(table.contains("evil\\u{1b}]0;pwned\\u{7}"), "{table}");
        assert!(table.contains("bad \u{fffd}\u{fffd}\\u{1b}[2J…"), "{table}");
    }
}
