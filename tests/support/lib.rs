//! Helpers shared by the integration tests in `tests/`.
//!
//! Every test talks to a real Kafka-protocol broker at `KAFKA` (default
//! `127.0.0.1:9092`; start one with `scripts/broker.sh`) and uses its own
//! topic prefix, so tests run in parallel without seeing each other's data.

use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kafkaesk::{Application, ApplicationBuilder};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// The broker address the tests use.
pub fn kafka() -> String {
    std::env::var("KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

/// Fails the test, saying how to start a broker, when none answers at `KAFKA`.
pub fn require_broker() -> String {
    let address = kafka();
    let reachable = address
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .is_some_and(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok());
    assert!(
        reachable,
        "no Kafka broker answers at {address}. Start one with `scripts/broker.sh` \
         (installs and runs Apache Kafka), or `docker compose up -d`, or point KAFKA at yours."
    );
    address
}

/// A topic prefix no other test (or earlier run) uses.
pub fn unique_prefix(test: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("t-{test}-{}-{nanos}-{n}.", std::process::id())
}

/// An application builder pointed at the test broker, with a fresh prefix and
/// quick commits.
pub fn app_builder(prefix: &str) -> ApplicationBuilder {
    kafkaesk::Application::builder()
        .kafka_servers([require_broker()])
        .topic_prefix(prefix)
        .auto_commit_interval(Duration::from_millis(500))
}

/// Committed offsets of `group` on every partition of `topic`, as `(partition, offset)`,
/// for partitions with a commit.
pub fn committed_offsets(group: &str, topic: &str, partitions: i32) -> Vec<(i32, i64)> {
    committed_offsets_at(&kafka(), group, topic, partitions)
}

/// Sum of committed offsets of `group` on `topic`: the number of records
/// committed past, when the topic started empty.
pub fn committed_total(group: &str, topic: &str, partitions: i32) -> i64 {
    committed_offsets(group, topic, partitions)
        .iter()
        .map(|(_, o)| o)
        .sum()
}

/// Every record currently in `topic`, read from the start with a throw-away
/// group, as raw values. Reads until every partition has reached its end
/// once, then until `idle` passes without new records, so a loaded machine
/// that is slow to fetch never cuts the reading short. Records of open or
/// aborted transactions are left out (librdkafka's default
/// `read_committed`).
pub fn read_all(topic: &str, idle: Duration) -> Vec<Vec<u8>> {
    read_all_isolated(&kafka(), topic, idle, "read_committed")
}

/// [`read_all`], with records of open and aborted transactions too.
pub fn read_all_uncommitted(topic: &str, idle: Duration) -> Vec<Vec<u8>> {
    read_all_isolated(&kafka(), topic, idle, "read_uncommitted")
}

/// [`read_all`] on the brokers at `servers` instead of `KAFKA`.
pub fn read_all_at(servers: &str, topic: &str, idle: Duration) -> Vec<Vec<u8>> {
    read_all_isolated(servers, topic, idle, "read_committed")
}

/// How long [`read_all`] may take to reach the end of every partition.
const READ_TO_THE_END: Duration = Duration::from_secs(120);

fn read_all_isolated(servers: &str, topic: &str, idle: Duration, isolation: &str) -> Vec<Vec<u8>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("group.id", unique_prefix("reader"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", isolation)
        // The end is the high watermark, or for `read_committed` the last
        // stable offset, before any open transaction.
        .set("enable.partition.eof", "true")
        .create()
        .expect("reader consumer");
    // Every partition assigned from its start: no group to join, so the
    // first fetch goes out at once.
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("topic metadata");
    let mut partitions = rdkafka::TopicPartitionList::new();
    for found in metadata.topics().iter().filter(|t| t.name() == topic) {
        for partition in found.partitions() {
            partitions
                .add_partition_offset(topic, partition.id(), rdkafka::Offset::Beginning)
                .expect("partition");
        }
    }
    consumer.assign(&partitions).expect("assign reader");
    let mut not_at_end: std::collections::BTreeSet<i32> = partitions
        .elements()
        .iter()
        .map(|element| element.partition())
        .collect();
    let started = std::time::Instant::now();
    let mut values = Vec::new();
    let mut last = std::time::Instant::now();
    while !not_at_end.is_empty() || last.elapsed() < idle {
        assert!(
            started.elapsed() < READ_TO_THE_END,
            "reading {topic}: partitions {not_at_end:?} did not reach their end in {READ_TO_THE_END:?}"
        );
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                use rdkafka::Message;
                values.push(message.payload().unwrap_or_default().to_vec());
                last = std::time::Instant::now();
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(partition))) => {
                not_at_end.remove(&partition);
            }
            Some(Err(_)) | None => {}
        }
    }
    values
}

