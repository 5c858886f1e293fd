//! Shared pieces of the kafkaesk benchmarks: the message every scenario sends,
//! its wire bytes, CPU and memory probes, statistics, and the broker-free
//! per-message paths that `benches/dispatch.rs` and the `kafkaesk-bench`
//! binary both time.

#![warn(missing_docs)]

pub mod measure;
pub mod micro;

use serde::{Deserialize, Serialize};

/// The message of every scenario: about 200 bytes once wrapped in the envelope.
#[kafkaesk::schema("Bench", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Bench {
    /// Sequence number; negative for warm-up messages that are not measured.
    pub id: i64,
    /// A short label.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Three tags.
    pub tags: Vec<String>,
    /// A float, so number formatting is part of the cost.
    pub value: f64,
    /// A flag.
    pub active: bool,
    /// Free text that brings the envelope to about 200 bytes.
    pub note: String,
}

/// The schema key written into every envelope.
pub const SCHEMA_KEY: &str = "Bench:1";

/// The envelope as a hand-written consumer decodes it: Python kafkaesk's wire
/// format, `{"schema":"Bench:1","data":{...}}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// `"Id:version"`.
    pub schema: String,
    /// The payload.
    pub data: T,
}

impl Bench {
    /// The `i`-th message of a run. Deterministic, so every side sends the same bytes.
    pub fn sample(i: i64) -> Self {
        Bench {
            id: i,
            name: format!("bench-item-{:08}", i.rem_euclid(100_000_000)),
            tags: vec!["alpha".into(), "beta".into(), "gamma".into()],
            value: i as f64 * 0.5 + 0.25,
            active: i % 2 == 0,
            note: "the quick brown fox jumps over the lazy dog, twice".into(),
        }
    }
}

/// The envelope bytes of `data`, serialised directly with serde_json (no validation):
/// what the baselines send and what pre-filled topics contain.
pub fn envelope_bytes(data: &Bench) -> Vec<u8> {
    #[derive(Serialize)]
    struct EnvelopeRef<'a> {
        schema: &'a str,
        data: &'a Bench,
    }
    serde_json::to_vec(&EnvelopeRef {
        schema: SCHEMA_KEY,
        data,
    })
    .expect("serialising a Bench message cannot fail")
}

/// Decodes an envelope and its data with serde_json, as the rdkafka baseline does.
pub fn decode_envelope(bytes: &[u8]) -> Result<Bench, serde_json::Error> {
    serde_json::from_slice::<Envelope<Bench>>(bytes).map(|e| e.data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_is_about_200_bytes_and_round_trips() {
        let data = Bench::sample(123_456);
        let bytes = envelope_bytes(&data);
        assert!(
            (180..=230).contains(&bytes.len()),
            "{} bytes: {}",
            bytes.len(),
            String::from_utf8_lossy(&bytes)
        );
        assert!(bytes.starts_with(br#"{"schema":"Bench:1","data":{"id":123456,"#));
        assert_eq!(decode_envelope(&bytes).unwrap(), data);
    }

    #[test]
    fn kafkaesk_encodes_the_same_bytes() {
        // kafkaesk validates while serializing, so its envelope is byte for
        // byte what a plain serde_json encoder writes.
        let info = kafkaesk::schema::SchemaInfo::of::<Bench>().unwrap();
        assert!(info.checks_while_serializing());
        let data = Bench::sample(7);
        assert_eq!(info.encode(&data).unwrap(), envelope_bytes(&data));
    }
}
