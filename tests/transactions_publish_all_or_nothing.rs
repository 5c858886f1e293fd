//! A transaction's messages, to one stream or several, become visible to
//! read-committed readers all at once on commit, and never after an abort,
//! a drop or a crash; kafkaesk subscriptions read committed data only.
//!
//! Needs a broker with transactions, as the test broker, Apache Kafka, is
//! (`broker_supports_transactions`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kafkaesk::{Error, Subscription};
use kafkaesk_tests::{app_builder, read_all, read_all_uncommitted, unique_prefix};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Order {
    pub id: u32,
}

impl kafkaesk::Schema for Order {
    const ID: &'static str = "TxOrder";
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Invoice {
    pub order: u32,
}

impl kafkaesk::Schema for Invoice {
    const ID: &'static str = "TxInvoice";
}

const IDLE: Duration = Duration::from_secs(5);

/// The ids in the envelopes of `records`.
fn ids(records: &[Vec<u8>], field: &str) -> Vec<u64> {
    let mut ids: Vec<u64> = records
        .iter()
        .map(|raw| {
            let envelope: serde_json::Value = serde_json::from_slice(raw).unwrap();
            envelope["data"][field].as_u64().unwrap()
        })
        .collect();
    ids.sort_unstable();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_transaction_appears_whole_and_an_aborted_one_never() {
    let prefix = unique_prefix("tx-batch");
    let handled = Arc::new(AtomicUsize::new(0));
    let counter = handled.clone();
    let app = app_builder(&prefix)
        .subscribe(
            Subscription::new("orders", move |_: Order| {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
            })
            .with_name("order-counter"),
        )
        .build()
        .unwrap();
    let orders = format!("{prefix}orders");
    let invoices = format!("{prefix}invoices");

    // Committed: three orders and their invoices, all at once.
    let tx = app.transaction().await.unwrap();
    for id in 0..3 {
        tx.publish("orders", &Order { id }).wait().await.unwrap();
        tx.publish("invoices", &Invoice { order: id })
            .wait()
            .await
            .unwrap();
    }
    assert_eq!(read_all_uncommitted(&orders, IDLE).len(), 3, "stored");
    assert!(
        read_all(&orders, IDLE).is_empty(),
        "invisible before the commit"
    );
    tx.commit().await.unwrap();
    assert_eq!(ids(&read_all(&orders, IDLE), "id"), [0, 1, 2]);
    assert_eq!(ids(&read_all(&invoices, IDLE), "order"), [0, 1, 2]);

    // Aborted, and dropped: stored, never visible.
    let tx = app.transaction().await.unwrap();
    for id in 10..14 {
        tx.publish("orders", &Order { id }).wait().await.unwrap();
    }
    tx.abort().await.unwrap();
    {
        let tx = app.transaction().await.unwrap();
        tx.publish("orders", &Order { id: 20 })
            .wait()
            .await
            .unwrap();
    }
    // A later commit is not held back by the aborted ones.
    let tx = app.transaction().await.unwrap();
    tx.publish("orders", &Order { id: 30 })
        .wait()
        .await
        .unwrap();
    tx.commit().await.unwrap();

    assert_eq!(read_all_uncommitted(&orders, IDLE).len(), 9);
    assert_eq!(ids(&read_all(&orders, IDLE), "id"), [0, 1, 2, 30]);

    // The subscription reads committed data only.
    app.consume_for(4, Duration::from_secs(60)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(handled.load(Ordering::SeqCst), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_refuses_a_weaker_ack_policy() {
    let prefix = unique_prefix("tx-acks");
    let app = app_builder(&prefix).build().unwrap();
    let tx = app.transaction().await.unwrap();
    let refused = tx
        .publish("orders", &Order { id: 1 })
        .ack_policy(kafkaesk::AckPolicy::Leader)
        .await;
    assert!(
        matches!(&refused, Err(Error::InvalidSetting { name, .. }) if name == "ack_policy"),
        "{refused:?}"
    );
    tx.abort().await.unwrap();
}

/// Two applications of one process, neither with a `transactional_id` of
/// its own: their transactions must not fence each other, as they did when
/// each application numbered its transactional ids from 0 under the
/// process's shared prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_applications_of_one_process_do_not_fence_each_other() {
    let prefix = unique_prefix("tx-two-apps");
    let first = app_builder(&prefix).build().unwrap();
    let second = app_builder(&prefix).build().unwrap();
    let tx1 = first.transaction().await.unwrap();
    tx1.publish("orders", &Order { id: 1 })
        .wait()
        .await
        .unwrap();
    // Registering the second application's producer must leave the first's
    // open transaction alone.
    let tx2 = second.transaction().await.unwrap();
    tx2.publish("orders", &Order { id: 2 })
        .wait()
        .await
        .unwrap();
    tx1.commit().await.unwrap();
    tx2.commit().await.unwrap();
    let mut committed = ids(&read_all(&format!("{prefix}orders"), IDLE), "id");
    committed.sort_unstable();
    assert_eq!(committed, [1, 2]);
}
