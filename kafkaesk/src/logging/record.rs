//! The shipped record, and the facts about the host that every record carries.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};
use tracing::Level;

use super::fields::Entry;

/// One shipped log record: the `data` of a `PydanticLogModel:1` message.
///
/// The schema id is Python kafkaesk's, so Python services subscribe to the
/// same stream with `PydanticLogModel` and Rust services with this type:
///
/// ```
/// #[kafkaesk::subscribe("logging.*", group = "log-indexer")]
/// async fn index(record: kafkaesk::logging::LogRecord) {
///     println!("{} {} {}: {}", record.timestamp, record.severity, record.logger, record.message);
///     if let Some(user) = record.fields.get("user") {
///         println!("  user = {user}");
///     }
/// }
/// ```
///
/// See the [module docs](super#each-record) for what each field holds.
#[crate::schema("PydanticLogModel", version = 1)]
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct LogRecord {
    /// When the event happened: UTC, ISO 8601, microseconds.
    pub timestamp: String,
    /// The event's target.
    pub logger: String,
    /// `TRACE`, `DEBUG`, `INFO`, `WARNING` or `ERROR`.
    pub severity: String,
    /// Python's level number: 5, 10, 20, 30 or 40.
    pub level: u32,
    /// The event's message.
    pub message: String,
    /// The type of the error the event carries.
    pub exception: Option<String>,
    /// A backtrace of the logging call, when backtraces are enabled.
    pub trace: Option<String>,
    /// The error's message and source chain.
    pub stack: Option<String>,
    /// The host name.
    pub hostname: String,
    /// The service, derived from a Kubernetes pod's host name.
    pub service: String,
    /// The Kubernetes namespace.
    pub namespace: Option<String>,
    /// The `CLUSTER` environment variable.
    pub cluster: Option<String>,
    /// The fields of the event and of its spans.
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

/// Keys of [`LogRecord`]'s own fields; event fields with these names get a
/// trailing underscore instead of overwriting them.
const RESERVED: [&str; 12] = [
    "timestamp",
    "logger",
    "severity",
    "level",
    "message",
    "exception",
    "trace",
    "stack",
    "hostname",
    "service",
    "namespace",
    "cluster",
];

/// Fields that `tracing-log` adds to bridged `log` records: their target
/// becomes `logger`, the rest say nothing a record needs.
const LOG_BRIDGE_FIELDS: [&str; 4] = ["log.target", "log.module_path", "log.file", "log.line"];

/// What every record of this process says about where it comes from.
#[derive(Debug, Clone)]
pub(super) struct HostInfo {
    pub(super) hostname: String,
    pub(super) service: String,
    pub(super) namespace: Option<String>,
    pub(super) cluster: Option<String>,
}

impl HostInfo {
    pub(super) fn current() -> HostInfo {
        let hostname = crate::native::host::hostname();
        HostInfo {
            service: service_name(&hostname),
            hostname,
            namespace: kubernetes_namespace().clone(),
            cluster: std::env::var("CLUSTER").ok(),
        }
    }
}

impl Entry {
    pub(super) fn into_record(self, host: &HostInfo) -> LogRecord {
        let mut logger = self.target.to_owned();
        let mut fields = self.fields;
        if self.target == "log" {
            if let Some(Value::String(target)) = fields.remove("log.target") {
                logger = target;
            }
            for key in LOG_BRIDGE_FIELDS {
                fields.remove(key);
            }
        }
        let fields = fields
            .into_iter()
            .map(|(key, value)| {
                if RESERVED.contains(&key.as_str()) {
                    (format!("{key}_"), value)
                } else {
                    (key, value)
                }
            })
            .collect();
        let (severity, level) = level_names(self.level);
        let (exception, stack, trace) = match self.error {
            Some(error) => (Some(error.exception), Some(error.stack), error.trace),
            None => (None, None, None),
        };
        LogRecord {
            timestamp: iso8601(self.time),
            logger,
            severity: severity.to_owned(),
            level,
            message: self.message,
            exception,
            trace,
            stack,
            hostname: host.hostname.clone(),
            service: host.service.clone(),
            namespace: host.namespace.clone(),
            cluster: host.cluster.clone(),
            fields,
        }
    }
}

/// Python's level names and numbers; TRACE, which Python lacks, sits below DEBUG.
pub(super) fn level_names(level: Level) -> (&'static str, u32) {
    match level {
        Level::TRACE => ("TRACE", 5),
        Level::DEBUG => ("DEBUG", 10),
        Level::INFO => ("INFO", 20),
        Level::WARN => ("WARNING", 30),
        Level::ERROR => ("ERROR", 40),
    }
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ`. Times before 1970 are clamped to it.
pub(super) fn iso8601(time: SystemTime) -> String {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since_epoch.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let of_day = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60,
        since_epoch.subsec_micros()
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date, after Howard
/// Hinnant's `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month as u32, day as u32)
}

