//! `kafkaesk streams` and `kafkaesk groups`: what the broker holds under the
//! topic prefix, as a table or as JSON lines.

use std::io::Write;
use std::time::Duration;

use kafkaesk::admin::{ConsumerGroup, StreamConfig, StreamInfo, StreamLag};
use kafkaesk::record::printable;
use kafkaesk::worker::ConnectionOptions;
use kafkaesk::Streams;
use serde_json::json;

use crate::connection::{connect, Failure};

/// The flags of `kafkaesk streams`.
#[derive(Debug, Clone, clap::Args)]
pub struct StreamsArgs {
    /// Only the streams matching this fnmatch pattern, such as `orders.*`.
    pub pattern: Option<String>,

    /// One JSON object per stream and line instead of a table.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub connection: ConnectionOptions,
}

/// The flags of `kafkaesk groups`.
#[derive(Debug, Clone, clap::Args)]
pub struct GroupsArgs {
    /// Only the groups whose name matches this fnmatch pattern, such as `billing-*`.
    pub pattern: Option<String>,

    /// One JSON object per group and stream and line, with every partition's lag.
    #[arg(long)]
    pub json: bool,

    /// One table row per partition: committed offset, end and lag.
    #[arg(long, short)]
    pub verbose: bool,

    #[command(flatten)]
    pub connection: ConnectionOptions,
}

/// Runs `kafkaesk streams`.
pub async fn streams(args: StreamsArgs) -> Result<(), Failure> {
    let app = connect(&args.connection).await?;
    let prefix = app.settings().topic_prefix.clone();
    let mut cluster = app.cluster_metadata().await?;
    if let Some(pattern) = &args.pattern {
        let wanted = Streams::Pattern(pattern.clone());
        cluster
            .streams
            .retain(|s| wanted.matches_topic(&prefix, &s.topic));
    }
    // Retention is extra: a broker that does not describe configs still
    // gets its streams listed.
    let configs = match app
        .stream_configs(cluster.streams.iter().map(|s| s.stream.as_str()))
        .await
    {
        Ok(configs) => configs,
        Err(err) => {
            eprintln!("kafkaesk: retention unknown: {err}");
            Vec::new()
        }
    };
    let config_of = |stream: &StreamInfo| configs.iter().find(|c| c.topic == stream.topic);
    let mut lines = Vec::new();
    if args.json {
        for stream in &cluster.streams {
            lines.push(stream_json(stream, config_of(stream)));
        }
    } else {
        let mut rows = vec![row([
            "STREAM",
            "PARTITIONS",
            "MESSAGES",
            "RETENTION",
            "RETENTION BYTES",
            "CLEANUP",
        ])];
        for stream in &cluster.streams {
            let config = config_of(stream);
            rows.push(vec![
                stream.stream.clone(),
                stream.partitions.len().to_string(),
                message_count(stream).to_string(),
                config
                    .and_then(|c| c.retention_ms)
                    .map_or_else(unknown, retention_time),
                config
                    .and_then(|c| c.retention_bytes)
                    .map_or_else(unknown, retention_bytes),
                config
                    .and_then(|c| c.cleanup_policy.clone())
                    .unwrap_or_else(unknown),
            ]);
        }
        lines.push(table(&rows));
        if cluster.streams.is_empty() {
            eprintln!("kafkaesk: no stream under the prefix `{prefix}`");
        }
    }
    print_lines(&lines)
}

/// Runs `kafkaesk groups`.
pub async fn groups(args: GroupsArgs) -> Result<(), Failure> {
    let app = connect(&args.connection).await?;
    let prefix = app.settings().topic_prefix.clone();
    let wanted = args.pattern.clone().map(Streams::Pattern);
    let mut found: Vec<(ConsumerGroup, Vec<StreamLag>)> = Vec::new();
    for group in app.consumer_groups().await? {
        if wanted
            .as_ref()
            .is_some_and(|w| !w.matches_topic("", &group.name))
        {
            continue;
        }
        let streams = app.group_streams(&group.name).await?;
        if !streams.is_empty() {
            found.push((group, streams));
        }
    }
    let mut lines = Vec::new();
    if args.json {
        for (group, streams) in &found {
            for stream in streams {
                lines.push(group_json(group, stream));
            }
        }
    } else {
        lines.push(groups_table(&found, args.verbose));
    }
    if found.is_empty() {
        eprintln!(
            "kafkaesk: no consumer group{} has committed offsets on a stream under the \
             prefix `{prefix}`",
            args.pattern
                .as_ref()
                .map(|p| format!(" matching `{p}`"))
                .unwrap_or_default()
        );
    }
    print_lines(&lines)
}

