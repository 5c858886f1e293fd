//! Fault 5: an exactly-once pipeline (consume a job, publish its `Done` in
//! the batch's transaction) through fault 1 (the busiest leader killed and
//! restarted) and then fault 3 (the busiest leader cut off for 20 s): every
//! input appears exactly once in the read-committed output.

use std::time::Duration;

use super::harness::Cluster;
use super::steady::{Pipeline, Steady};
use super::verdict::{exactly_once, Fault};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_exactly_once_through_leader_loss_and_cut() {
    let Some(cluster) = Cluster::up() else { return };
    let steady = Steady::start(&cluster, "c-eos", Pipeline::ExactlyOnce).await;
    steady.run_for(Duration::from_secs(3)).await;

    let killed = cluster.busiest_leader(&steady.topic);
    cluster.kill(killed);
    steady.run_for(Duration::from_secs(10)).await;
    cluster.start(killed);
    cluster.wait_fully_replicated(&[&steady.topic, &steady.output], Duration::from_secs(90));
    steady.run_for(Duration::from_secs(3)).await;

    let cut = cluster.busiest_leader(&steady.topic);
    cluster.cut(cut);
    steady.run_for(Duration::from_secs(20)).await;
    cluster.heal(cut);
    cluster.wait_fully_replicated(&[&steady.topic, &steady.output], Duration::from_secs(90));
    steady.run_for(Duration::from_secs(5)).await;

    let outcome = steady.finish().await;
    exactly_once(
        &outcome,
        &Fault {
            key: "C5",
            description: format!(
                "exactly-once pipeline: SIGKILL of broker {killed} (busiest leader), restarted 10 s later; then broker {cut} cut off for 20 s"
            ),
            test: "cluster_exactly_once_through_faults::cluster_exactly_once_through_leader_loss_and_cut",
            brokers: vec![cluster.address(killed), cluster.address(cut)],
        },
    );
}
