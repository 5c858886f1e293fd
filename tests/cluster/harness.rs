//! The three-broker cluster of a test: `scripts/cluster.sh` started under a
//! name and network of the tests' own, one cluster at a time, taken down
//! when the test ends, whatever its outcome.

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

/// The tests' cluster: a name and a /24 of their own, so a developer's
/// `scripts/cluster.sh up` (10.77.0) is left alone.
const NAME: &str = "kafkaesk-t";
const NET: &str = "10.78.0";

/// Three brokers share two cores: one cluster at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A broker's node id, 1 to 3.
pub type Node = i32;

/// One partition as the cluster's metadata has it.
#[derive(Debug, Clone)]
pub struct PartitionState {
    pub partition: i32,
    pub leader: Node,
    pub isr: Vec<Node>,
}

/// A running three-broker cluster; `scripts/cluster.sh down` when dropped.
pub struct Cluster {
    _turn: MutexGuard<'static, ()>,
    dir: PathBuf,
}

impl Cluster {
    /// Brings a fresh cluster up, or `None` when `KAFKAESK_CLUSTER_TESTS=0`
    /// asks to skip the cluster tests (a machine without root, where network
    /// namespaces cannot be made).
    pub fn up() -> Option<Cluster> {
        if std::env::var("KAFKAESK_CLUSTER_TESTS").as_deref() == Ok("0") {
            eprintln!("KAFKAESK_CLUSTER_TESTS=0: the cluster fault test is skipped");
            return None;
        }
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let dir = std::env::temp_dir().join(format!("kafkaesk-cluster-{NAME}"));
        let cluster = Cluster { _turn: turn, dir };
        cluster.run(&["up"]);
        Some(cluster)
    }

    fn run(&self, args: &[&str]) {
        let started = Instant::now();
        let output = Command::new(script())
            .args(args)
            .env("KAFKAESK_CLUSTER_NAME", NAME)
            .env("KAFKAESK_CLUSTER_NET", NET)
            .env("KAFKAESK_CLUSTER_DIR", &self.dir)
            .output()
            .expect("run scripts/cluster.sh");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.status.success(),
            "scripts/cluster.sh {} failed ({}). If this machine cannot make \
             network namespaces (it needs root and `ip netns`), set \
             KAFKAESK_CLUSTER_TESTS=0 to skip the cluster tests. Its output:\n{text}",
            args.join(" "),
            output.status
        );
        eprintln!(
            "[{:>6.1} s] cluster.sh {}: {}",
            started.elapsed().as_secs_f64(),
            args.join(" "),
            text.lines().last().unwrap_or_default()
        );
    }

    /// The bootstrap servers: every broker's address.
    pub fn bootstrap(&self) -> String {
        (1..=3)
            .map(|n| self.address(n))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Broker `n`'s address.
    pub fn address(&self, n: Node) -> String {
        format!("{NET}.{n}:9092")
    }

    /// SIGKILL of broker `n`, as a crash.
    pub fn kill(&self, n: Node) {
        self.run(&["kill", &n.to_string()]);
    }

    /// SIGTERM of broker `n`: a controlled shutdown that hands its
    /// leaderships over first.
    pub fn stop(&self, n: Node) {
        self.run(&["stop", &n.to_string()]);
    }

    /// Starts broker `n` again on its data and waits until it answers.
    pub fn start(&self, n: Node) {
        self.run(&["start", &n.to_string()]);
    }

    /// Cuts broker `n` off the network: from the other brokers and the clients.
    pub fn cut(&self, n: Node) {
        self.run(&["cut", &n.to_string()]);
    }

    /// Reconnects broker `n`.
    pub fn heal(&self, n: Node) {
        self.run(&["heal", &n.to_string()]);
    }

    /// The partitions of `topic`, as the brokers that answer see them.
    pub fn partitions(&self, topic: &str) -> Vec<PartitionState> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(states) = self.try_partitions(topic) {
                return states;
            }
            assert!(
                Instant::now() < deadline,
                "no metadata of {topic} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn try_partitions(&self, topic: &str) -> Option<Vec<PartitionState>> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .set("log_level", "0")
            .create()
            .ok()?;
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .ok()?;
        let found = metadata.topics().iter().find(|t| t.name() == topic)?;
        if found.error().is_some() || found.partitions().is_empty() {
            return None;
        }
        Some(
            found
                .partitions()
                .iter()
                .map(|p| PartitionState {
                    partition: p.id(),
                    leader: p.leader(),
                    isr: p.isr().to_vec(),
                })
                .collect(),
        )
    }

    /// The broker that leads the most partitions of `topic`.
    pub fn busiest_leader(&self, topic: &str) -> Node {
        self.busiest_leader_but(topic, &[])
    }

    /// The broker that coordinates `group`: the leader of the partition of
    /// `__consumer_offsets` that Kafka places the group in (`Utils.abs` of
    /// the Java hash of its id, modulo the topic's partitions).
    pub fn coordinator_of(&self, group: &str) -> Node {
        self.placed_in("__consumer_offsets", group)
    }

    /// The broker that coordinates the transactions of `transactional_id`,
    /// placed in `__transaction_state` as groups are in `__consumer_offsets`.
    pub fn transaction_coordinator_of(&self, transactional_id: &str) -> Node {
        self.placed_in("__transaction_state", transactional_id)
    }

    fn placed_in(&self, topic: &str, id: &str) -> Node {
        let partitions = self.partitions(topic);
        let hash = java_hash(id);
        let partition = if hash == i32::MIN { 0 } else { hash.abs() } % partitions.len() as i32;
        partitions
            .iter()
            .find(|p| p.partition == partition)
            .map(|p| p.leader)
            .unwrap_or_else(|| panic!("{id}'s partition of {topic}"))
    }

    /// The broker that leads the most partitions of `topic`, of those not in
    /// `spared`.
    pub fn busiest_leader_but(&self, topic: &str, spared: &[Node]) -> Node {
        let mut led = [0usize; 4];
        for p in self.partitions(topic) {
            if (1..=3).contains(&p.leader) {
                led[p.leader as usize] += 1;
            }
        }
        (1..=3)
            .filter(|n| !spared.contains(n))
            .max_by_key(|&n| (led[n as usize], -n))
            .expect("a broker not spared")
    }

    /// Waits until every partition of `topics` has all three replicas in
    /// sync, as an operator does before restarting the next broker.
    pub fn wait_fully_replicated(&self, topics: &[&str], within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let lagging: Vec<String> = topics
                .iter()
                .flat_map(|topic| {
                    self.try_partitions(topic)
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|p| p.isr.len() < 3 || p.leader < 1)
                        .map(move |p| format!("{topic}/{} isr {:?}", p.partition, p.isr))
                })
                .collect();
            let all_known = topics.iter().all(|t| self.try_partitions(t).is_some());
            if lagging.is_empty() && all_known {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not fully replicated within {within:?}: {lagging:?}"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .arg("down")
            .env("KAFKAESK_CLUSTER_NAME", NAME)
            .env("KAFKAESK_CLUSTER_NET", NET)
            .env("KAFKAESK_CLUSTER_DIR", &self.dir)
            .output();
    }
}

fn script() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/cluster.sh")
}

/// Java's `String.hashCode`, as Kafka places a group's coordinator by it.
fn java_hash(text: &str) -> i32 {
    text.encode_utf16()
        .fold(0i32, |h, unit| h.wrapping_mul(31).wrapping_add(unit as i32))
}

#[test]
fn java_hash_is_javas() {
    // "hello".hashCode() in Java
    assert_eq!(java_hash("hello"), 99_162_322);
    assert_eq!(java_hash(""), 0);
}
