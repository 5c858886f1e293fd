//! `kafkaesk read`: a stream's records as JSON lines on stdout.
//!
//! One object per record, in the reader's order:
//!
//! ```text
//! {"stream":"orders","topic":"prod.orders","partition":0,"offset":7,"timestamp":1764756000000,
//!  "key":"customer-7","headers":[["trace-id","4bf9"]],"json":true,
//!  "message":{"schema":"Order:1","data":{"id":7}}}
//! ```
//!
//! Bytes (key, header values, and a value that is not JSON) are a JSON
//! string when they are UTF-8 and `{"base64": "..."}` (standard alphabet,
//! padded) when not, so a string is always the bytes' exact text; a missing
//! key, a null header value and a null (tombstone) value are `null`.
//! Headers are `[name, value]` pairs in their order, because Kafka lets a
//! name repeat. `json` says whether `message` is the value parsed as JSON
//! (the kafkaesk envelope, for kafkaesk's messages) or the raw bytes.

use std::io::Write;

use base64::Engine as _;
use futures::StreamExt as _;
use kafkaesk::subscription::Position;
use kafkaesk::worker::ConnectionOptions;
use kafkaesk::Record;
use serde::Serialize;

use crate::connection::{connect, Failure};

/// The flags of `kafkaesk read`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReadArgs {
    /// The stream, or an fnmatch pattern over stream names such as `orders.*`.
    pub stream: String,

    /// Where to start: earliest, latest, an offset (42, in every partition read), a UTC time
    /// (2026-12-03T10:00:00Z) or a time ago (-24h, -15m) [default: earliest, or latest with
    /// --backward].
    #[arg(long, value_name = "POSITION", value_parser = parse_position, allow_hyphen_values = true)]
    pub from: Option<Position>,

    /// Newest first, from the position back to the start (not with --follow).
    #[arg(long)]
    pub backward: bool,

    /// Print at most N records.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,

    /// Read only this partition (repeat for several).
    #[arg(long = "partition", value_name = "P")]
    pub partitions: Vec<i32>,

    /// After the end, print records as they arrive, until SIGINT (Ctrl-C) or SIGTERM.
    #[arg(long)]
    pub follow: bool,

    #[command(flatten)]
    pub connection: ConnectionOptions,
}

/// `--from`, with the position's own explanation as the error.
fn parse_position(text: &str) -> Result<Position, String> {
    text.parse::<Position>().map_err(|err| match err {
        kafkaesk::Error::InvalidSetting { reason, .. } => reason,
        other => other.to_string(),
    })
}

/// Bytes as JSON: their text when UTF-8, `{"base64": ...}` when not.
#[derive(Debug, PartialEq, Eq)]
enum Bytes<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
}

impl<'a> From<&'a [u8]> for Bytes<'a> {
    fn from(bytes: &'a [u8]) -> Self {
        match std::str::from_utf8(bytes) {
            Ok(text) => Bytes::Text(text),
            Err(_) => Bytes::Binary(bytes),
        }
    }
}

impl Serialize for Bytes<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Bytes::Text(text) => serializer.serialize_str(text),
            Bytes::Binary(bytes) => {
                use serde::ser::SerializeMap as _;
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry(
                    "base64",
                    &base64::engine::general_purpose::STANDARD.encode(bytes),
                )?;
                map.end()
            }
        }
    }
}

/// A record's value: parsed JSON, or the bytes when they are not JSON.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Message<'a> {
    Json(serde_json::Value),
    Raw(Option<Bytes<'a>>),
}

/// One output line; fields in the order printed.
#[derive(Debug, Serialize)]
struct Line<'a> {
    stream: &'a str,
    topic: &'a str,
    partition: i32,
    offset: i64,
    timestamp: Option<i64>,
    key: Option<Bytes<'a>>,
    headers: Vec<(&'a str, Option<Bytes<'a>>)>,
    json: bool,
    message: Message<'a>,
}

/// The JSON line of `record` (without its newline); `prefix` is stripped
/// from the topic to name the stream.
pub fn render(record: &Record, prefix: &str) -> String {
    let topic = record.topic();
    let message = match record.payload() {
        Some(value) => match serde_json::from_slice::<serde_json::Value>(value) {
            Ok(parsed) => Message::Json(parsed),
            Err(_) => Message::Raw(Some(Bytes::from(value))),
        },
        None => Message::Raw(None),
    };
    let line = Line {
        stream: topic.strip_prefix(prefix).unwrap_or(topic),
        topic,
        partition: record.partition(),
        offset: record.offset(),
        timestamp: record.timestamp(),
        key: record.key().map(Bytes::from),
        headers: record
            .headers()
            .iter()
            .map(|h| (h.key.as_str(), h.value.as_deref().map(Bytes::from)))
            .collect(),
        json: matches!(message, Message::Json(_)),
        message,
    };
    // Strings, numbers, nulls and maps with string keys: serializing cannot fail.
    serde_json::to_string(&line).unwrap_or_default()
}

