//! The brokers tests run against: one shared by every test of the process,
//! started by the first test that asks and reused by the others, or one a
//! harness starts for itself.
//!
//! `#[tokio::test]` gives each test a runtime of its own and shuts it down
//! when the test ends, with every task spawned on it. A broker shared by
//! tests therefore cannot run on any test's runtime: it runs on a runtime
//! of its own, on a thread that lives as long as the process.

use std::net::SocketAddr;

use tokio::sync::OnceCell;

use crate::embedded::EmbeddedBroker;
use crate::error::{Error, Result};

/// Where the process's shared broker listens, once it was started.
static SHARED: OnceCell<SocketAddr> = OnceCell::const_new();

/// The broker a harness runs against.
pub(super) enum TestBroker {
    /// The process's shared broker, at this address.
    Shared(SocketAddr),
    /// A broker of the harness's own, stopped when the harness is dropped.
    Dedicated(EmbeddedBroker),
    /// Kafka brokers the harness was pointed at.
    External(Vec<String>),
}

impl TestBroker {
    /// The process's shared broker, started on first use. Tests that ask at
    /// the same time wait for the one start.
    pub(super) async fn shared() -> Result<Self> {
        let address = SHARED.get_or_try_init(start_shared).await?;
        Ok(TestBroker::Shared(*address))
    }

    /// A broker of its own, on the caller's runtime (which must be
    /// multi-threaded, as for [`EmbeddedBroker::start`]).
    pub(super) async fn dedicated() -> Result<Self> {
        let broker = EmbeddedBroker::start(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        Ok(TestBroker::Dedicated(broker))
    }

    /// Points `settings` at the broker, with an embedded one's fast client
    /// settings.
    pub(super) fn configure(&self, settings: &mut crate::Settings) {
        match self {
            TestBroker::External(servers) => settings.kafka_servers = servers.clone(),
            TestBroker::Dedicated(broker) => broker.configure(settings),
            TestBroker::Shared(address) => {
                settings.kafka_servers = vec![address.to_string()];
                for (key, value) in crate::embedded::CLIENT_SETTINGS {
                    settings
                        .kafka_settings
                        .entry((*key).to_owned())
                        .or_insert_with(|| (*value).to_owned());
                }
            }
        }
    }
}

/// Starts the shared broker on a thread and runtime of its own, and returns
/// its address once it accepts connections.
async fn start_shared() -> Result<SocketAddr> {
    let (started, address) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("kafkaesk-test-broker".to_owned())
        .spawn(move || {
            // Two workers: the broker serves every test of the process.
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("kafkaesk-test-broker")
                .enable_all()
                .build();
            let runtime = match runtime {
                Ok(runtime) => runtime,
                Err(err) => {
                    let _ = started.send(Err(Error::EmbeddedBroker(format!(
                        "cannot start a runtime for the shared test broker: {err}"
                    ))));
                    return;
                }
            };
            runtime.block_on(async move {
                match EmbeddedBroker::start(SocketAddr::from(([127, 0, 0, 1], 0))).await {
                    Ok(broker) => {
                        if started.send(Ok(broker.address())).is_ok() {
                            // Serves until the process exits.
                            std::future::pending::<()>().await;
                        }
                        drop(broker);
                    }
                    Err(err) => {
                        let _ = started.send(Err(err));
                    }
                }
            });
        })
        .map_err(|err| {
            Error::EmbeddedBroker(format!(
                "cannot start the shared test broker's thread: {err}"
            ))
        })?;
    address.await.map_err(|_| {
        Error::EmbeddedBroker("the shared test broker's thread ended before it started".to_owned())
    })?
}
