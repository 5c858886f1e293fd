//! The service's handlers, tested with `kafkaesk::testing` only: publish, wait until settled,
//! assert. Every test gets streams and groups of its own on one broker shared by the process.

use kafkaesk::dead_letter::{DLQ_ATTEMPTS, DLQ_ERROR, DLQ_SUBSCRIPTION};
use kafkaesk::testing::{RecordOutcome, TestHarness};
use kafkaesk::Error;
use service::{Order, Shipment, SHIPPING_DEAD_LETTERS, STOCK};

fn order(id: u64, item: &str, quantity: u32) -> Order {
    Order {
        id,
        item: item.to_owned(),
        quantity,
    }
}

#[tokio::test]
async fn an_order_is_handled_and_shipped_with_its_key_and_headers() -> Result<(), Error> {
    let harness = TestHarness::for_app(&service::app()?).await?;

    // Every option of `Application::publish` is the harness's too.
    let published = harness
        .publish("orders.created", &order(1, "book", 2))
        .key("customer-7")
        .header("tenant", "acme")
        .partition(0)
        .ack_policy(kafkaesk::AckPolicy::All)
        .timeout(std::time::Duration::from_secs(30))
        .await?;
    assert_eq!(published.delivery.partition, 0);

    let handled = RecordOutcome::Handled { attempts: 1 };
    assert_eq!(published.outcome("handle_order"), Some(&handled));
    assert_eq!(published.outcome("ship_order"), Some(&handled));
    let shipped = harness.published::<Shipment>("shipments.created").await?;
    assert_eq!(shipped.len(), 1);
    assert_eq!(
        shipped[0].data,
        Shipment {
            order_id: 1,
            item: "book".into(),
            quantity: 2
        }
    );
    assert_eq!(shipped[0].record.key(), Some(&b"1"[..]));
    assert_eq!(
        shipped[0].record.headers().get("tenant"),
        Some(&b"acme"[..])
    );
    // handle_order consumes every `orders.*` stream, and shipments are not among them.
    assert_eq!(harness.stats("handle_order")?.handled, 1);
    Ok(())
}

#[tokio::test]
async fn an_order_larger_than_the_stock_is_retried_then_dead_lettered() -> Result<(), Error> {
    let harness = TestHarness::for_app(&service::app()?).await?;

    let published = harness
        .publish("orders.created", &order(2, "lamp", STOCK + 1))
        .key("customer-9")
        .await?;

    assert_eq!(
        published.outcome("ship_order"),
        Some(&RecordOutcome::DeadLettered {
            error: format!("{} x lamp ordered, {STOCK} in stock", STOCK + 1),
            attempts: 3,
            stream: SHIPPING_DEAD_LETTERS.into(),
        })
    );
    assert!(published
        .outcome("handle_order")
        .is_some_and(RecordOutcome::is_handled));
    let stats = harness.stats("ship_order")?;
    assert_eq!(
        (
            stats.handled,
            stats.failed,
            stats.retried,
            stats.dead_lettered
        ),
        (0, 1, 2, 1)
    );
    assert!(harness
        .published::<Shipment>("shipments.created")
        .await?
        .is_empty());
    let dead = harness.published::<Order>(SHIPPING_DEAD_LETTERS).await?;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].data.id, 2);
    assert_eq!(dead[0].record.key(), Some(&b"customer-9"[..]));
    let headers = dead[0].record.headers();
    assert_eq!(headers.get(DLQ_SUBSCRIPTION), Some(&b"ship_order"[..]));
    assert_eq!(headers.get(DLQ_ATTEMPTS), Some(&b"3"[..]));
    assert!(headers.get(DLQ_ERROR).is_some());

    // A dead letter does not hold the stream back: the next order ships.
    let next = harness
        .publish("orders.created", &order(3, "pen", 1))
        .await?;
    assert!(next
        .outcome("ship_order")
        .is_some_and(RecordOutcome::is_handled));
    assert_eq!(
        harness
            .published::<Shipment>("shipments.created")
            .await?
            .len(),
        1
    );

    // Both orders are committed once the consumers stop.
    harness.stop().await?;
    let committed = harness.committed("shipping", "orders.created").await?;
    assert_eq!(committed.len(), 1);
    assert_eq!(committed[0].committed, Some(2));
    assert_eq!(committed[0].lag, 0);
    Ok(())
}

#[tokio::test]
async fn a_record_that_is_not_an_order_is_skipped_as_unhandled() -> Result<(), Error> {
    let harness = TestHarness::for_app(&service::app()?).await?;

    let delivery = harness
        .app()
        .raw_publish("orders.created", b"not json".to_vec())
        .wait()
        .await?;
    harness.settle().await?;

    let outcomes = harness.outcomes_of("orders.created", &delivery);
    assert_eq!(outcomes.len(), 2, "{outcomes:?}");
    for settled in &outcomes {
        assert!(
            matches!(settled.outcome, RecordOutcome::Unhandled { .. }),
            "{settled:?}"
        );
    }
    assert_eq!(harness.stats("handle_order")?.unhandled, 1);
    Ok(())
}

#[tokio::test]
async fn invalid_orders_are_refused_before_they_are_published() -> Result<(), Error> {
    let harness = TestHarness::for_app(&service::app()?).await?;

    let refused = harness
        .publish("orders.created", &order(4, "", 1))
        .await
        .map(|published| published.outcomes);
    assert!(
        matches!(refused, Err(Error::Validation { .. })),
        "{refused:?}"
    );
    harness.settle().await?;
    assert!(harness.outcomes("handle_order")?.is_empty());
    Ok(())
}
