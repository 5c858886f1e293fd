//! Records logged while the broker is unreachable wait in the queue and are
//! shipped once it answers.

use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use kafkaesk::logging::KafkaLayer;
use kafkaesk::Application;
use kafkaesk_tests::{read_all, require_broker, unique_prefix};
use serde_json::Value;
use tracing::Dispatch;
use tracing_subscriber::prelude::*;

/// A port that refuses connections until [`forward`] listens on it. Shared
/// with the other logging tests that need a broker coming back.
pub(crate) fn refused_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Forwards every connection on `port` to `broker`, from now on.
pub(crate) fn forward(port: u16, broker: String) {
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    forward_from(listener, broker);
}

fn forward_from(listener: TcpListener, broker: String) {
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let (Ok(client), Ok(server)) = (client, TcpStream::connect(&broker)) else {
                continue;
            };
            let (Ok(mut client_read), Ok(mut server_read)) =
                (client.try_clone(), server.try_clone())
            else {
                continue;
            };
            let (mut client_write, mut server_write) = (client, server);
            std::thread::spawn(move || std::io::copy(&mut client_read, &mut server_write));
            std::thread::spawn(move || std::io::copy(&mut server_read, &mut client_write));
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipping_resumes_when_the_broker_returns() {
    let broker = require_broker();
    let port = refused_port();
    let prefix = unique_prefix("log-resume");
    let app = Application::builder()
        .kafka_servers([format!("127.0.0.1:{port}")])
        .topic_prefix(&prefix)
        .build()
        .unwrap();
    let layer = KafkaLayer::new(&app, "logging.test").with_warnings_to(|_| {});
    let guard = layer.flush_guard();
    let dispatch = Dispatch::new(tracing_subscriber::registry().with(layer));
    let _default = tracing::dispatcher::set_default(&dispatch);

    for i in 0..10 {
        tracing::info!(i, "logged while the broker is down");
    }
    assert!(!guard.flush_async(Duration::from_secs(2)).await);
    let down = guard.stats();
    assert_eq!(
        (down.queued, down.shipped, down.pending()),
        (10, 0, 10),
        "{down:?}"
    );

    // The bootstrap address answers again; metadata then points at the broker.
    forward(port, broker);
    assert!(
        guard.flush_async(Duration::from_secs(90)).await,
        "{:?}",
        guard.stats()
    );
    drop(_default);
    let shipped: Vec<u64> = read_all(&format!("{prefix}logging.test"), Duration::from_secs(3))
        .iter()
        .map(|bytes| {
            serde_json::from_slice::<Value>(bytes).unwrap()["data"]["i"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(shipped, (0..10).collect::<Vec<_>>());
}
