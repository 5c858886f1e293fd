//! Running an application's consumers: [`Application::run`],
//! [`consume_for`](Application::consume_for) and
//! [`consume_forever`](Application::consume_forever), and the signals that
//! stop them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use super::{run_subscription, RunStop};
use crate::app::Application;
use crate::error::{Error, Result};

impl Application {
    /// Runs every subscription until `num_messages` records were consumed in
    /// total or `timeout` passed, and returns how many were consumed.
    ///
    /// A handler error stops all consumers and is returned.
    pub async fn consume_for(&self, num_messages: usize, timeout: Duration) -> Result<usize> {
        self.consume(Some(num_messages), Some(timeout)).await
    }

    /// Runs every subscription until [`stop`](Self::stop) is called or a handler fails.
    pub async fn consume_forever(&self) -> Result<()> {
        self.consume(None, None).await.map(|_| ())
    }

    /// Initializes, consumes until SIGINT, SIGTERM, [`stop`](Self::stop) or a
    /// handler error, then finalizes: in-flight handlers finish (or are cancelled
    /// after `shutdown_timeout`), offsets are committed and the producer is flushed.
    ///
    /// A signal or a stop that comes while the application is still
    /// initializing ends the run before any consumer starts.
    ///
    #[doc = include_str!("../../docs/consuming.md")]
    pub async fn run(&self) -> Result<()> {
        let _run = self.runs().begin();
        let signals = {
            let app = self.clone();
            let listening = listen_for_shutdown();
            tokio::spawn(async move {
                if listening.await {
                    tracing::info!("shutdown signal received; stopping");
                    app.stop();
                }
            })
        };
        let consumed = match self.initialize().await {
            Ok(()) if self.runs().is_stopping() => {
                tracing::info!("stopped while initializing; no consumer was started");
                Ok(0)
            }
            Ok(()) => self.consume(None, None).await,
            Err(err) => Err(err),
        };
        let finalized = self.finalize().await;
        signals.abort();
        consumed.and(finalized)
    }

    async fn consume(&self, limit: Option<usize>, timeout: Option<Duration>) -> Result<usize> {
        let _run = self.runs().begin();
        let mut app_stop = self.runs().subscribe();
        let subscriptions = self.router().subscriptions().to_vec();

        let run_stop = RunStop::new(self.runs().stopping_flag());
        let counter = Arc::new(AtomicUsize::new(0));
        let mut tasks = JoinSet::new();
        let mut names: HashMap<tokio::task::Id, String> = HashMap::new();
        for subscription in subscriptions {
            let name = subscription.name().to_owned();
            let control = run_stop.control(counter.clone(), limit);
            let task = tasks.spawn(run_subscription(self.clone(), subscription, control));
            names.insert(task.id(), name);
        }
        if tasks.is_empty() {
            tracing::warn!("no subscriptions to consume; waiting for a stop");
        }

        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let sleep_until_deadline = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(sleep_until_deadline);

        let mut first_error: Option<Error> = None;
        // A stop asked before this point (during start-up) counts too.
        let mut stopping = *app_stop.borrow_and_update();
        if stopping {
            run_stop.stop();
        }
        loop {
            if tasks.is_empty() && (stopping || limit.is_some() || first_error.is_some()) {
                break;
            }
            tokio::select! {
                joined = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    let failed = match joined {
                        Some(Ok((_, Ok(())))) | None => None,
                        Some(Ok((_, Err(err)))) => Some(err),
                        Some(Err(join_error)) => Some(Error::ConsumerCrashed {
                            subscription: names.get(&join_error.id()).cloned().unwrap_or_default(),
                            reason: join_error.to_string(),
                        }),
                    };
                    if let Some(err) = failed {
                        first_error.get_or_insert(err);
                        run_stop.stop();
                        stopping = true;
                    }
                }
                changed = app_stop.changed(), if !stopping => {
                    if changed.is_err() || *app_stop.borrow_and_update() {
                        run_stop.stop();
                        stopping = true;
                    }
                }
                () = &mut sleep_until_deadline, if !stopping => {
                    run_stop.stop();
                    stopping = true;
                }
            }
        }
        match first_error {
            Some(err) => Err(err),
            None => Ok(counter.load(Ordering::SeqCst)),
        }
    }
}

/// Starts listening for SIGINT and SIGTERM at once, and returns a future that
/// resolves `true` when one arrives (`false` if signals cannot be listened to).
fn listen_for_shutdown() -> impl std::future::Future<Output = bool> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        // Registered here, before the run initializes, so no signal is missed.
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            match (interrupt, terminate) {
                (Ok(mut interrupt), Ok(mut terminate)) => {
                    tokio::select! {
                        _ = interrupt.recv() => true,
                        _ = terminate.recv() => true,
                    }
                }
                _ => tokio::signal::ctrl_c().await.is_ok(),
            }
        }
    }
    #[cfg(not(unix))]
    {
        async { tokio::signal::ctrl_c().await.is_ok() }
    }
}
