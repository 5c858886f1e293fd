//! The workload every cluster fault runs under: a steady publisher (a job
//! every 10 ms, each keyed by its number, `AckPolicy::All` with kafkaesk's
//! idempotent producer), a worker consuming the jobs in one group, and a
//! sampler reading the group's committed offsets from the brokers four
//! times a second, all writing into one [`Ledger`].
//!
//! In [`Pipeline::ExactlyOnce`] the worker is a consume → transform →
//! produce pipeline: each job's handler publishes a `Done` in the batch's
//! transaction, and the output is read back `read_committed`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafkaesk::{Application, Record, Subscriber, Subscription};
use kafkaesk_tests::{captured_warnings, committed_offsets_at, read_all_at, unique_prefix};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::harness::Cluster;
use super::ledger::{Audit, Ledger};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Job {
    pub n: u64,
}

impl kafkaesk::Schema for Job {
    const ID: &'static str = "ClusterJob";
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Done {
    pub n: u64,
}

impl kafkaesk::Schema for Done {
    const ID: &'static str = "ClusterDone";
}

/// Partitions of the jobs stream: enough that every broker leads some.
pub const PARTITIONS: i32 = 6;
/// One job every this often.
const EVERY: Duration = Duration::from_millis(10);

/// What the worker does with a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pipeline {
    /// Handles it; at least once.
    AtLeastOnce,
    /// Publishes a `Done` for it in the batch's transaction.
    ExactlyOnce,
}

/// The running workload.
pub struct Steady {
    pub ledger: Arc<Ledger>,
    pub worker: Application,
    pub publisher: Application,
    /// The jobs stream's full topic name.
    pub topic: String,
    /// The output stream's full topic name ([`Pipeline::ExactlyOnce`]).
    pub output: String,
    /// The worker's group id.
    pub group: String,
    /// [`Pipeline::ExactlyOnce`]: the transactional id of its producer.
    pub transactional_id: Option<String>,
    pipeline: Pipeline,
    bootstrap: String,
    consuming: tokio::task::JoinHandle<kafkaesk::Result<()>>,
    publishing: tokio::task::JoinHandle<()>,
    keep_publishing: Arc<AtomicBool>,
    keep_sampling: Arc<AtomicBool>,
    sampler: std::thread::JoinHandle<()>,
    warnings_before: usize,
}

/// What a finished workload shows.
#[derive(Debug)]
pub struct Outcome {
    pub audit: Audit,
    /// Warnings and errors the worker and publisher logged (librdkafka's
    /// and kafkaesk's) while the workload ran.
    pub warnings: Vec<String>,
    /// `kafkaesk_kafka_client_errors_total` of the worker and the publisher.
    pub client_errors: (u64, u64),
    /// [`Pipeline::ExactlyOnce`]: each key's copies in the read-committed output.
    pub output_copies: BTreeMap<u64, usize>,
    /// For each lost key: where it was acknowledged, and whether the jobs
    /// stream holds it (so a consumer skipped it) or not (so the brokers
    /// or the producer lost it).
    pub lost_places: Vec<(u64, (i32, i64), bool)>,
}