/// Creates `topic` with one partition on the broker at `servers`, through
/// the admin API alone (for tests that produce with librdkafka directly).
pub async fn create_topic(servers: &str, topic: &str) {
    create_topic_with(servers, topic, &[]).await;
}

/// [`create_topic`], with topic configuration `config` (`max.message.bytes`...).
pub async fn create_topic_with(servers: &str, topic: &str, config: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .create()
        .expect("admin client");
    let mut new = NewTopic::new(topic, 1, TopicReplication::Fixed(1));
    for (key, value) in config {
        new = new.set(key, value);
    }
    let created = admin
        .create_topics(&[new], &AdminOptions::new())
        .await
        .expect("create topics");
    assert!(created.iter().all(Result::is_ok), "{created:?}");
}

/// Whether `topic` exists on the broker.
pub fn topic_exists(topic: &str) -> bool {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .create()
        .expect("metadata client");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    metadata
        .topics()
        .iter()
        .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
}

/// Topic configuration values read back through the admin API.
pub async fn topic_config(topic: &str, key: &str) -> Option<String> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .create()
        .expect("admin client");
    let results = admin
        .describe_configs([&ResourceSpecifier::Topic(topic)], &AdminOptions::new())
        .await
        .expect("describe configs");
    results
        .into_iter()
        .flatten()
        .flat_map(|resource| resource.entries)
        .find(|entry| entry.name == key)
        .and_then(|entry| entry.value)
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

/// `scripts/broker.sh` of this repository.
fn broker_script() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/broker.sh")
}

/// The listeners of a broker, each on a port of its own (see
/// `scripts/broker.sh`).
#[derive(Debug, Clone, Copy)]
pub struct BrokerPorts {
    pub plaintext: u16,
    pub sasl_plaintext: u16,
    pub ssl: u16,
    pub sasl_ssl: u16,
    pub mtls: u16,
    pub controller: u16,
}

impl BrokerPorts {
    fn free() -> BrokerPorts {
        BrokerPorts {
            plaintext: free_port(),
            sasl_plaintext: free_port(),
            ssl: free_port(),
            sasl_ssl: free_port(),
            mtls: free_port(),
            controller: free_port(),
        }
    }
}

/// The message of [`round_trip`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct RoundTrip {
    pub text: String,
}

impl kafkaesk::Schema for RoundTrip {
    const ID: &'static str = "RoundTrip";
}

/// `GET path` from the HTTP server at `addr` (the worker's metrics port):
/// the status code and the body.
pub async fn http_get(addr: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap();
    (status, body.to_owned())
}

/// Publishes a [`RoundTrip`] through the brokers of `builder` (which has the
/// topic prefix `prefix`) and consumes it in a group of its own, over every
/// client kafkaesk makes (admin, producer, group consumer and its
/// coordinator connection); checks that the handler got it, that the
/// producer is healthy, and that the group's commit reached the broker (read
/// back on the shared broker's PLAINTEXT listener). Returns the finalized
/// application, for checks of its own.
pub async fn round_trip(builder: ApplicationBuilder, prefix: &str, text: &str) -> Application {
    let group = format!("{prefix}group");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    let app = builder
        .subscribe(
            kafkaesk::Subscription::new("round-trips", move |data: RoundTrip| {
                let sink = sink.clone();
                async move { sink.lock().unwrap().push(data) }
            })
            .with_group(group.clone()),
        )
        .build()
        .unwrap();
    app.initialize().await.unwrap();
    let data = RoundTrip {
        text: text.to_owned(),
    };
    app.publish_and_wait("round-trips", &data).await.unwrap();
    assert_eq!(
        app.consume_for(1, Duration::from_secs(30)).await.unwrap(),
        1
    );
    let health = app.health_check().await;
    app.finalize().await.unwrap();
    assert_eq!(*seen.lock().unwrap(), vec![data]);
    assert!(health.producer, "{health:?}");
    let plaintext = BrokerEnv::shared().get("KAFKAESK_BOOTSTRAP_PLAINTEXT");
    assert_eq!(
        committed_offsets_at(&plaintext, &group, &format!("{prefix}round-trips"), 1),
        vec![(0, 1)],
        "group {group} committed past the one record"
    );
    app
}