/// How a read ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every record was printed (or stdout was closed, or a signal came while following).
    Complete,
    /// Errors were reported on stderr; the other records were printed.
    Errors {
        /// How many errors.
        errors: usize,
        /// How many records were printed.
        printed: usize,
    },
}

impl ReadArgs {
    /// Refuses flags that cannot go together, before any connection.
    pub fn check(&self) -> Result<(), Failure> {
        if self.backward && self.follow {
            return Err(Failure::Usage(BACKWARD_FOLLOW.to_owned()));
        }
        Ok(())
    }
}

/// Runs `kafkaesk read`.
pub async fn run(args: ReadArgs) -> Result<Outcome, Failure> {
    args.check()?;
    let app = connect(&args.connection).await?;
    let prefix = app.settings().topic_prefix.clone();
    let mut reader = app.reader(args.stream.clone());
    if let Some(position) = args.from {
        reader = reader.from(position);
    }
    if args.backward {
        reader = reader.backward();
    }
    if let Some(limit) = args.limit {
        reader = reader.limit(limit);
    }
    if !args.partitions.is_empty() {
        reader = reader.partitions(args.partitions.iter().copied());
    }
    if args.follow {
        reader = reader.follow();
    }
    let mut items = reader.iter::<Record>();
    let stdout = std::io::stdout();
    // Following, each line goes out as it comes; otherwise in large writes.
    let mut out = std::io::BufWriter::new(stdout.lock());
    let (mut errors, mut printed) = (0, 0);
    let mut stop = Stop::new(args.follow)?;
    loop {
        let item = tokio::select! {
            item = items.next() => item,
            () = stop.signalled() => break,
        };
        let Some(item) = item else { break };
        match item {
            Ok(item) => {
                let written = writeln!(out, "{}", render(&item.record, &prefix)).and_then(|()| {
                    if args.follow {
                        out.flush()
                    } else {
                        Ok(())
                    }
                });
                if let Err(err) = written {
                    return closed_stdout(err);
                }
                printed += 1;
            }
            Err(err) => {
                // Lines already printed go out before the error that follows them.
                if let Err(err) = out.flush() {
                    return closed_stdout(err);
                }
                errors += 1;
                eprintln!("error: {}", kafkaesk::record::printable(&err.to_string()));
            }
        }
    }
    if let Err(err) = out.flush() {
        return closed_stdout(err);
    }
    Ok(if errors == 0 {
        Outcome::Complete
    } else {
        Outcome::Errors { errors, printed }
    })
}

/// Why `--backward --follow` is refused.
pub const BACKWARD_FOLLOW: &str = "--backward cannot be used with --follow: a backward read \
     goes from the newest record back to the start, and new records arrive at the other end; \
     read forward to follow (e.g. --from latest --follow)";

/// A closed pipe (`kafkaesk read ... | head`) ends the read quietly; any
/// other write error is reported.
fn closed_stdout(err: std::io::Error) -> Result<Outcome, Failure> {
    if err.kind() == std::io::ErrorKind::BrokenPipe {
        Ok(Outcome::Complete)
    } else {
        Err(Failure::Runtime(format!("cannot write to stdout: {err}")))
    }
}

/// SIGINT and SIGTERM, listened to only while following: a read to the end
/// keeps the default of dying at once.
struct Stop {
    #[cfg(unix)]
    signals: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
    #[cfg(not(unix))]
    follow: bool,
}