impl Steady {
    /// Creates the streams (3 replicas, `min.insync.replicas` 2 from the
    /// brokers), starts the worker and, once it consumes, the publisher.
    pub async fn start(cluster: &Cluster, name: &str, pipeline: Pipeline) -> Steady {
        let warnings_before = captured_warnings().lock().unwrap().len();
        let prefix = unique_prefix(name);
        let bootstrap = cluster.bootstrap();
        let ledger = Arc::new(Ledger::default());
        let group = format!("{prefix}workers");
        let builder = || {
            Application::builder()
                .kafka_servers([bootstrap.clone()])
                .topic_prefix(&prefix)
                .replication_factor(3)
                .partitions(PARTITIONS)
        };
        let publisher = builder().build().unwrap();
        publisher.initialize().await.unwrap();

        let subscription = match pipeline {
            Pipeline::AtLeastOnce => {
                let ledger = ledger.clone();
                Subscription::new("jobs", move |job: Job, record: Record| {
                    ledger.handled(job.n, record.partition(), record.offset());
                    async {}
                })
            }
            Pipeline::ExactlyOnce => {
                let ledger = ledger.clone();
                Subscription::new(
                    "jobs",
                    move |job: Job, record: Record, subscriber: Subscriber| {
                        ledger.handled(job.n, record.partition(), record.offset());
                        async move {
                            subscriber
                                .publish("done", &Done { n: job.n })
                                .wait()
                                .await?;
                            Ok::<(), kafkaesk::Error>(())
                        }
                    },
                )
                .exactly_once()
                .with_concurrency(8)
            }
        };
        let mut worker = builder();
        let mut transactional_id = None;
        if pipeline == Pipeline::ExactlyOnce {
            worker = worker.transactional_id(format!("{prefix}pipeline"));
            // kafkaesk's id for the subscription's producer: PREFIX-SUBSCRIPTION.
            transactional_id = Some(format!("{prefix}pipeline-jobs"));
        }
        let worker = worker
            .subscribe(subscription.with_name("jobs").with_group(&group))
            .build()
            .unwrap();
        worker.initialize().await.unwrap();
        let consuming = {
            let worker = worker.clone();
            tokio::spawn(async move { worker.consume_forever().await })
        };

        let keep_publishing = Arc::new(AtomicBool::new(true));
        let publishing = tokio::spawn(publish_steadily(
            publisher.clone(),
            ledger.clone(),
            keep_publishing.clone(),
        ));
        let keep_sampling = Arc::new(AtomicBool::new(true));
        let sampler = {
            let (bootstrap, group, topic) =
                (bootstrap.clone(), group.clone(), format!("{prefix}jobs"));
            let (ledger, keep) = (ledger.clone(), keep_sampling.clone());
            std::thread::spawn(move || sample_commits(&bootstrap, &group, &topic, &ledger, &keep))
        };
        let steady = Steady {
            ledger,
            worker,
            publisher,
            topic: format!("{prefix}jobs"),
            output: format!("{prefix}done"),
            group,
            transactional_id,
            pipeline,
            bootstrap,
            consuming,
            publishing,
            keep_publishing,
            keep_sampling,
            sampler,
            warnings_before,
        };
        steady.wait_for_handled(100, Duration::from_secs(60)).await;
        let replicas = cluster.partitions(&steady.topic);
        assert_eq!(replicas.len(), PARTITIONS as usize);
        assert!(
            replicas.iter().all(|p| p.isr.len() == 3),
            "every partition has three replicas in sync: {replicas:?}"
        );
        steady
    }