/// The addresses, credentials and TLS files of a broker that
/// `scripts/broker.sh` prepared, read from the `broker.env` in its data
/// directory (`KEY=VALUE` lines).
#[derive(Debug, Clone)]
pub struct BrokerEnv(std::collections::HashMap<String, String>);

impl BrokerEnv {
    /// The `broker.env` in `dir`.
    pub fn read(dir: &std::path::Path) -> BrokerEnv {
        let path = dir.join("broker.env");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|err| {
            panic!(
                "cannot read {}: {err}. This test needs the broker that \
                 `scripts/broker.sh` starts (it serves SASL and TLS listeners)",
                path.display()
            )
        });
        BrokerEnv(
            text.lines()
                .filter_map(|line| line.split_once('='))
                .map(|(key, value)| (key.to_owned(), value.to_owned()))
                .collect(),
        )
    }

    /// The shared test broker's, from `$KAFKAESK_BROKER_DIR` (default
    /// `${TMPDIR:-/tmp}/kafkaesk-broker`, as `scripts/broker.sh` has it).
    pub fn shared() -> BrokerEnv {
        BrokerEnv::read(&shared_broker_dir())
    }

    /// What kind of broker the tests run on, for reports: `Apache Kafka
    /// 4.4.0` when `scripts/broker.sh` started it, else the address.
    pub fn describe_shared() -> String {
        let env = std::fs::read_to_string(shared_broker_dir().join("broker.env")).ok();
        let value = |key: &str| {
            env.as_deref()?
                .lines()
                .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
                .map(str::to_owned)
        };
        match (
            value("KAFKAESK_BROKER_KIND"),
            value("KAFKAESK_KAFKA_VERSION"),
        ) {
            (Some(kind), Some(version)) if kind == "apache-kafka" => {
                format!("Apache Kafka {version}")
            }
            _ => format!("the broker at {}", kafka()),
        }
    }

    /// The value of `key`; fails the test when the file lacks it.
    pub fn get(&self, key: &str) -> String {
        self.0
            .get(key)
            .cloned()
            .unwrap_or_else(|| panic!("broker.env has no {key}"))
    }
}

