//! An exactly-once subscription that is SIGKILLed mid-stream and restarted
//! leaves each result in its output stream exactly once, as a
//! read-committed reader sees it: the killed worker's open transaction is
//! aborted (its output never appears), and its records, whose offsets were
//! not committed, are handled again.
//!
//! The test checks that the kill landed while a transaction was open (a
//! read-uncommitted reader saw output that a read-committed one did not),
//! or it would prove nothing about aborting.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use kafkaesk::{Subscriber, Subscription};
use kafkaesk_tests::{
    app_builder, committed_total, read_all, read_all_uncommitted, spawn_with_lines, unique_prefix,
};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Number {
    pub n: u64,
}

impl kafkaesk::Schema for Number {
    const ID: &'static str = "EosNumber";
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Doubled {
    pub n: u64,
    pub doubled: u64,
}

impl kafkaesk::Schema for Doubled {
    const ID: &'static str = "EosDoubled";
}

const MESSAGES: u64 = 400;
const GROUP: &str = "doubler";
const PREFIX_VAR: &str = "KAFKAESK_EOS_TEST_PREFIX";

fn application(prefix: &str) -> kafkaesk::Application {
    app_builder(prefix)
        // Stable per worker, as the docs advise: a restarted worker aborts
        // what the killed one left open at once.
        .transactional_id(format!("{prefix}worker"))
        .kafka_setting("session.timeout.ms", "6000")
        .subscribe(
            Subscription::new(
                "numbers",
                |number: Number, subscriber: Subscriber| async move {
                    let doubled = Doubled {
                        n: number.n,
                        doubled: number.n * 2,
                    };
                    subscriber.publish("doubled", &doubled).wait().await?;
                    // Output stored, not yet committed: where the kill should land.
                    tokio::time::sleep(Duration::from_millis(40)).await;
                    Ok::<(), kafkaesk::Error>(())
                },
            )
            .with_name(GROUP)
            .with_concurrency(4)
            .exactly_once(),
        )
        .build()
        .unwrap()
}

/// The worker process the test starts and kills: this test binary, running
/// only this function.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the worker process of exactly_once_output_survives_sigkill"]
async fn worker() {
    let prefix = std::env::var(PREFIX_VAR).expect("started by the crash test");
    application(&prefix).consume_forever().await.unwrap();
}

fn start_worker(prefix: &str) -> std::process::Child {
    let (child, lines) = spawn_with_lines(
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "exactly_once_output_survives_sigkill::worker",
                "--ignored",
                "--nocapture",
            ])
            .env(PREFIX_VAR, prefix),
    );
    std::thread::spawn(move || {
        for line in lines {
            eprintln!("worker: {line}");
        }
    });
    child
}

/// The ends of a topic's partitions, as readers see them.
struct Ends {
    uncommitted: rdkafka::consumer::BaseConsumer,
    committed: rdkafka::consumer::BaseConsumer,
}

impl Ends {
    fn new() -> Ends {
        let reader = |isolation: &str| {
            rdkafka::ClientConfig::new()
                .set("bootstrap.servers", kafkaesk_tests::kafka())
                .set("isolation.level", isolation)
                .create()
                .unwrap()
        };
        Ends {
            uncommitted: reader("read_uncommitted"),
            committed: reader("read_committed"),
        }
    }

    /// Offsets taken in `topic`'s 7 partitions, records and transaction
    /// markers alike, up to the last record written (`read_uncommitted`)
    /// or up to the last stable offset, before any open transaction
    /// (`read_committed`). `None` when a partition's end could not be looked up, as a sum that
    /// left it out would be wrong.
    fn taken(consumer: &rdkafka::consumer::BaseConsumer, topic: &str) -> Option<i64> {
        use rdkafka::consumer::Consumer;
        (0..7)
            .map(|p| {
                consumer
                    .fetch_watermarks(topic, p, Duration::from_secs(5))
                    .ok()
                    .map(|(_, high)| high)
            })
            .sum()
    }

