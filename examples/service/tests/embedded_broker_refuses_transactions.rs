//! The embedded broker cannot run transactions: a transaction fails at once
//! with an error that names the limit and the fix, instead of hanging.

use std::time::{Duration, Instant};

use kafkaesk::testing::TestHarness;
use kafkaesk::Error;
use service::Order;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_on_the_embedded_broker_fails_with_the_fix() {
    let harness = TestHarness::builder()
        .with_registry()
        .unwrap()
        .dedicated_broker()
        .start()
        .await
        .unwrap();
    let started = Instant::now();
    let outcome = tokio::time::timeout(Duration::from_secs(60), async {
        let tx = harness.app().transaction().await?;
        tx.publish(
            "orders.created",
            &Order {
                id: 1,
                item: "book".into(),
                quantity: 1,
            },
        )
        .await?;
        tx.commit().await
    })
    .await;
    eprintln!("after {:?}: {outcome:?}", started.elapsed());
    let err = outcome
        .expect("the commit fails at once, without waiting out a timeout")
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::TransactionsUnsupported {
                action: "commit",
                ..
            }
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("embedded broker") && text.contains("point KAFKA"),
        "the error names the limit and the fix: {text}"
    );
}