fn shared_broker_dir() -> std::path::PathBuf {
    std::env::var_os("KAFKAESK_BROKER_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("kafkaesk-broker"))
}

/// An Apache Kafka broker of the test's own (`scripts/broker.sh run`), on
/// ports of its own, storing its data on disk: it can be stopped, killed,
/// frozen and started again without losing what it stored. Stopped, and its
/// files removed, when dropped.
pub struct PersistentBroker {
    dir: std::path::PathBuf,
    ports: BrokerPorts,
    child: Option<std::process::Child>,
}

impl PersistentBroker {
    /// Starts a broker on free ports with fresh storage and waits until it
    /// answers.
    pub fn start(name: &str) -> PersistentBroker {
        let dir = std::env::temp_dir().join(unique_prefix(name).trim_end_matches('.'));
        std::fs::create_dir_all(&dir).expect("broker directory");
        let mut broker = PersistentBroker {
            dir,
            ports: BrokerPorts::free(),
            child: None,
        };
        broker.restart();
        broker
    }

    /// What the broker wrote to its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("kafka.log")).unwrap_or_default()
    }

    /// `127.0.0.1:<port>` of its PLAINTEXT listener.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.ports.plaintext)
    }

    /// The ports of its listeners.
    pub fn ports(&self) -> BrokerPorts {
        self.ports
    }

    /// Its addresses, credentials and TLS files.
    pub fn env(&self) -> BrokerEnv {
        BrokerEnv::read(&self.dir)
    }

    /// Whether the broker process is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Starts the broker again on the same ports with the same storage, and
    /// waits until it answers a metadata request.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the broker is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("kafka.log"))
            .expect("broker log");
        let ports = self.ports;
        let child = std::process::Command::new(broker_script())
            .arg("run")
            .arg(&self.dir)
            .env("KAFKA", self.address())
            .env("KAFKAESK_SASL_PORT", ports.sasl_plaintext.to_string())
            .env("KAFKAESK_SSL_PORT", ports.ssl.to_string())
            .env("KAFKAESK_SASL_SSL_PORT", ports.sasl_ssl.to_string())
            .env("KAFKAESK_MTLS_PORT", ports.mtls.to_string())
            .env("KAFKAESK_CONTROLLER_PORT", ports.controller.to_string())
            .env("KAFKA_HEAP_OPTS", "-Xms128m -Xmx512m")
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().expect("broker log"))
            .stderr(log)
            .spawn()
            .expect("start scripts/broker.sh run");
        self.child = Some(child);
        self.wait_until_ready(Duration::from_secs(90));
    }

    fn wait_until_ready(&mut self, within: Duration) {
        let deadline = std::time::Instant::now() + within;
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.address())
            .set("log_level", "0")
            .create()
            .expect("probe client");
        loop {
            let exited = self
                .child
                .as_mut()
                .and_then(|child| child.try_wait().ok().flatten());
            assert!(
                exited.is_none(),
                "the broker exited ({exited:?}) while starting; its log:\n{}",
                self.log()
            );
            let answered = consumer
                .fetch_metadata(None, Duration::from_secs(2))
                .is_ok_and(|metadata| !metadata.brokers().is_empty());
            if answered {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the broker did not answer on {} within {within:?}; its log:\n{}",
                self.address(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) the running broker: its
    /// connections stay open and nothing is answered meanwhile, as with a
    /// broker stuck in a long pause.
    pub fn freeze(&self, frozen: bool) {
        let child = self.child.as_ref().expect("the broker is running");
        let signal = if frozen { libc::SIGSTOP } else { libc::SIGCONT };
        // SAFETY: signalling our own child process, which has not been reaped.
        unsafe { libc::kill(child.id() as i32, signal) };
    }

    /// Stops the broker with SIGTERM (a controlled shutdown; SIGKILL after
    /// 20 s) and waits for it to exit.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if signal_and_wait(&mut child, libc::SIGTERM, Duration::from_secs(20)).is_none() {
            eprintln!("the broker ignored SIGTERM for 20 s and was killed");
        }
    }

    /// Kills the broker with SIGKILL, as a crash would, and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PersistentBroker {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One scenario's outcome, as a row of the table in `RELIABILITY.md`.
#[derive(Debug, Clone)]
pub struct ReliabilityRow {
    /// Orders the rows, e.g. `"1"`; also names the row's file.
    pub key: &'static str,
    /// The scenario, e.g. `"Crash (SIGKILL) and restart"`.
    pub scenario: &'static str,
    /// The test that measured it.
    pub test: &'static str,
    /// Distinct messages published.
    pub messages: usize,
    /// The faults injected, e.g. `"1 SIGKILL"`.
    pub faults: String,
    /// Messages published (acknowledged) but never handled.
    pub lost: usize,
    /// Handler runs beyond the first for a message.
    pub duplicates: usize,
    /// What the test asserted about duplicates, e.g. `"0"` or `"<= 37 uncommitted"`.
    pub bound: String,
}

/// One of the generated tables of `RELIABILITY.md`: where its rows are kept
/// between runs, the comments that enclose it, and how a stored row shows.
struct GeneratedTable {
    /// Under `target/`, one `.tsv` file a row.
    dir: &'static str,
    /// The table's name in its begin and end comments.
    name: &'static str,
    /// Fields a stored row has; rows of another shape are ignored.
    fields: usize,
    header: &'static str,
    row: fn(&[String]) -> String,
}

const SINGLE_BROKER: GeneratedTable = GeneratedTable {
    dir: "reliability",
    name: "reliability-table",
    fields: 10,
    header: "| # | Scenario | Messages | Faults | Lost | Duplicates | Asserted | Test | Broker | Measured |\n\
             |---|---|---:|---|---:|---:|---|---|---|---|\n",
    row: |f| {
        format!(
            "| {} | {} | {} | {} | {} | {} | {} | `{}` | {} | {} |\n",
            f[0], f[1], f[3], f[4], f[5], f[6], f[7], f[2], f[9], f[8]
        )
    },
};

