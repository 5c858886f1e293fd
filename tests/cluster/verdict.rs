//! What every cluster fault test asserts, and the row it writes into the
//! cluster table of `RELIABILITY.md` (written before the assertions, so a
//! failing run shows its figures too).

use kafkaesk_tests::{record_cluster_row, ClusterRow};

use super::steady::Outcome;

/// The fault a test injected.
pub struct Fault {
    /// The row's key in the table, e.g. `"C1"`.
    pub key: &'static str,
    /// What was done, for the table.
    pub description: String,
    /// The test, `module::function`.
    pub test: &'static str,
    /// The addresses of the brokers the fault hit, one of which the
    /// clients' warnings must name (unless they warn of a slow
    /// acknowledgement instead).
    pub brokers: Vec<String>,
}

/// The brokers, for the table: `3 x Apache Kafka 4.4.0 (RF 3, ...)`.
pub fn brokers() -> String {
    let pom = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka/pom.xml");
    let version = std::fs::read_to_string(pom)
        .ok()
        .and_then(|pom| {
            let start = pom.find("<kafka.version>")? + "<kafka.version>".len();
            let end = start + pom[start..].find('<')?;
            Some(pom[start..end].to_owned())
        })
        .unwrap_or_else(|| "?".to_owned());
    format!("3 x Apache Kafka {version} (RF 3, min.insync.replicas 2)")
}

fn summary(outcome: &Outcome) -> String {
    let a = &outcome.audit;
    format!(
        "{} published, {} acknowledged, {} errors, {} unanswered, {} runs, {} lost, \
         {} duplicates ({} below a commit), {} stored twice, {} uncommitted, \
         publish stall {:?}, consume stall {:?}, client errors (worker, publisher) {:?}, \
         {} warnings",
        a.published,
        a.acknowledged,
        a.errors.len(),
        a.unanswered.len(),
        a.runs,
        a.lost.len(),
        a.duplicates,
        a.below_commit.len(),
        a.stored_twice.len(),
        a.uncommitted.len(),
        a.publish_stall,
        a.consume_stall,
        outcome.client_errors,
        outcome.warnings.len()
    )
}

/// At least once through a fault while a majority of brokers is up:
/// nothing acknowledged is lost, no publish fails, a key runs again only
/// from an offset not yet committed, the log holds each key once, and the
/// fault shows in the clients' logs and metrics.
pub fn at_least_once(outcome: &Outcome, fault: &Fault) {
    let a = &outcome.audit;
    eprintln!("{}: {}", fault.key, summary(outcome));
    record_cluster_row(&ClusterRow {
        key: fault.key,
        fault: fault.description.clone(),
        test: fault.test,
        records: a.published,
        lost: a.lost.len(),
        duplicates: a.duplicates,
        publish_errors: a.errors.len() + a.unanswered.len(),
        publish_stall: a.publish_stall,
        consume_stall: Some(a.consume_stall),
        asserted: "0 lost, 0 publish errors, duplicates only at uncommitted offsets".to_owned(),
        broker: brokers(),
    });
    common(outcome, fault);
    assert!(
        a.lost.is_empty(),
        "acknowledged, never handled (key, acknowledged at, in the stream): {}",
        few(&outcome.lost_places)
    );
    assert!(
        a.below_commit.is_empty(),
        "handled again after the group committed past them: {}",
        few(&a.below_commit)
    );
}

/// Exactly once through the faults: each acknowledged input once in the
/// read-committed output, none twice, nothing else there.
pub fn exactly_once(outcome: &Outcome, fault: &Fault) {
    let a = &outcome.audit;
    let acknowledged = a.acknowledged;
    let missing: Vec<u64> = (0..a.published as u64)
        .filter(|n| !a.errors.iter().any(|(e, _)| e == n))
        .filter(|n| !outcome.output_copies.contains_key(n))
        .collect();
    let twice: Vec<(u64, usize)> = outcome
        .output_copies
        .iter()
        .filter(|(_, copies)| **copies > 1)
        .map(|(n, c)| (*n, *c))
        .collect();
    let copies: usize = outcome.output_copies.values().sum();
    eprintln!(
        "{}: {}; output: {} copies of {} keys, {} missing, {} twice",
        fault.key,
        summary(outcome),
        copies,
        outcome.output_copies.len(),
        missing.len(),
        twice.len()
    );
    record_cluster_row(&ClusterRow {
        key: fault.key,
        fault: fault.description.clone(),
        test: fault.test,
        records: a.published,
        lost: missing.len(),
        duplicates: copies.saturating_sub(outcome.output_copies.len()),
        publish_errors: a.errors.len() + a.unanswered.len(),
        publish_stall: a.publish_stall,
        consume_stall: Some(a.consume_stall),
        asserted: "each input exactly once in the read-committed output".to_owned(),
        broker: brokers(),
    });
    common(outcome, fault);
    assert!(
        missing.is_empty(),
        "inputs missing from the output: {}",
        few(&missing)
    );
    assert!(
        twice.is_empty(),
        "inputs in the output more than once: {}",
        few(&twice)
    );
    assert_eq!(
        outcome.output_copies.len(),
        acknowledged,
        "the output holds the inputs alone"
    );
}

fn common(outcome: &Outcome, fault: &Fault) {
    let a = &outcome.audit;
    assert!(
        a.unanswered.is_empty(),
        "publishes never answered: {}",
        few(&a.unanswered)
    );
    assert!(
        a.errors.is_empty(),
        "publish errors returned to the caller while two brokers were up: {}",
        few(&a.errors)
    );
    assert!(
        a.stored_twice.is_empty(),
        "the idempotent producer stored keys twice: {}",
        few(&a.stored_twice)
    );
    assert!(
        a.uncommitted.is_empty(),
        "handled but not committed at the end: {}",
        few(&a.uncommitted)
    );
    // librdkafka retries through a lost broker, so nothing fails: the
    // fault must show as errors it reports (a connection refused or lost)
    // or as kafkaesk's warning about a slow acknowledgement (a cut-off
    // leader, whose requests hang rather than fail).
    let (worker, publisher) = outcome.client_errors;
    let slow = outcome
        .warnings
        .iter()
        .filter(|w| w.contains("for the broker's acknowledgement"))
        .count();
    assert!(
        worker + publisher > 0 || (slow > 0 && a.publish_stall >= SLOW),
        "the fault shows in kafkaesk_kafka_client_errors_total or in the publish \
         latency: {:?} client errors, {slow} slow-delivery warnings",
        outcome.client_errors
    );
    assert!(
        slow > 0
            || fault
                .brokers
                .iter()
                .any(|broker| outcome.warnings.iter().any(|w| w.contains(broker.as_str()))),
        "the clients' warnings name a broker the fault hit ({:?}) or a slow \
         acknowledgement: {}",
        fault.brokers,
        few(&outcome.warnings)
    );
}

/// kafkaesk warns of an acknowledgement slower than this.
const SLOW: std::time::Duration = std::time::Duration::from_secs(5);

/// How many there are, and the first ten.
fn few<T: std::fmt::Debug>(items: &[T]) -> String {
    format!(
        "{} in all, first {:#?}",
        items.len(),
        &items[..items.len().min(10)]
    )
}