/// Records stored: high minus low watermark over the partitions. An upper
/// bound on compacted topics and with transaction markers, which hold offsets
/// without readable records.
fn message_count(stream: &StreamInfo) -> i64 {
    stream
        .partitions
        .iter()
        .map(|p| (p.high - p.low).max(0))
        .sum()
}

fn stream_json(stream: &StreamInfo, config: Option<&StreamConfig>) -> String {
    json!({
        "stream": stream.stream,
        "topic": stream.topic,
        "partitions": stream.partitions.len(),
        "messages": message_count(stream),
        "retention_ms": config.and_then(|c| c.retention_ms),
        "retention_bytes": config.and_then(|c| c.retention_bytes),
        "cleanup_policy": config.and_then(|c| c.cleanup_policy.clone()),
        "watermarks": stream
            .partitions
            .iter()
            .map(|p| json!({"partition": p.id, "low": p.low, "high": p.high}))
            .collect::<Vec<_>>(),
    })
    .to_string()
}

fn group_json(group: &ConsumerGroup, stream: &StreamLag) -> String {
    json!({
        "group": group.name,
        "state": group.state,
        "members": group.members,
        "stream": stream.stream,
        "topic": stream.topic,
        "lag": stream.total_lag(),
        "partitions": stream
            .partitions
            .iter()
            .map(|p| json!({
                "partition": p.partition,
                "committed": p.committed,
                "end": p.high,
                "lag": p.lag,
            }))
            .collect::<Vec<_>>(),
    })
    .to_string()
}

fn groups_table(found: &[(ConsumerGroup, Vec<StreamLag>)], verbose: bool) -> String {
    let mut rows = if verbose {
        vec![row([
            "GROUP",
            "STATE",
            "MEMBERS",
            "STREAM",
            "PARTITION",
            "COMMITTED",
            "END",
            "LAG",
        ])]
    } else {
        vec![row(["GROUP", "STATE", "MEMBERS", "STREAM", "LAG"])]
    };
    for (group, streams) in found {
        let state = if group.state.is_empty() {
            unknown()
        } else {
            group.state.clone()
        };
        for stream in streams {
            // Group ids and states come from the broker, as any client set them.
            let start = [
                printable(&group.name).into_owned(),
                printable(&state).into_owned(),
                group.members.to_string(),
                stream.stream.clone(),
            ];
            if verbose {
                for p in &stream.partitions {
                    let mut row = start.to_vec();
                    row.extend([
                        p.partition.to_string(),
                        p.committed.map_or_else(unknown, |c| c.to_string()),
                        p.high.to_string(),
                        p.lag.to_string(),
                    ]);
                    rows.push(row);
                }
            } else {
                let mut row = start.to_vec();
                row.push(stream.total_lag().to_string());
                rows.push(row);
            }
        }
    }
    table(&rows)
}

fn row<const N: usize>(cells: [&str; N]) -> Vec<String> {
    cells.iter().map(|c| (*c).to_owned()).collect()
}

fn unknown() -> String {
    "-".to_owned()
}

/// `retention.ms` for people: `7days`, `forever`.
fn retention_time(ms: i64) -> String {
    match u64::try_from(ms) {
        Ok(ms) => humantime::format_duration(Duration::from_millis(ms)).to_string(),
        Err(_) => "forever".to_owned(),
    }
}

/// `retention.bytes` for people: `1048576`, `unlimited`.
fn retention_bytes(bytes: i64) -> String {
    if bytes < 0 {
        "unlimited".to_owned()
    } else {
        bytes.to_string()
    }
}

