//! Fault 2: SIGKILL of the broker that coordinates the worker's group (the
//! leader of the group's partition of `__consumer_offsets`); 10 s later it
//! starts again. Commits go to a new coordinator meanwhile.

use std::time::Duration;

use super::harness::Cluster;
use super::steady::{Pipeline, Steady};
use super::verdict::{at_least_once, Fault};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_coordinator_sigkill_loses_nothing() {
    let Some(cluster) = Cluster::up() else { return };
    let steady = Steady::start(&cluster, "c-coordinator", Pipeline::AtLeastOnce).await;
    steady.run_for(Duration::from_secs(3)).await;

    let coordinator = cluster.coordinator_of(&steady.group);
    cluster.kill(coordinator);
    steady.run_for(Duration::from_secs(10)).await;
    let moved_to = cluster.coordinator_of(&steady.group);
    assert_ne!(moved_to, coordinator, "the group has a new coordinator");
    cluster.start(coordinator);
    cluster.wait_fully_replicated(
        &[&steady.topic, "__consumer_offsets"],
        Duration::from_secs(90),
    );
    steady.run_for(Duration::from_secs(5)).await;

    let outcome = steady.finish().await;
    at_least_once(
        &outcome,
        &Fault {
            key: "C2",
            description: "SIGKILL of the group's coordinator, restarted 10 s later".to_owned(),
            test: "cluster_coordinator_killed::cluster_coordinator_sigkill_loses_nothing",
            brokers: vec![cluster.address(coordinator)],
        },
    );
}