impl Stop {
    fn new(follow: bool) -> Result<Stop, Failure> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let listen = |kind: SignalKind, name: &str| {
                signal(kind)
                    .map_err(|err| Failure::Runtime(format!("cannot listen for {name}: {err}")))
            };
            let signals = if follow {
                Some((
                    listen(SignalKind::interrupt(), "SIGINT")?,
                    listen(SignalKind::terminate(), "SIGTERM")?,
                ))
            } else {
                None
            };
            Ok(Stop { signals })
        }
        #[cfg(not(unix))]
        Ok(Stop { follow })
    }

    /// Resolves when a stop signal came; never, when not following.
    async fn signalled(&mut self) {
        #[cfg(unix)]
        match &mut self.signals {
            Some((interrupt, terminate)) => {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
            }
            None => std::future::pending().await,
        }
        #[cfg(not(unix))]
        if self.follow {
            let _ = tokio::signal::ctrl_c().await;
        } else {
            std::future::pending().await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafkaesk::{Header, Headers};

    fn parse(line: &str) -> serde_json::Value {
        assert!(!line.contains('\n'), "{line}");
        serde_json::from_str(line).unwrap()
    }

    #[test]
    fn a_kafkaesk_record_is_one_line_with_its_envelope_key_and_headers() {
        let envelope = br#"{"schema": "Order:1",
            "data": {"id": 7}}"#;
        let headers = Headers::new().with("trace", "a").with("trace", "b");
        let record = Record::new(
            "p.orders",
            2,
            41,
            Some(b"customer-7".to_vec()),
            Some(envelope.to_vec()),
            headers,
            Some(1_764_756_000_000),
        );
        let line = render(&record, "p.");
        let value = parse(&line);
        assert_eq!(
            value,
            serde_json::json!({
                "stream": "orders", "topic": "p.orders", "partition": 2, "offset": 41,
                "timestamp": 1_764_756_000_000_i64, "key": "customer-7",
                "headers": [["trace", "a"], ["trace", "b"]],
                "json": true,
                "message": {"schema": "Order:1", "data": {"id": 7}},
            })
        );
        // Fields in a fixed order, for people reading the lines.
        assert!(line.starts_with(r#"{"stream":"orders","topic":"p.orders","partition":2"#));
    }

    #[test]
    fn bytes_that_are_not_utf8_or_json_are_marked() {
        let mut headers = Headers::new().with("bin", [0xff, 0x00]);
        headers.push(Header {
            key: "null".into(),
            value: None,
        });
        let record = Record::new(
            "orders",
            0,
            0,
            Some(vec![0xde, 0xad, 0xbe, 0xef]),
            Some(b"not json".to_vec()),
            headers,
            None,
        );
        let value = parse(&render(&record, ""));
        assert_eq!(value["stream"], "orders");
        assert_eq!(value["timestamp"], serde_json::Value::Null);
        assert_eq!(value["key"], serde_json::json!({"base64": "3q2+7w=="}));
        assert_eq!(
            value["headers"],
            serde_json::json!([["bin", {"base64": "/wA="}], ["null", null]])
        );
        assert_eq!(value["json"], false);
        assert_eq!(value["message"], "not json");

        let binary = Record::new("orders", 0, 1, None, Some(vec![0x80]), Headers::new(), None);
        let value = parse(&render(&binary, ""));
        assert_eq!(value["key"], serde_json::Value::Null);
        assert_eq!(value["headers"], serde_json::json!([]));
        assert_eq!(value["json"], false);
        assert_eq!(value["message"], serde_json::json!({"base64": "gA=="}));
    }

    #[test]
    fn a_tombstone_is_null_and_an_empty_value_an_empty_string() {
        let tombstone = Record::new("s", 0, 0, Some(b"k".to_vec()), None, Headers::new(), None);
        let value = parse(&render(&tombstone, ""));
        assert_eq!(value["message"], serde_json::Value::Null);
        assert_eq!(value["json"], false);
        let empty = Record::new("s", 0, 1, None, Some(Vec::new()), Headers::new(), None);
        let value = parse(&render(&empty, ""));
        assert_eq!(value["message"], "");
        assert_eq!(value["json"], false);
    }

    #[test]
    fn a_topic_outside_the_prefix_keeps_its_name() {
        let record = Record::new(
            "other",
            0,
            0,
            None,
            Some(b"1".to_vec()),
            Headers::new(),
            None,
        );
        let value = parse(&render(&record, "p."));
        assert_eq!(value["stream"], "other");
        assert_eq!(value["message"], 1);
        assert_eq!(value["json"], true);
    }

    #[test]
    fn positions_parse_with_their_own_explanation() {
        assert_eq!(parse_position("latest").unwrap(), Position::Latest);
        assert_eq!(parse_position("42").unwrap(), Position::Offset(42));
        let err = parse_position("yesterday").unwrap_err();
        assert!(err.contains("`yesterday` is not a position"), "{err}");
        assert!(!err.starts_with("invalid setting"), "{err}");
    }
}