/// A Kubernetes pod is named `<deployment>-<replica set hash>-<pod hash>`;
/// Python kafkaesk drops up to the last two dash-separated parts.
pub(super) fn service_name(hostname: &str) -> String {
    let parts: Vec<&str> = hostname.split('-').collect();
    let dashes = parts.len() - 1;
    if dashes == 0 {
        return "unknown".to_owned();
    }
    parts[..parts.len() - dashes.min(2)].join("-")
}

const NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// Read once per process, like Python's: a pod does not change namespace.
fn kubernetes_namespace() -> &'static Option<String> {
    static NAMESPACE: OnceLock<Option<String>> = OnceLock::new();
    NAMESPACE.get_or_init(|| {
        std::fs::read_to_string(NAMESPACE_FILE)
            .ok()
            .map(|text| text.trim().to_owned())
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::schema::SchemaInfo;

    #[test]
    fn service_follows_python() {
        assert_eq!(service_name("my-svc-5d8f9-abcde"), "my-svc");
        assert_eq!(service_name("api-7c9d8-x2z4q"), "api");
        assert_eq!(service_name("web-1"), "web");
        assert_eq!(service_name("laptop"), "unknown");
    }

    #[test]
    fn timestamps_are_utc_iso8601() {
        let at = |secs: u64, micros: u64| {
            iso8601(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros))
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00.000005Z");
        assert_eq!(at(1_709_251_199, 999_999), "2024-02-29T23:59:59.999999Z");
        assert_eq!(at(4_102_444_800, 0), "2100-01-01T00:00:00.000000Z");
    }

    fn entry(fields: Value) -> Entry {
        let Value::Object(fields) = fields else {
            panic!("fields must be an object");
        };
        Entry {
            time: UNIX_EPOCH,
            level: Level::INFO,
            target: "app::orders",
            message: "placed".into(),
            fields,
            error: None,
        }
    }

    fn host() -> HostInfo {
        HostInfo {
            hostname: "orders-5d8f9-abcde".into(),
            service: "orders".into(),
            namespace: None,
            cluster: Some("eu".into()),
        }
    }

    #[test]
    fn record_has_python_shape_and_passes_its_schema() {
        let record = entry(serde_json::json!({
            "user": "kafkaesk", "n": 3, "nested": {"a": [1, 2]}, "level": "mine"
        }))
        .into_record(&host());
        let info = SchemaInfo::of::<LogRecord>().unwrap();
        let bytes = info.encode(&record).unwrap();
        let wire: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(wire["schema"], "PydanticLogModel:1");
        assert_eq!(
            wire["data"],
            serde_json::json!({
                "timestamp": "1970-01-01T00:00:00.000000Z", "logger": "app::orders",
                "severity": "INFO", "level": 20, "message": "placed",
                "exception": null, "trace": null, "stack": null,
                "hostname": "orders-5d8f9-abcde", "service": "orders",
                "namespace": null, "cluster": "eu",
                "user": "kafkaesk", "n": 3, "nested": {"a": [1, 2]}, "level_": "mine",
            })
        );
        let back: LogRecord = serde_json::from_value(wire["data"].clone()).unwrap();
        assert_eq!(back, record);
    }

    #[test]
    fn bridged_log_records_use_the_log_target() {
        let mut e = entry(serde_json::json!({
            "log.target": "legacy::db", "log.module_path": "legacy::db", "log.file": "db.rs",
            "log.line": 9, "rows": 2
        }));
        e.target = "log";
        let record = e.into_record(&host());
        assert_eq!(record.logger, "legacy::db");
        assert_eq!(Value::Object(record.fields), serde_json::json!({"rows": 2}));
    }

    #[test]
    fn levels_map_to_python_numbers() {
        assert_eq!(level_names(Level::TRACE), ("TRACE", 5));
        assert_eq!(level_names(Level::WARN), ("WARNING", 30));
        assert_eq!(level_names(Level::ERROR), ("ERROR", 40));
    }
}
