//! Dead-letter replay republishes only where kafkaesk's own headers point,
//! and only to topics the dead-lettering subscription could have consumed:
//! a publisher of a subscribed topic cannot use replay to write elsewhere
//! with the replaying service's credentials.

use std::time::Duration;

use kafkaesk::dead_letter::{DLQ_ATTEMPTS, DLQ_SUBSCRIPTION, DLQ_TOPIC};
use kafkaesk::{ErrorPolicy, Replayed, Subscription};
use kafkaesk_tests::{app_builder, read_all, unique_prefix};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_source_header_cannot_redirect_a_replay() {
    let prefix = unique_prefix("dlq-attack");
    let payments = format!("{prefix}payments");
    let app = app_builder(&prefix)
        .subscribe(
            Subscription::new("orders.*", |raw: Vec<u8>| async move {
                if raw.starts_with(b"poison") {
                    return Err(std::io::Error::other("cannot handle"));
                }
                Ok(())
            })
            .with_name("orders")
            .on_error(ErrorPolicy::dead_letter("orders.dead")),
        )
        .build()
        .unwrap();
    app.initialize().await.unwrap();
    // The attacker can publish to a subscribed topic, headers included.
    app.raw_publish("orders.created", b"poison: pay me".to_vec())
        .header(DLQ_TOPIC, &payments)
        .header(DLQ_SUBSCRIPTION, "orders")
        .wait()
        .await
        .unwrap();
    assert_eq!(
        app.consume_for(1, Duration::from_secs(30)).await.unwrap(),
        1
    );
    assert_eq!(app.stats()["orders"].dead_lettered, 1);

    // Writers of the dead-letter stream itself: a record naming a topic its
    // subscription does not read, and an ambiguous one.
    app.raw_publish("orders.dead", b"forged".to_vec())
        .header(DLQ_TOPIC, &payments)
        .header(DLQ_SUBSCRIPTION, "orders")
        .header(DLQ_ATTEMPTS, "1")
        .wait()
        .await
        .unwrap();
    app.raw_publish("orders.dead", b"ambiguous".to_vec())
        .header(DLQ_TOPIC, format!("{prefix}orders.created"))
        .header(DLQ_TOPIC, &payments)
        .header(DLQ_SUBSCRIPTION, "orders")
        .wait()
        .await
        .unwrap();

    let replayed = app
        .replay_dead_letters("orders.dead", Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        replayed,
        Replayed {
            republished: 1,
            refused: 2
        }
    );
    app.finalize().await.unwrap();

    // The poison record went back where it came from, and nothing reached
    // the topic the headers named.
    let created = read_all(&format!("{prefix}orders.created"), Duration::from_secs(3));
    assert_eq!(
        created,
        [b"poison: pay me".to_vec(), b"poison: pay me".to_vec()]
    );
    assert!(read_all(&payments, Duration::from_secs(2)).is_empty());
}