const CLUSTER: GeneratedTable = GeneratedTable {
    dir: "reliability-cluster",
    name: "cluster-table",
    fields: 11,
    header: "| # | Fault | Records | Lost | Duplicates | Publish errors | Longest stall: publish / consume | Asserted | Test | Broker | Measured |\n\
             |---|---|---:|---:|---:|---:|---|---|---|---|---|\n",
    row: |f| {
        format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | `{}` | {} | {} |\n",
            f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9], f[10]
        )
    },
};

impl GeneratedTable {
    fn dir(&self) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target")
            .join(self.dir)
    }

    /// Stores a row under `key` and rewrites the table from every stored row.
    fn store(&self, key: &str, fields: Vec<String>) {
        let dir = self.dir();
        std::fs::create_dir_all(&dir).expect("target/reliability");
        let clean = |s: &str| s.replace(['\t', '\n', '|'], " ");
        let line = fields
            .iter()
            .map(|f| clean(f))
            .collect::<Vec<_>>()
            .join("\t");
        std::fs::write(dir.join(format!("{key}.tsv")), line + "\n").expect("reliability row");
        self.render();
    }

    /// Rewrites the table in `RELIABILITY.md` from the stored rows.
    fn render(&self) {
        let dir = self.dir();
        // Tests run in parallel; one renderer at a time, so no row is dropped.
        let lock = dir.join(".lock");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&lock)
            .is_err()
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut rows: Vec<Vec<String>> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|entry| entry.path().extension().is_some_and(|e| e == "tsv"))
            .filter_map(|entry| std::fs::read_to_string(entry.path()).ok())
            .map(|text| text.trim_end().split('\t').map(str::to_owned).collect())
            .filter(|fields: &Vec<String>| fields.len() == self.fields)
            .collect();
        rows.sort();
        let mut table = self.header.to_owned();
        for row in &rows {
            table.push_str(&(self.row)(row));
        }
        let begin = format!(
            "<!-- {}:begin (generated by the fault tests; do not edit) -->",
            self.name
        );
        let end = format!("<!-- {}:end -->", self.name);
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("RELIABILITY.md");
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        let generated = format!("{begin}\n{table}{end}");
        let updated = match (current.find(&begin), current.find(&end)) {
            (Some(b), Some(e)) if b < e => {
                format!("{}{generated}{}", &current[..b], &current[e + end.len()..])
            }
            _ => format!("{current}\n{generated}\n"),
        };
        if updated != current {
            let temporary = path.with_extension(format!("md.{}.tmp", std::process::id()));
            std::fs::write(&temporary, updated).expect("write RELIABILITY.md");
            std::fs::rename(&temporary, &path).expect("replace RELIABILITY.md");
        }
        let _ = std::fs::remove_file(&lock);
    }
}

/// Stores `row` under `target/reliability/` and rewrites the table in
/// `RELIABILITY.md` from every row stored there, so the numbers in the
/// document are the ones the tests last measured.
pub fn record_reliability(row: &ReliabilityRow) {
    SINGLE_BROKER.store(
        row.key,
        vec![
            row.key.to_owned(),
            row.scenario.to_owned(),
            row.test.to_owned(),
            row.messages.to_string(),
            row.faults.clone(),
            row.lost.to_string(),
            row.duplicates.to_string(),
            row.bound.clone(),
            utc_date(),
            BrokerEnv::describe_shared(),
        ],
    );
}

/// Rewrites the single-broker table of `RELIABILITY.md` from the stored rows.
pub fn render_reliability() {
    SINGLE_BROKER.render();
}

/// One cluster fault's outcome, as a row of the cluster table in
/// `RELIABILITY.md`.
#[derive(Debug, Clone)]
pub struct ClusterRow {
    /// Orders the rows, e.g. `"C1"`; also names the row's file.
    pub key: &'static str,
    /// The fault, e.g. `"SIGKILL of the leader of the busiest partitions"`.
    pub fault: String,
    /// The test that measured it.
    pub test: &'static str,
    /// Distinct records published.
    pub records: usize,
    /// Records acknowledged to the publisher but never handled (or, for a
    /// pipeline, never in its output).
    pub lost: usize,
    /// Handler runs beyond the first for a record (or output copies beyond
    /// the first).
    pub duplicates: usize,
    /// Publishes that returned an error to the caller.
    pub publish_errors: usize,
    /// The longest a publish waited for its acknowledgement.
    pub publish_stall: Duration,
    /// The longest an acknowledged record waited to be handled; `None`
    /// where nothing consumed.
    pub consume_stall: Option<Duration>,
    /// What the test asserted.
    pub asserted: String,
    /// The brokers, e.g. `"3 x Apache Kafka 4.4.0"`.
    pub broker: String,
}

