//! Fetch errors that repeat. librdkafka reports a batch it cannot read (a
//! compression codec it was built without, a corrupt batch, a topic the
//! credentials may not read) as an error in place of records, and fetches
//! the same batch again, forever: the partition is stuck while the process
//! looks busy. This module tells a passing error from a stuck one; it does
//! no I/O, and the consumer logs, counts and reports what it decides.
//!
//! An error is told apart by its text. The first of a kind is logged once,
//! with a remedy where one is known; the repeats are only counted. One that
//! keeps coming for [`STALL_AFTER`] makes the consumer unhealthy, and one
//! not seen for [`QUIET_AFTER`] is over.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

/// How long an error must keep coming to make the consumer unhealthy.
/// librdkafka refetches a failed batch every `fetch.error.backoff.ms`
/// (500 ms by default), so a stuck partition repeats well within it.
pub(crate) const STALL_AFTER: Duration = Duration::from_secs(10);

/// How long an error must stay away to be over.
pub(crate) const QUIET_AFTER: Duration = Duration::from_secs(5);

/// What the consumer should do about an error just reported.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Seen {
    /// The first of its kind: log it, with its remedy.
    First(String),
    /// A repeat of one already logged: count it only.
    Again,
    /// A repeat that has now lasted [`STALL_AFTER`]: the consumer is stuck.
    Stalled(String),
}

/// One kind of error, while it repeats.
struct Repeating {
    first: Instant,
    last: Instant,
    stalled: bool,
}

/// The fetch errors of one consumer that repeat; see the [module docs](self).
#[derive(Default)]
pub(super) struct FetchErrors {
    repeating: HashMap<String, Repeating>,
}

impl FetchErrors {
    /// Notes `error`, reported at `now`.
    pub(super) fn failed(&mut self, error: &KafkaError, now: Instant) -> Seen {
        let text = error.to_string();
        match self.repeating.get_mut(&text) {
            None => {
                self.repeating.insert(
                    text,
                    Repeating {
                        first: now,
                        last: now,
                        stalled: false,
                    },
                );
                Seen::First(describe(error))
            }
            Some(repeat) => {
                repeat.last = now;
                if !repeat.stalled && now.duration_since(repeat.first) >= STALL_AFTER {
                    repeat.stalled = true;
                    Seen::Stalled(format!(
                        "{} (repeating for {} s)",
                        describe(error),
                        now.duration_since(repeat.first).as_secs()
                    ))
                } else {
                    Seen::Again
                }
            }
        }
    }

    /// Forgets the errors not seen for [`QUIET_AFTER`] before `now`; the
    /// texts of those that had stalled the consumer.
    pub(super) fn forget_quiet(&mut self, now: Instant) -> Vec<String> {
        let mut over = Vec::new();
        self.repeating.retain(|text, repeat| {
            let quiet = now.duration_since(repeat.last) >= QUIET_AFTER;
            if quiet && repeat.stalled {
                over.push(text.clone());
            }
            !quiet
        });
        over
    }

    /// Whether an error stalls the consumer now.
    pub(super) fn stalled(&self) -> bool {
        self.repeating.values().any(|repeat| repeat.stalled)
    }
}

/// `error`, with what to do about it where that is known.
fn describe(error: &KafkaError) -> String {
    let remedy = match error.rdkafka_error_code() {
        Some(RDKafkaErrorCode::NotImplemented) => {
            "; a batch uses a compression codec or format this build of librdkafka cannot \
             read (kafkaesk reads gzip, snappy, lz4 and zstd)"
        }
        Some(RDKafkaErrorCode::BadMessage | RDKafkaErrorCode::BadCompression) => {
            "; a batch on the broker is corrupt: delete the records up to past it \
             (`kafka-delete-records`) or move the group's offset past it"
        }
        Some(RDKafkaErrorCode::TopicAuthorizationFailed) => {
            "; grant the consumer's principal Read on the topic"
        }
        Some(RDKafkaErrorCode::GroupAuthorizationFailed) => {
            "; grant the consumer's principal Read on its group"
        }
        _ => "",
    };
    format!("{error}{remedy}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec() -> KafkaError {
        KafkaError::MessageConsumption(RDKafkaErrorCode::NotImplemented)
    }

    #[test]
    fn an_error_is_logged_once_and_stalls_the_consumer_when_it_keeps_coming() {
        let mut errors = FetchErrors::default();
        let start = Instant::now();
        let Seen::First(first) = errors.failed(&codec(), start) else {
            panic!("the first is logged");
        };
        assert!(first.contains("compression codec"), "{first}");
        // Every 500 ms, as librdkafka refetches the batch.
        let mut stalled = Vec::new();
        for step in 1..=24u32 {
            let now = start + Duration::from_millis(500) * step;
            match errors.failed(&codec(), now) {
                Seen::Again => {}
                Seen::Stalled(why) => stalled.push((step, why)),
                Seen::First(_) => panic!("logged twice"),
            }
        }
        assert_eq!(stalled.len(), 1, "{stalled:?}");
        assert_eq!(stalled[0].0, 20, "after 10 s");
        assert!(errors.stalled());
        // Still coming: not over.
        let last = start + Duration::from_secs(12);
        assert!(errors.forget_quiet(last).is_empty());
        // Gone for 5 s: over, and the consumer is healthy again.
        let over = errors.forget_quiet(last + QUIET_AFTER);
        assert_eq!(over.len(), 1);
        assert!(!errors.stalled());
        // If it comes back, it is logged again.
        assert!(matches!(
            errors.failed(&codec(), last + QUIET_AFTER),
            Seen::First(_)
        ));
    }

    #[test]
    fn errors_that_pass_never_stall_the_consumer() {
        let mut errors = FetchErrors::default();
        let start = Instant::now();
        let transport = KafkaError::MessageConsumption(RDKafkaErrorCode::BrokerTransportFailure);
        // A blip every 6 s: each one over before the next.
        for step in 0..10u32 {
            let now = start + Duration::from_secs(6) * step;
            errors.forget_quiet(now);
            assert!(matches!(errors.failed(&transport, now), Seen::First(_)));
        }
        assert!(!errors.stalled());
    }
}
