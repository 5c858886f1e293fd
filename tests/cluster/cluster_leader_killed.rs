//! Fault 1: SIGKILL of the broker that leads the most partitions of the
//! jobs stream, while publishing and consuming; 10 s later it starts again.

use std::time::Duration;

use super::harness::Cluster;
use super::steady::{Pipeline, Steady};
use super::verdict::{at_least_once, Fault};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_leader_sigkill_loses_nothing() {
    let Some(cluster) = Cluster::up() else { return };
    let steady = Steady::start(&cluster, "c-leader", Pipeline::AtLeastOnce).await;
    steady.run_for(Duration::from_secs(3)).await;

    let leader = cluster.busiest_leader(&steady.topic);
    let led = cluster
        .partitions(&steady.topic)
        .iter()
        .filter(|p| p.leader == leader)
        .count();
    cluster.kill(leader);
    steady.run_for(Duration::from_secs(10)).await;
    cluster.start(leader);
    cluster.wait_fully_replicated(&[&steady.topic], Duration::from_secs(90));
    steady.run_for(Duration::from_secs(5)).await;

    let outcome = steady.finish().await;
    at_least_once(
        &outcome,
        &Fault {
            key: "C1",
            description: format!(
                "SIGKILL of the leader of {led} of 6 partitions, restarted 10 s later"
            ),
            test: "cluster_leader_killed::cluster_leader_sigkill_loses_nothing",
            brokers: vec![cluster.address(leader)],
        },
    );
}