/// Left-aligned columns two spaces apart, without trailing spaces.
pub(crate) fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|r| {
            let mut line = String::new();
            for (i, cell) in r.iter().enumerate() {
                line.push_str(cell);
                if i + 1 < r.len() {
                    let pad = widths[i] - cell.chars().count() + 2;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            line
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Prints each line; a closed pipe ends quietly.
pub(crate) fn print_lines(lines: &[String]) -> Result<(), Failure> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let written = lines
        .iter()
        .try_for_each(|line| writeln!(out, "{line}"))
        .and_then(|()| out.flush());
    match written {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Failure::Runtime(format!("cannot write to stdout: {err}")))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafkaesk::admin::{PartitionInfo, PartitionLag};

    fn partition(id: i32, low: i64, high: i64) -> PartitionInfo {
        PartitionInfo {
            id,
            leader: 1,
            replicas: vec![1],
            in_sync_replicas: vec![1],
            low,
            high,
        }
    }

    #[test]
    fn tables_align_columns_without_trailing_spaces() {
        let text = table(&[row(["STREAM", "LAG"]), row(["orders.created", "12"])]);
        assert_eq!(text, "STREAM          LAG\norders.created  12");
    }

    #[test]
    fn messages_are_the_watermark_spans_and_retention_reads_for_people() {
        let stream = StreamInfo {
            stream: "orders".into(),
            topic: "p.orders".into(),
            partitions: vec![partition(0, 3, 10), partition(1, 0, 5)],
        };
        assert_eq!(message_count(&stream), 12);
        assert_eq!(retention_time(604_800_000), "7days");
        assert_eq!(retention_time(-1), "forever");
        assert_eq!(retention_bytes(-1), "unlimited");
        let config = StreamConfig {
            stream: "orders".into(),
            topic: "p.orders".into(),
            retention_ms: Some(3_600_000),
            retention_bytes: None,
            cleanup_policy: Some("compact".into()),
        };
        let value: serde_json::Value =
            serde_json::from_str(&stream_json(&stream, Some(&config))).unwrap();
        assert_eq!(value["partitions"], 2);
        assert_eq!(value["messages"], 12);
        assert_eq!(value["retention_ms"], 3_600_000);
        assert_eq!(value["retention_bytes"], serde_json::Value::Null);
        assert_eq!(value["cleanup_policy"], "compact");
        assert_eq!(
            value["watermarks"][0],
            json!({"partition": 0, "low": 3, "high": 10})
        );
    }

    #[test]
    fn groups_show_total_lag_or_every_partition() {
        let group = ConsumerGroup {
            name: "billing".into(),
            state: String::new(),
            protocol_type: "consumer".into(),
            members: 0,
        };
        let lag = StreamLag {
            stream: "orders".into(),
            topic: "p.orders".into(),
            partitions: vec![
                PartitionLag {
                    partition: 0,
                    committed: Some(4),
                    high: 10,
                    lag: 6,
                },
                PartitionLag {
                    partition: 1,
                    committed: None,
                    high: 2,
                    lag: 2,
                },
            ],
        };
        let found = vec![(group.clone(), vec![lag.clone()])];
        let short = groups_table(&found, false);
        assert_eq!(
            short.lines().nth(1),
            Some("billing  -      0        orders  8")
        );
        let long = groups_table(&found, true);
        assert_eq!(long.lines().count(), 3, "{long}");
        assert!(
            long.lines()
                .nth(2)
                .is_some_and(|l| l.ends_with("1          -          2    2")),
            "{long}"
        );
        let value: serde_json::Value = serde_json::from_str(&group_json(&group, &lag)).unwrap();
        assert_eq!(value["lag"], 8);

        // Any client chooses its group id: a terminal escape is shown, not run.
        let hostile = ConsumerGroup {
            name: "evil\x1b]0;pwned\x07\nforged".into(),
            ..group
        };
        let table = groups_table(&[(hostile, vec![lag])], false);
        assert!(
            !table.chars().any(|c| c.is_control() && c != '\n'),
            "{table:?}"
        );
        assert_eq!(table.lines().count(), 2, "{table}");
        assert!(
            table.contains("evil\\u{1b}]0;pwned\\u{7}\\u{a}forged"),
            "{table}"
        );
        assert_eq!(value["partitions"][1]["committed"], serde_json::Value::Null);
        assert_eq!(value["partitions"][0]["end"], 10);
    }
}