    /// Offsets committed in `topic`, when records stand beyond them in an
    /// open transaction right now; `None` when every record is committed
    /// or an end could not be looked up.
    fn open_transaction(&self, topic: &str) -> Option<i64> {
        // Written first, stable second: a transaction committed between the
        // two reads moves the stable end up to the written one, so a gap
        // means a transaction was open at the second read.
        let written = Self::taken(&self.uncommitted, topic)?;
        let stable = Self::taken(&self.committed, topic)?;
        (written > stable).then_some(stable)
    }
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_output_survives_sigkill() {
    let prefix = unique_prefix("eos-crash");
    let numbers = format!("{prefix}numbers");
    let doubled = format!("{prefix}doubled");
    let app = application(&prefix);
    let mut acks = Vec::new();
    for n in 0..MESSAGES {
        acks.push(app.publish("numbers", &Number { n }).await.unwrap());
    }
    for ack in acks {
        ack.await.unwrap();
    }

    // The kill lands once 100 offsets are committed, while a transaction is
    // open: the worker commits a transaction per batch, and a kill timed by
    // committed output alone lands right after a commit, between two. Even
    // so, the open transaction may commit between the look and the kill (a
    // loaded machine widens that moment), and the next may not have written
    // yet: then a new worker is started and killed the same way, up to
    // three times, as each kill is one more crash the output must survive.
    let ends = Ends::new();
    let mut kills = 0;
    let (at_kill, committed_at_kill) = loop {
        kills += 1;
        let mut worker = start_worker(&prefix);
        let deadline = Instant::now() + Duration::from_secs(90);
        while ends
            .open_transaction(&doubled)
            .is_none_or(|stable| stable < 100)
        {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for output before the kill"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        worker.kill().unwrap(); // SIGKILL
        worker.wait().unwrap();
        // Until the restarted worker fences the killed one's transactional id,
        // its open transaction stays open: read-committed readers stop before
        // it, read-uncommitted ones see its output.
        let at_kill = read_all_uncommitted(&doubled, Duration::from_secs(3)).len();
        let committed_at_kill = read_all(&doubled, Duration::from_secs(3)).len();
        if at_kill > committed_at_kill || kills == 3 {
            break (at_kill, committed_at_kill);
        }
        eprintln!("kill {kills} landed between transactions; once more");
    };
    assert!(
        at_kill > committed_at_kill,
        "every one of {kills} kills landed between transactions ({at_kill} results \
         stored, all committed); one must land while a transaction is open"
    );

    let mut second = start_worker(&prefix);
    wait_for("every offset committed", Duration::from_secs(120), || {
        committed_total(GROUP, &numbers, 7) == MESSAGES as i64
    });
    second.kill().unwrap();
    second.wait().unwrap();

    let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
    for raw in read_all(&doubled, Duration::from_secs(3)) {
        let envelope: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        let data = &envelope["data"];
        let n = data["n"].as_u64().unwrap();
        assert_eq!(data["doubled"].as_u64(), Some(n * 2));
        *seen.entry(n).or_default() += 1;
    }
    let stored = read_all_uncommitted(&doubled, Duration::from_secs(3)).len();
    let visible = seen.values().sum::<usize>();
    eprintln!(
        "{at_kill} results stored when the last worker was killed ({committed_at_kill} \
         committed); {stored} stored in all, {visible} visible to read-committed readers"
    );
    assert!(
        stored > visible,
        "the killed worker's open transaction was aborted, so some stored output stays hidden"
    );
    let twice: Vec<_> = seen.iter().filter(|(_, &count)| count > 1).collect();
    assert!(twice.is_empty(), "results seen more than once: {twice:?}");
    let missing: Vec<u64> = (0..MESSAGES).filter(|n| !seen.contains_key(n)).collect();
    assert!(missing.is_empty(), "results missing: {missing:?}");
}
