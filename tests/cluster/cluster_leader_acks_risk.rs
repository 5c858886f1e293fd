//! Fault 6: what `AckPolicy::Leader` risks. Both followers of a partition
//! fall behind (cut off the network, as a slow link or a stuck disk would
//! keep them), the publisher publishes 200 records, the leader's host dies
//! as soon as it has acknowledged them (its network cut, its process
//! SIGKILLed), and the followers come back: one of them becomes the
//! leader, cleanly (it is still in the in-sync set: the lag lasted less
//! than `replica.lag.time.max.ms`), without the records only the dead
//! leader had. When the old leader returns it truncates its log to the new
//! leader's.
//!
//! (Two ways that do not show it, tried first: pausing the followers with
//! SIGSTOP, as the leader's answer to a pending fetch still lands in the
//! paused follower's socket buffer; and a SIGKILL of the leader alone, as
//! its kernel still delivers the fetch answers the dead process had
//! written, once the followers are reachable again.)
//!
//! With `AckPolicy::Leader` (`acks=1`) the leader acknowledged the records
//! at once, and they are lost though the publisher was told they were
//! stored. With `AckPolicy::All` the same fault loses nothing: the leader
//! could not acknowledge while the followers had no copy, and the
//! idempotent producer wrote the records again to the new leader.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use kafkaesk::{AckPolicy, Application};
use kafkaesk_tests::{read_all_at, record_cluster_row, unique_prefix, ClusterRow};

use super::harness::Cluster;
use super::ledger::Ledger;
use super::steady::{answer_later, Job};
use super::verdict::brokers;

const BURST: u64 = 200;

struct Trial {
    acknowledged_before_kill: usize,
    lost: Vec<u64>,
    duplicates: usize,
    errors: usize,
    publish_stall: Duration,
}

async fn trial(cluster: &Cluster, policy: AckPolicy) -> Trial {
    let prefix = unique_prefix("c-acks");
    let publisher = Application::builder()
        .kafka_servers([cluster.bootstrap()])
        .topic_prefix(&prefix)
        .replication_factor(3)
        .partitions(1)
        .ack_policy(policy)
        .build()
        .unwrap();
    publisher.initialize().await.unwrap();
    let topic = format!("{prefix}acks");
    let ledger = std::sync::Arc::new(Ledger::default());
    // A first record, stored on all three, makes the stream and its leader.
    ledger.called(0);
    let first = publisher
        .publish("acks", &Job { n: 0 })
        .wait()
        .await
        .unwrap();
    ledger.answered(0, Ok((first.partition, first.offset)));
    cluster.wait_fully_replicated(&[&topic], Duration::from_secs(60));
    let leader = cluster.partitions(&topic)[0].leader;
    let followers: Vec<i32> = (1..=3).filter(|n| *n != leader).collect();

    for f in &followers {
        cluster.cut(*f);
    }
    let mut answers = Vec::new();
    for n in 1..=BURST {
        ledger.called(n);
        let ack = publisher.publish("acks", &Job { n }).await.unwrap();
        answers.push(answer_later(&ledger, n, ack));
    }
    // The leader's answers, for a moment well within replica.lag.time.max.ms.
    let deadline = Instant::now() + Duration::from_millis(1500);
    while ledger.acknowledged().len() < (BURST + 1) as usize && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The leader's host dies: its network first, so that its kernel cannot
    // send, after the process is gone, the fetch answers it owes the
    // followers (a SIGKILL alone closes the sockets in order, and the
    // followers would get the records once reconnected).
    cluster.cut(leader);
    cluster.kill(leader);
    let acknowledged_before_kill = ledger.acknowledged().len() - 1;
    for f in &followers {
        cluster.heal(*f);
    }
    for answer in answers {
        tokio::time::timeout(Duration::from_secs(120), answer)
            .await
            .expect("every publish answered within 120 s")
            .unwrap();
    }
    // Only once a follower leads: a leader back within the controller's
    // session timeout would simply lead again, with its log whole.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !followers.contains(&cluster.partitions(&topic)[0].leader) {
        assert!(
            Instant::now() < deadline,
            "no follower took over within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The followers dropped their connections to it when one took over.
    cluster.heal(leader);
    cluster.start(leader);
    cluster.wait_fully_replicated(&[&topic], Duration::from_secs(90));

    let bootstrap = cluster.bootstrap();
    let stored: Vec<u64> = tokio::task::spawn_blocking(move || {
        read_all_at(&bootstrap, &topic, Duration::from_secs(2))
    })
    .await
    .unwrap()
    .iter()
    .map(|value| {
        let envelope: serde_json::Value = serde_json::from_slice(value).expect("an envelope");
        envelope["data"]["n"].as_u64().expect("a job's n")
    })
    .collect();
    let distinct: BTreeSet<u64> = stored.iter().copied().collect();
    let lost = ledger
        .acknowledged()
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| !distinct.contains(n))
        .collect();
    let audit = ledger.audit(&Default::default());
    Trial {
        acknowledged_before_kill,
        lost,
        duplicates: stored.len() - distinct.len(),
        errors: audit.errors.len() + audit.unanswered.len(),
        publish_stall: audit.publish_stall,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_leader_acks_lose_what_the_dead_leader_acknowledged() {
    let Some(cluster) = Cluster::up() else { return };
    let leader_only = trial(&cluster, AckPolicy::Leader).await;
    let all = trial(&cluster, AckPolicy::All).await;
    for (key, name, t) in [("C6", "Leader", &leader_only), ("C6b", "All", &all)] {
        eprintln!(
            "{key} AckPolicy::{name}: {} acknowledged before the kill, {} lost, {} duplicates, {} errors, publish stall {:?}",
            t.acknowledged_before_kill,
            t.lost.len(),
            t.duplicates,
            t.errors,
            t.publish_stall
        );
        record_cluster_row(&ClusterRow {
            key,
            fault: format!(
                "AckPolicy::{name}: both followers cut off, {BURST} records published, the leader cut off and SIGKILLed once they were acknowledged ({} were), followers back",
                t.acknowledged_before_kill
            ),
            test: "cluster_leader_acks_risk::cluster_leader_acks_lose_what_the_dead_leader_acknowledged",
            records: BURST as usize + 1,
            lost: t.lost.len(),
            duplicates: t.duplicates,
            publish_errors: t.errors,
            publish_stall: t.publish_stall,
            consume_stall: None,
            asserted: if name == "All" {
                "0 lost".to_owned()
            } else {
                "shown, not a guarantee: acknowledged records lost".to_owned()
            },
            broker: brokers(),
        });
    }
    assert_eq!(all.errors, 0, "AckPolicy::All: no publish error");
    assert!(
        all.lost.is_empty(),
        "AckPolicy::All loses nothing: {:?}",
        all.lost
    );
    assert_eq!(
        all.acknowledged_before_kill, 0,
        "AckPolicy::All cannot acknowledge while both followers are cut off"
    );
    assert!(
        leader_only.acknowledged_before_kill > 0,
        "AckPolicy::Leader acknowledges while the followers are cut off"
    );
    assert!(
        !leader_only.lost.is_empty(),
        "AckPolicy::Leader: what only the dead leader had is lost"
    );
}