    /// Waits until at least `count` keys were handled.
    pub async fn wait_for_handled(&self, count: usize, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let acknowledged = self.ledger.acknowledged().len();
            let handled = acknowledged.saturating_sub(self.ledger.unhandled().len());
            if handled >= count {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "only {handled} of {acknowledged} acknowledged jobs handled within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Lets the workload run for `time`, checking that the worker goes on.
    pub async fn run_for(&self, time: Duration) {
        tokio::time::sleep(time).await;
        self.assert_worker_runs();
    }

    fn assert_worker_runs(&self) {
        assert!(
            !self.consuming.is_finished(),
            "the worker stopped consuming during the fault"
        );
    }

    /// Stops publishing, waits until every acknowledged job is handled (and,
    /// for a pipeline, in the output) and committed, stops the worker, and
    /// audits the ledger.
    pub async fn finish(self) -> Outcome {
        self.assert_worker_runs();
        self.keep_publishing.store(false, Ordering::SeqCst);
        tokio::time::timeout(Duration::from_secs(180), self.publishing)
            .await
            .expect("every publish is answered within 180 s")
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        while !self.ledger.unhandled().is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Everything handled is committed within a few commit intervals.
        let ends = end_offsets(&self.bootstrap, &self.topic);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let committed = commits_now(&self.bootstrap, &self.group, &self.topic);
            let behind: Vec<_> = ends
                .iter()
                .filter(|(p, end)| committed.get(p).is_none_or(|c| c < end))
                .collect();
            if behind.is_empty() || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert!(
            !self.consuming.is_finished(),
            "the worker stopped consuming before it was told to"
        );
        let client_errors = (
            client_errors(&self.worker.metrics().encode()),
            client_errors(&self.publisher.metrics().encode()),
        );
        let unhandled = self.ledger.unhandled();
        self.worker.stop();
        let Ok(ended) = tokio::time::timeout(Duration::from_secs(60), self.consuming).await else {
            let warnings = captured_warnings().lock().unwrap()[self.warnings_before..].to_vec();
            panic!(
                "the worker did not stop within 60 s ({} acknowledged jobs unhandled: {:?}); \
                 its warnings:\n{}",
                unhandled.len(),
                &unhandled[..unhandled.len().min(10)],
                warnings.join("\n")
            );
        };
        ended.unwrap().expect("the worker ends cleanly");
        self.keep_sampling.store(false, Ordering::SeqCst);
        self.sampler.join().unwrap();
        let final_commits = commits_now(&self.bootstrap, &self.group, &self.topic);
        let audit = self.ledger.audit(&final_commits);
        let warnings = captured_warnings().lock().unwrap()[self.warnings_before..].to_vec();

        let mut lost_places = Vec::new();
        if !audit.lost.is_empty() {
            let (bootstrap, topic) = (self.bootstrap.clone(), self.topic.clone());
            let stored: std::collections::HashSet<u64> = tokio::task::spawn_blocking(move || {
                read_all_at(&bootstrap, &topic, Duration::from_secs(3))
            })
            .await
            .unwrap()
            .iter()
            .filter_map(|value| {
                let envelope: serde_json::Value = serde_json::from_slice(value).ok()?;
                envelope["data"]["n"].as_u64()
            })
            .collect();
            let places: HashMap<u64, (i32, i64)> = self.ledger.acknowledged().into_iter().collect();
            lost_places = audit
                .lost
                .iter()
                .map(|key| (*key, places[key], stored.contains(key)))
                .collect();
        }
        let mut output_copies = BTreeMap::new();
        if self.pipeline == Pipeline::ExactlyOnce {
            let bootstrap = self.bootstrap.clone();
            let output = self.output.clone();
            let values = tokio::task::spawn_blocking(move || {
                read_all_at(&bootstrap, &output, Duration::from_secs(3))
            })
            .await
            .unwrap();
            for value in values {
                let envelope: serde_json::Value =
                    serde_json::from_slice(&value).expect("a Done envelope");
                let n = envelope["data"]["n"].as_u64().expect("a Done's n");
                *output_copies.entry(n).or_insert(0) += 1;
            }
        }
        Outcome {
            audit,
            warnings,
            client_errors,
            output_copies,
            lost_places,
        }
    }
}

async fn publish_steadily(publisher: Application, ledger: Arc<Ledger>, keep: Arc<AtomicBool>) {
    let mut answers = Vec::new();
    let mut n = 0u64;
    let mut next = tokio::time::Instant::now();
    while keep.load(Ordering::SeqCst) {
        ledger.called(n);
        match publisher
            .publish("jobs", &Job { n })
            .key(n.to_string())
            .await
        {
            Ok(ack) => answers.push(answer_later(&ledger, n, ack)),
            Err(err) => ledger.answered(n, Err(err.to_string())),
        }
        n += 1;
        next += EVERY;
        tokio::time::sleep_until(next).await;
    }
    for answer in answers {
        answer.await.unwrap();
    }
}

/// Records in `ledger` what the broker answers for key `n`, once it does.
pub fn answer_later(
    ledger: &Arc<Ledger>,
    n: u64,
    ack: kafkaesk::PublishHandle,
) -> tokio::task::JoinHandle<()> {
    let ledger = ledger.clone();
    tokio::spawn(async move {
        let outcome = ack
            .await
            .map(|d| (d.partition, d.offset))
            .map_err(|e| e.to_string());
        ledger.answered(n, outcome);
    })
}

/// Reads the group's committed offsets every 250 ms into the ledger, until
/// told to stop. A sample that fails (a coordinator moving) is skipped.
fn sample_commits(bootstrap: &str, group: &str, topic: &str, ledger: &Ledger, keep: &AtomicBool) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("log_level", "0")
        .create()
        .expect("commit sampler");
    while keep.load(Ordering::SeqCst) {
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition(topic, p);
        }
        if let Ok(committed) = consumer.committed_offsets(tpl, Duration::from_secs(2)) {
            for e in committed.elements() {
                if let Offset::Offset(o) = e.offset() {
                    ledger.committed(e.partition(), o);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn commits_now(bootstrap: &str, group: &str, topic: &str) -> HashMap<i32, i64> {
    committed_offsets_at(bootstrap, group, topic, PARTITIONS)
        .into_iter()
        .collect()
}

fn end_offsets(bootstrap: &str, topic: &str) -> HashMap<i32, i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("log_level", "0")
        .create()
        .expect("watermark reader");
    (0..PARTITIONS)
        .map(|p| {
            let (_, high) = consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .expect("watermarks");
            (p, high)
        })
        .collect()
}

/// The sum of `kafkaesk_kafka_client_errors_total` in a metrics text.
pub fn client_errors(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|line| line.starts_with("kafkaesk_kafka_client_errors_total{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}