/// Stores `row` under `target/reliability-cluster/` and rewrites the cluster
/// table in `RELIABILITY.md` from every row stored there.
pub fn record_cluster_row(row: &ClusterRow) {
    CLUSTER.store(
        row.key,
        vec![
            row.key.to_owned(),
            row.fault.clone(),
            row.records.to_string(),
            row.lost.to_string(),
            row.duplicates.to_string(),
            row.publish_errors.to_string(),
            format!(
                "{:.1} s / {}",
                row.publish_stall.as_secs_f64(),
                row.consume_stall
                    .map_or("no consumer".to_owned(), |d| format!(
                        "{:.1} s",
                        d.as_secs_f64()
                    ))
            ),
            row.asserted.clone(),
            row.test.to_owned(),
            row.broker.clone(),
            utc_date(),
        ],
    );
}

/// Today's date in UTC, `YYYY-MM-DD`.
fn utc_date() -> String {
    let days = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or_default() as i64;
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// [`committed_offsets`] on the broker at `servers` instead of `KAFKA`.
pub fn committed_offsets_at(
    servers: &str,
    group: &str,
    topic: &str,
    partitions: i32,
) -> Vec<(i32, i64)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer for reading offsets");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets")
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
}

/// Warnings and errors logged by kafkaesk and librdkafka in this test
/// process, from every thread, as `target: field=value ...` lines, once this
/// was first called. librdkafka logs from threads of its own, which a
/// thread-local subscriber does not see, so this installs a global one; a
/// test binary that installs its own global subscriber first gets none here.
pub fn captured_warnings() -> &'static std::sync::Mutex<Vec<String>> {
    use std::sync::{Mutex, OnceLock};
    use tracing_subscriber::layer::{Context, SubscriberExt};
    use tracing_subscriber::Layer;

    static WARNINGS: Mutex<Vec<String>> = Mutex::new(Vec::new());
    static INSTALLED: OnceLock<()> = OnceLock::new();

    struct Capture;
    impl<S: tracing::Subscriber> Layer<S> for Capture {
        fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
            struct Fields(String);
            impl tracing::field::Visit for Fields {
                fn record_debug(
                    &mut self,
                    field: &tracing::field::Field,
                    value: &dyn std::fmt::Debug,
                ) {
                    self.0.push_str(&format!(" {}={value:?}", field.name()));
                }
            }
            let mut fields = Fields(format!("{}:", event.metadata().target()));
            event.record(&mut fields);
            WARNINGS
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(fields.0);
        }
    }
    INSTALLED.get_or_init(|| {
        let wanted = tracing_subscriber::filter::filter_fn(|meta| {
            (meta.target().starts_with("kafkaesk") || meta.target() == "librdkafka")
                && *meta.level() <= tracing::Level::WARN
        });
        let _ = tracing::subscriber::set_global_default(
            tracing_subscriber::registry().with(Capture.with_filter(wanted)),
        );
    });
    &WARNINGS
}

/// Starts `command` with stdout and stderr piped; every line of either
/// arrives on the returned channel, which closes when both streams end.
pub fn spawn_with_lines(
    command: &mut std::process::Command,
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader};
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the process");
    let (tx, lines) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    for stream in [
        Box::new(stdout) as Box<dyn std::io::Read + Send>,
        Box::new(stderr),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    (child, lines)
}

/// Sends `signal` to `child` and waits for it to exit, at most `within`:
/// its exit status and how long it took, or `None` (and the child killed)
/// when it was still running.
pub fn signal_and_wait(
    child: &mut std::process::Child,
    signal: i32,
    within: Duration,
) -> Option<(std::process::ExitStatus, Duration)> {
    let sent = std::time::Instant::now();
    // SAFETY: signalling our own child process, which has not been reaped.
    unsafe { libc::kill(child.id() as i32, signal) };
    while sent.elapsed() < within {
        if let Ok(Some(status)) = child.try_wait() {
            return Some((status, sent.elapsed()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}
