//! A publish with an expected offset writes only if the partition's last
//! message is where the writer expects it; of two writers racing on the
//! same expected offset, exactly one wins, every time.
//!
//! Needs a broker with transactions, as the test broker, Apache Kafka, is
//! (`broker_supports_transactions`).

use std::time::Duration;

use kafkaesk::Error;
use kafkaesk_tests::{app_builder, read_all, unique_prefix};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Event {
    pub writer: u32,
    pub round: u32,
}

impl kafkaesk::Schema for Event {
    const ID: &'static str = "ExpectedEvent";
}

const ROUNDS: u32 = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mismatch_carries_the_actual_offset_and_writes_nothing() {
    let prefix = unique_prefix("expected");
    let app = app_builder(&prefix).partitions(1).build().unwrap();
    let event = Event {
        writer: 0,
        round: 0,
    };
    let first = app
        .publish("account", &event)
        .expected_offset(0, -1)
        .wait()
        .await
        .unwrap();
    let again = app
        .publish("account", &event)
        .expected_offset(0, -1)
        .wait()
        .await;
    match again {
        Err(Error::ExpectedOffset {
            partition,
            expected,
            actual,
            ..
        }) => assert_eq!((partition, expected, actual), (0, -1, first.offset)),
        other => panic!("expected a mismatch, got {other:?}"),
    }
    let next = app
        .publish("account", &event)
        .expected_offset(0, first.offset)
        .wait()
        .await
        .unwrap();
    assert!(next.offset > first.offset);
    let topic = format!("{prefix}account");
    assert_eq!(read_all(&topic, Duration::from_secs(2)).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_racing_on_one_expected_offset_admit_exactly_one() {
    let prefix = unique_prefix("expected-race");
    // Two applications: two processes' worth of clients, fencing each other
    // through the broker rather than taking turns on one lock.
    let writers = [
        app_builder(&prefix).partitions(1).build().unwrap(),
        app_builder(&prefix).partitions(1).build().unwrap(),
    ];
    let mut last = -1;
    let mut winners = Vec::new();
    for round in 0..ROUNDS {
        let write = |writer: u32| {
            let app = &writers[writer as usize];
            async move {
                app.publish("account", &Event { writer, round })
                    .expected_offset(0, last)
                    .wait()
                    .await
            }
        };
        let (a, b) = tokio::join!(write(0), write(1));
        let (winner, won, lost) = match (a, b) {
            (Ok(won), Err(lost)) => (0, won, lost),
            (Err(lost), Ok(won)) => (1, won, lost),
            (a, b) => panic!("round {round}: not exactly one winner: {a:?} / {b:?}"),
        };
        match lost {
            Error::ExpectedOffset {
                expected, actual, ..
            } => assert_eq!((expected, actual), (last, won.offset), "round {round}"),
            other => panic!("round {round}: the loser failed otherwise: {other}"),
        }
        last = won.offset;
        winners.push(winner);
    }
    let written: Vec<(u64, u64)> = read_all(&format!("{prefix}account"), Duration::from_secs(3))
        .iter()
        .map(|raw| {
            let envelope: serde_json::Value = serde_json::from_slice(raw).unwrap();
            let data = &envelope["data"];
            (
                data["round"].as_u64().unwrap(),
                data["writer"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(u64, u64)> = winners
        .iter()
        .enumerate()
        .map(|(round, &writer)| (round as u64, writer))
        .collect();
    assert_eq!(
        written, expected,
        "one message per round, the winner's, in order"
    );
}
