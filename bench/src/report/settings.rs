//! The client settings of a run, as the report states them, and what they
//! imply for the figures: a run on librdkafka's defaults against tansu is
//! capped by the broker, not by the clients.

use super::ruststream_ran;
use crate::kafka::ExtraSettings;
use crate::Results;

/// What each side that ran got on top of its defaults (`--setting` for every
/// client, `--kafkaesk-setting` for kafkaesk's alone), so that a reader can
/// tell a run on the broker's terms from one on librdkafka's defaults.
pub(super) fn client_settings(results: &Results, settings: &ExtraSettings) -> String {
    let pairs = |list: &[(String, String)]| -> Vec<String> {
        list.iter().map(|(k, v)| format!("{k}={v}")).collect()
    };
    let every_client = pairs(&settings.both);
    let mut sides = vec![format!(
        "rdkafka baseline: {}",
        code_list(&every_client, "librdkafka defaults")
    )];
    let kafkaesk = [every_client.clone(), pairs(&settings.kafkaesk)].concat();
    sides.push(if kafkaesk.is_empty() {
        "kafkaesk: its defaults (see *librdkafka settings* below)".to_owned()
    } else {
        format!("kafkaesk: {} over its defaults", code_list(&kafkaesk, ""))
    });
    if ruststream_ran(results) {
        sides.push(format!(
            "RustStream: {}",
            code_list(&every_client, "librdkafka defaults")
        ));
    }
    if !results.python_consume.is_empty() || !results.python_publish.is_empty() {
        // Python kafkaesk runs on aiokafka, which gets the same settings
        // under its own names (bench/src/python.rs refuses the others).
        let aiokafka: Vec<String> = settings
            .both
            .iter()
            .map(|(k, v)| format!("{}={v}", crate::python::aiokafka_name(k).unwrap_or(k)))
            .collect();
        sides.push(format!(
            "Python kafkaesk: {}",
            code_list(&aiokafka, "aiokafka defaults")
        ));
    }
    sides.join("; ")
}

/// `items` as inline code, comma-separated, or `none` when there are none.
fn code_list(items: &[String], none: &str) -> String {
    if items.is_empty() {
        none.to_owned()
    } else {
        items
            .iter()
            .map(|item| format!("`{item}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Whether every side's `fetch.wait.max.ms` is under librdkafka's default of
/// 500 ms; the last `--setting` of a key is the one librdkafka keeps.
pub(super) fn fetch_wait_lowered(settings: &ExtraSettings) -> bool {
    settings
        .both
        .iter()
        .rev()
        .find(|(key, _)| key == "fetch.wait.max.ms")
        .and_then(|(_, value)| value.parse::<u64>().ok())
        .is_some_and(|ms| ms < 500)
}

/// Under the tables when the fetch wait kept its default on a tansu broker:
/// the facts of "The broker sets consume throughput and latency in the
/// default runs" in `bench/ANALYSIS.md`.
pub(super) const BROKER_CAP: &str =
    "The consume and latency figures of this run are capped by the \
broker's fetch wait, not by the clients: no `--setting` lowered `fetch.wait.max.ms` below \
librdkafka's default of 500 ms, and tansu 0.6.0 holds every fetch for at least half of it, \
so every Rust side consumes at about the same rate and sees about the same latency whatever \
its cost; a run with `--setting fetch.wait.max.ms=5` lifts the cap (see \"The broker sets \
consume throughput and latency in the default runs\" in the analysis below).";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_fetch_wait_setting_counts() {
        let lowered = |values: &[&str]| {
            fetch_wait_lowered(&ExtraSettings {
                both: values
                    .iter()
                    .map(|v| ("fetch.wait.max.ms".to_owned(), (*v).to_owned()))
                    .collect(),
                kafkaesk: Vec::new(),
            })
        };
        assert!(lowered(&["5"]));
        assert!(lowered(&["500", "5"]));
        assert!(!lowered(&["5", "500"]));
        assert!(!lowered(&["1000"]));
        assert!(!lowered(&[]));
    }
}
