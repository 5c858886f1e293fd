//! Acceptance tests against a real Kafka-protocol broker (see `tests/support`).
//! Each module is named for the behaviour it proves.

mod consume_one_then_many;
