//! Fault 4: a rolling restart of all three brokers, one at a time, as an
//! operator does it: a controlled shutdown (SIGTERM), a start, and the next
//! broker only once every partition has its three replicas in sync again.

use std::time::Duration;

use super::harness::Cluster;
use super::steady::{Pipeline, Steady};
use super::verdict::{at_least_once, Fault};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_rolling_restart_loses_nothing() {
    let Some(cluster) = Cluster::up() else { return };
    let steady = Steady::start(&cluster, "c-rolling", Pipeline::AtLeastOnce).await;
    steady.run_for(Duration::from_secs(3)).await;

    for broker in 1..=3 {
        cluster.stop(broker);
        steady.run_for(Duration::from_secs(2)).await;
        cluster.start(broker);
        cluster.wait_fully_replicated(
            &[&steady.topic, "__consumer_offsets"],
            Duration::from_secs(90),
        );
        steady.run_for(Duration::from_secs(2)).await;
    }
    steady.run_for(Duration::from_secs(3)).await;

    let outcome = steady.finish().await;
    at_least_once(
        &outcome,
        &Fault {
            key: "C4",
            description: "rolling restart: each broker stopped (SIGTERM), started, in sync again before the next".to_owned(),
            test: "cluster_rolling_restart::cluster_rolling_restart_loses_nothing",
            brokers: (1..=3).map(|n| cluster.address(n)).collect(),
        },
    );
}
