//! Records of partitions assigned while the consumer waits are handled at
//! once, not at its next timer (the commit interval).
//!
//! A subscription reads records from queues of its own, which it follows the
//! assignment to; the rebalance that assigns partitions is served while the
//! consumer waits for records. Here the commit interval is two minutes, so a
//! consumer that only looked at its assignment again when its timer fired
//! would handle nothing within the test's 60 s.

use std::time::Duration;

use kafkaesk::subscription::RecordOrder;
use kafkaesk::Subscription;
use kafkaesk_tests::{app_builder, unique_prefix};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Joined {
    pub n: u32,
}

impl kafkaesk::Schema for Joined {
    const ID: &'static str = "Joined";
}

async fn first_record_is_handled_without_a_timer(order: RecordOrder) {
    let prefix = unique_prefix(&format!("assigned-at-once-{order:?}").to_lowercase());
    let app = app_builder(&prefix)
        .auto_commit_interval(Duration::from_secs(120))
        .subscribe(
            Subscription::new("joined.*", |_: Joined| async {})
                .with_group("assigned-at-once")
                .with_order(order),
        )
        .build()
        .unwrap();
    app.publish_and_wait("joined.events", &Joined { n: 1 })
        .await
        .unwrap();
    let consumed = app.consume_for(1, Duration::from_secs(60)).await.unwrap();
    assert_eq!(
        consumed, 1,
        "{order:?}: the record was not handled within 60 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unordered_subscription_reads_new_partitions_at_once() {
    first_record_is_handled_without_a_timer(RecordOrder::Unordered).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_subscription_reads_new_partitions_at_once() {
    first_record_is_handled_without_a_timer(RecordOrder::Key).await;
}
