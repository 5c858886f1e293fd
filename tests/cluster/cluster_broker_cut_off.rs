//! Fault 3: the broker that leads the most partitions is cut off the
//! network (from the other brokers and the clients) for 20 s, then
//! reconnected. The in-sync replica sets shrink without it and grow back.

use std::time::{Duration, Instant};

use super::harness::Cluster;
use super::steady::{Pipeline, Steady};
use super::verdict::{at_least_once, Fault};

const CUT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_network_cut_loses_nothing() {
    let Some(cluster) = Cluster::up() else { return };
    let steady = Steady::start(&cluster, "c-cut", Pipeline::AtLeastOnce).await;
    steady.run_for(Duration::from_secs(3)).await;

    let cut = cluster.busiest_leader(&steady.topic);
    cluster.cut(cut);
    let cut_at = Instant::now();
    // The others take its leaderships and drop it from the in-sync sets.
    let shrunk = loop {
        let partitions = cluster.partitions(&steady.topic);
        if partitions
            .iter()
            .all(|p| p.leader != cut && !p.isr.contains(&cut))
        {
            break cut_at.elapsed();
        }
        assert!(
            cut_at.elapsed() < CUT,
            "the in-sync sets still name broker {cut} after {CUT:?}: {partitions:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    steady.run_for(CUT.saturating_sub(cut_at.elapsed())).await;
    cluster.heal(cut);
    cluster.wait_fully_replicated(&[&steady.topic], Duration::from_secs(90));
    let grown = cut_at.elapsed();
    steady.run_for(Duration::from_secs(5)).await;

    let outcome = steady.finish().await;
    at_least_once(
        &outcome,
        &Fault {
            key: "C3",
            description: format!(
                "the busiest leader cut off the network for 20 s (in-sync sets without it after {:.1} s, whole again {:.1} s after the heal)",
                shrunk.as_secs_f64(),
                (grown - CUT).as_secs_f64().max(0.0)
            ),
            test: "cluster_broker_cut_off::cluster_network_cut_loses_nothing",
            brokers: vec![cluster.address(cut)],
        },
    );
}
