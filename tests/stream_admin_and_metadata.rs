//! Streams can be created with options (partitions, compaction, retention by
//! bytes) and deleted; the cluster's metadata lists brokers, streams,
//! partitions and watermarks; a group's lag is read per partition.

use std::time::Duration;

use kafkaesk::admin::StreamOptions;
use kafkaesk::{Error, Subscription};
use kafkaesk_tests::{app_builder, topic_config, unique_prefix};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Balance {
    pub cents: i64,
}

impl kafkaesk::Schema for Balance {
    const ID: &'static str = "AdminBalance";
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_created_with_options_listed_lagged_and_deleted() {
    let prefix = unique_prefix("admin");
    let app = app_builder(&prefix)
        .subscribe(Subscription::new("balances", |_: Balance| async {}).with_name("projector"))
        .build()
        .unwrap();
    let topic = format!("{prefix}balances");

    let options = StreamOptions::new()
        .partitions(3)
        .compacted()
        .retention_bytes(1 << 20);
    app.create_stream("balances", options.clone())
        .await
        .unwrap();
    assert_eq!(
        topic_config(&topic, "cleanup.policy").await.as_deref(),
        Some("compact")
    );
    assert_eq!(
        topic_config(&topic, "retention.bytes").await.as_deref(),
        Some("1048576")
    );
    let configs = app.stream_configs(["balances"]).await.unwrap();
    assert_eq!(configs.len(), 1);
    assert_eq!(configs[0].topic, topic);
    assert_eq!(configs[0].cleanup_policy.as_deref(), Some("compact"));
    assert_eq!(configs[0].retention_bytes, Some(1 << 20));
    let missing = app.stream_configs(["no-such-stream"]).await;
    assert!(matches!(missing, Err(Error::Topic { .. })), "{missing:?}");
    let again = app.create_stream("balances", options).await;
    assert!(
        matches!(&again, Err(Error::Topic { reason, .. }) if reason.contains("already exists")),
        "{again:?}"
    );

    for cents in 0..5 {
        app.publish("balances", &Balance { cents })
            .key(format!("account-{cents}"))
            .wait()
            .await
            .unwrap();
    }
    let cluster = app.cluster_metadata().await.unwrap();
    assert!(!cluster.brokers.is_empty());
    // The controller is one of the brokers (DescribeCluster).
    let controller = cluster.controller.expect("the broker names its controller");
    assert!(
        cluster.brokers.iter().any(|b| b.id == controller),
        "{cluster:?}"
    );
    let stream = cluster
        .streams
        .iter()
        .find(|s| s.stream == "balances")
        .expect("the stream is listed");
    assert_eq!(stream.topic, topic);
    assert_eq!(
        stream.partitions.iter().map(|p| p.id).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    assert!(stream
        .partitions
        .iter()
        .all(|p| p.leader >= 0 && !p.replicas.is_empty()));
    let stored: i64 = stream.partitions.iter().map(|p| p.high - p.low).sum();
    assert_eq!(stored, 5);

    // Before the group reads: everything is lag. After: nothing, then the new.
    let lag: i64 = app
        .group_lag("projector", "balances")
        .await
        .unwrap()
        .iter()
        .map(|l| l.lag)
        .sum();
    assert_eq!(lag, 5);
    app.consume_for(5, Duration::from_secs(60)).await.unwrap();
    for cents in 5..7 {
        app.publish("balances", &Balance { cents })
            .key(format!("account-{cents}"))
            .wait()
            .await
            .unwrap();
    }
    let lags = app.group_lag("projector", "balances").await.unwrap();
    assert_eq!(lags.len(), 3);
    assert_eq!(lags.iter().map(|l| l.lag).sum::<i64>(), 2, "{lags:?}");
    assert!(lags.iter().any(|l| l.committed.is_some()), "{lags:?}");
    // The same, found from the group alone: every stream it committed on.
    let group = app.router().subscriptions()[0].group().unwrap().to_owned();
    let groups = app.consumer_groups().await.unwrap();
    assert!(groups.iter().any(|g| g.name == group), "{groups:?}");
    let streams = app.group_streams(&group).await.unwrap();
    assert_eq!(streams.len(), 1, "{streams:?}");
    assert_eq!(streams[0].stream, "balances");
    assert_eq!(streams[0].partitions, lags);
    assert_eq!(streams[0].total_lag(), 2);
    assert!(app
        .group_streams("a-group-that-never-committed")
        .await
        .unwrap()
        .is_empty());

    app.delete_stream("balances").await.unwrap();
    let cluster = app.cluster_metadata().await.unwrap();
    assert!(
        cluster.streams.iter().all(|s| s.stream != "balances"),
        "{:?}",
        cluster.streams
    );
}
