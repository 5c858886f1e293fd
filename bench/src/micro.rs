//! Per-message work without a broker, timed by `benches/dispatch.rs` (criterion)
//! and by the `kafkaesk-bench` binary (a plain loop, so the report has numbers).
//!
//! Both sides are the library's own code: [`Dispatch`] runs a subscription on a
//! hand-made [`Record`] through `Subscription::handle_record`, and
//! [`kafkaesk_encode`] is `SchemaInfo::encode`.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use kafkaesk::schema::SchemaInfo;
use kafkaesk::{Application, Headers, Record, Subscription};

use crate::{envelope_bytes, Bench};

/// The limit for consuming: serde_json decoding the envelope and its data.
pub fn plain_decode(bytes: &[u8]) -> Bench {
    crate::decode_envelope(bytes).expect("benchmark bytes are a valid envelope")
}

/// The limit for publishing: serde_json writing the envelope, no validation.
pub fn plain_encode(data: &Bench) -> Vec<u8> {
    envelope_bytes(data)
}

/// kafkaesk's publish path without the broker: serialise, validate against the
/// JSON Schema, write the envelope ([`SchemaInfo::encode`]).
pub fn kafkaesk_encode(info: &SchemaInfo, data: &Bench) -> Vec<u8> {
    info.encode(data)
        .expect("a sample Bench message is valid against its schema")
}

/// kafkaesk's consume path for one record without a broker: the library's own
/// [`Subscription::handle_record`], which decodes the envelope into the typed
/// data, builds the handler's context, and runs the handler under
/// `catch_unwind`, exactly as the consumer does per record.
pub struct Dispatch {
    app: Application,
    subscription: Subscription,
    sum: Arc<AtomicU64>,
    topic: String,
}

impl Default for Dispatch {
    fn default() -> Self {
        Self::new()
    }
}

impl Dispatch {
    /// A subscription whose handler adds up the ids it sees, like the
    /// benchmark's handlers.
    pub fn new() -> Self {
        let sum = Arc::new(AtomicU64::new(0));
        let seen = sum.clone();
        let subscription = Subscription::new("bench.dispatch", move |data: Bench| {
            seen.fetch_add(data.id as u64, Ordering::Relaxed);
            async {}
        });
        Dispatch {
            app: Application::builder()
                .build()
                .expect("an application without servers builds"),
            subscription,
            sum,
            topic: "bench.dispatch".to_owned(),
        }
    }

    /// Handles one message value at `offset`, as the consumer would.
    pub fn dispatch(&self, value: &[u8], offset: i64) {
        let record = Record::new(
            self.topic.as_str(),
            offset as i32 % 7,
            offset,
            None,
            Some(value.to_vec()),
            Headers::new(),
            Some(0),
        );
        let run = self.subscription.handle_record(&self.app, record);
        let mut run = std::pin::pin!(run);
        // The handler never waits, so one poll finishes it; no runtime needed.
        let mut cx = Context::from_waker(Waker::noop());
        match run.as_mut().poll(&mut cx) {
            Poll::Ready(Ok(())) => {}
            other => panic!("the benchmark handler did not finish at once: {other:?}"),
        }
    }

    /// Sum of the ids handled so far.
    pub fn sum(&self) -> u64 {
        self.sum.load(Ordering::Relaxed)
    }
}

impl std::fmt::Debug for Dispatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatch")
            .field("sum", &self.sum())
            .finish_non_exhaustive()
    }
}

/// Nanoseconds per message of each micro path, measured by [`measure_all`].
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct MicroResult {
    /// serde_json decoding of the envelope into the struct.
    pub plain_decode_ns: f64,
    /// kafkaesk's decode and dispatch ([`Dispatch`]).
    pub dispatch_ns: f64,
    /// serde_json encoding of the envelope.
    pub plain_encode_ns: f64,
    /// kafkaesk's `SchemaInfo::encode`: serialise, validate, write.
    pub kafkaesk_encode_ns: f64,
}

/// Times each path `rounds` times over `messages` distinct messages and keeps
/// the median nanoseconds per message. The paths alternate within a round so
/// that noise from other processes hits them alike.
pub fn measure_all(messages: usize, rounds: usize) -> MicroResult {
    let data: Vec<Bench> = (0..messages as i64).map(Bench::sample).collect();
    let bytes: Vec<Vec<u8>> = data.iter().map(envelope_bytes).collect();
    let info = SchemaInfo::of::<Bench>().expect("the Bench schema compiles");
    let dispatch = Dispatch::new();

    let time = |f: &mut dyn FnMut()| {
        let started = Instant::now();
        f();
        per_message(started.elapsed(), messages)
    };
    let mut samples = [const { Vec::new() }; 4];
    // One untimed pass warms caches and the allocator.
    for round in 0..=rounds {
        let results = [
            time(&mut || {
                for b in &bytes {
                    std::hint::black_box(plain_decode(std::hint::black_box(b)));
                }
            }),
            time(&mut || {
                for (i, b) in bytes.iter().enumerate() {
                    dispatch.dispatch(std::hint::black_box(b), i as i64);
                }
            }),
            time(&mut || {
                for d in &data {
                    std::hint::black_box(plain_encode(std::hint::black_box(d)));
                }
            }),
            time(&mut || {
                for d in &data {
                    std::hint::black_box(kafkaesk_encode(&info, std::hint::black_box(d)));
                }
            }),
        ];
        if round > 0 {
            for (sample, result) in samples.iter_mut().zip(results) {
                sample.push(result);
            }
        }
    }
    let m = |i: usize| crate::measure::median(&samples[i]);
    MicroResult {
        plain_decode_ns: m(0),
        dispatch_ns: m(1),
        plain_encode_ns: m(2),
        kafkaesk_encode_ns: m(3),
    }
}

fn per_message(elapsed: Duration, messages: usize) -> f64 {
    elapsed.as_nanos() as f64 / messages.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_handles_the_sample() {
        let data = Bench::sample(3);
        let bytes = envelope_bytes(&data);
        assert_eq!(plain_decode(&bytes), data);
        let info = SchemaInfo::of::<Bench>().unwrap();
        let decoded = crate::decode_envelope(&kafkaesk_encode(&info, &data)).unwrap();
        assert_eq!(decoded, data);
        let dispatch = Dispatch::new();
        dispatch.dispatch(&bytes, 0);
        dispatch.dispatch(&bytes, 1);
        assert_eq!(dispatch.sum(), 2 * data.id as u64);
        let result = measure_all(50, 1);
        assert!(result.plain_decode_ns > 0.0 && result.kafkaesk_encode_ns > 0.0);
    }
}
