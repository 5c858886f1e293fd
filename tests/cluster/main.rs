//! Fault tests on a cluster of three Apache Kafka brokers (KRaft, every
//! node broker and controller), each broker on an address of its own in a
//! network namespace (`scripts/cluster.sh`). Every stream has three
//! replicas and `min.insync.replicas=2`; the publisher's producer is
//! idempotent with `AckPolicy::All`. Under a steady publisher and a worker
//! that run throughout, each test injects one fault: a leader killed, the
//! group coordinator killed, a broker cut off the network, a rolling
//! restart, an exactly-once pipeline through two faults, and `AckPolicy::Leader`
//! losing a leader right after it acknowledged. A ledger records, per key,
//! what was published, handled and committed (`ledger.rs`); each test writes
//! its row of the cluster table in `RELIABILITY.md`.
//!
//! The tests take their turn: one cluster at a time. They need root (for
//! `ip netns`); `KAFKAESK_CLUSTER_TESTS=0` skips them on a machine without.
//!
//! ```text
//! cargo test -p kafkaesk-tests --test cluster
//! ```

mod harness;
mod ledger;
mod steady;
mod verdict;

mod cluster_broker_cut_off;
mod cluster_coordinator_killed;
mod cluster_exactly_once_through_faults;
mod cluster_leader_acks_risk;
mod cluster_leader_killed;
mod cluster_rolling_restart;
