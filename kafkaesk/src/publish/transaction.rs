//! Publishing all or nothing: documented on [`Transaction`].

use std::time::Duration;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::kafka::clients::Connection;
use crate::kafka::producer::Producer;
use crate::publish::{Publish, Publisher, RawPublish};

/// How long a commit or an abort may wait for the coordinator.
const END_TIMEOUT: Duration = Duration::from_secs(60);

/// How many times a commit that failed in a retriable way is tried.
const COMMIT_ATTEMPTS: u32 = 5;

/// A transaction in progress.
///
/// Transactions: messages to one or more streams, published all or nothing.
///
/// [`Application::transaction`](crate::Application::transaction) begins a [`Transaction`]. What is published
/// through it is stored at once but becomes visible to read-committed
/// consumers (every kafkaesk subscription, and Kafka's default for most
/// clients) only when [`commit`](Transaction::commit) succeeds; after
/// [`abort`](Transaction::abort), a failed commit, or a crash, none of it
/// ever is. This is Message DB's `write_batch` and EventStore's multi-event
/// write, across streams.
///
/// ```no_run
/// # #[kafkaesk::schema("Order")]
/// # #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
/// # pub struct Order { pub id: u64 }
/// # #[kafkaesk::schema("Invoice")]
/// # #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
/// # pub struct Invoice { pub order: u64 }
/// # async fn demo(app: kafkaesk::Application) -> Result<(), kafkaesk::Error> {
/// let order = Order { id: 7 };
/// let tx = app.transaction().await?;
/// tx.publish("orders", &order).key("7").await?;
/// tx.publish("invoices", &Invoice { order: 7 }).key("7").await?;
/// tx.commit().await?; // both, or (with an error) neither
/// # Ok(()) }
/// ```
///
/// A transaction that is dropped without a commit is aborted, with a
/// warning. Messages in a transaction are acknowledged by every in-sync
/// replica and never duplicated (the producer is idempotent); a per-publish
/// [`ack_policy`](crate::publish::Publish::ack_policy) other than `All` is
/// refused.
///
/// # Exactly-once subscriptions
///
/// A subscription marked [`exactly_once`](crate::Subscription::exactly_once)
/// runs each batch of records in a transaction: what its handlers publish
/// through their [`Subscriber`](crate::Subscriber) (and what it
/// dead-letters) is committed together with the batch's offsets. A crash
/// anywhere leaves either both (the records are not consumed again) or
/// neither (they are, and their output is written anew): consumers reading
/// committed data see each result once. See [`Application::run`](crate::Application::run).
///
/// # Transactional ids
///
/// Each producer in a transaction has a transactional id, which the broker
/// uses to fence an older producer with the same id (a "zombie") and to
/// abort what it left open. kafkaesk names them `PREFIX-N` for transactions
/// and `PREFIX-SUBSCRIPTION` for exactly-once subscriptions, where `PREFIX`
/// is the [`transactional_id`](crate::ApplicationBuilder::transactional_id)
/// setting, by default made from the host, the process id and its start
/// time. Give every instance of a service a stable prefix of its own (its
/// pod name, say): a restarted instance then aborts at once what its crashed
/// predecessor left open, where otherwise read-committed consumers of those
/// partitions wait for the broker to time the transaction out
/// (`transaction.timeout.ms`, 60 s by default). Two running instances must
/// never share a prefix: they would fence each other.
#[must_use = "a transaction that is not committed is aborted"]
pub struct Transaction<'a> {
    publisher: Publisher<'a>,
    /// `None` once the transaction ended.
    producer: Option<Producer>,
}

impl std::fmt::Debug for Transaction<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("open", &self.producer.is_some())
            .finish_non_exhaustive()
    }
}

impl<'a> Transaction<'a> {
    /// Begins a transaction with an idle transactional producer, or a new one.
    pub(crate) async fn begin(publisher: Publisher<'a>) -> Result<Self> {
        let clients = publisher.connection.clients().await?;
        let producer = clients.transactional_producer().await?;
        begin_on(&producer)?;
        Ok(Transaction {
            publisher,
            producer: Some(producer),
        })
    }

    /// Publishes `data` to `stream` in the transaction; see
    /// [`Application::publish`](crate::Application::publish). Awaiting the handle waits until the broker
    /// stored the message, which stays invisible to read-committed consumers
    /// until the commit.
    pub fn publish<'t, T>(&'t self, stream: &'t str, data: &'t T) -> Publish<'t, T>
    where
        T: Serialize + schemars::JsonSchema + Sync + 'static,
    {
        self.publisher
            .within(self.producer.as_ref())
            .publish(stream, data)
    }

    /// Publishes bytes as they are to `stream` in the transaction; see
    /// [`Application::raw_publish`](crate::Application::raw_publish).
    pub fn raw_publish<'t>(&'t self, stream: &'t str, value: impl Into<Vec<u8>>) -> RawPublish<'t> {
        self.publisher
            .within(self.producer.as_ref())
            .raw(stream, value.into())
    }

    /// Commits: every message published in the transaction becomes visible
    /// at once. When anything in it failed (a delivery, the commit itself),
    /// the transaction is aborted instead and the error is
    /// [`Error::TransactionAborted`]: none of it is visible, ever.
    pub async fn commit(mut self) -> Result<()> {
        let producer = self.producer.take().ok_or(Error::Stopped)?;
        end(self.publisher.connection, producer, Ending::Commit).await
    }

    /// Aborts: nothing published in the transaction will be visible.
    pub async fn abort(mut self) -> Result<()> {
        let producer = self.producer.take().ok_or(Error::Stopped)?;
        end(self.publisher.connection, producer, Ending::Abort).await
    }
}

impl Drop for Transaction<'_> {
    /// Aborts, off the async threads when there are any; the producer is not
    /// reused.
    fn drop(&mut self) {
        let Some(producer) = self.producer.take() else {
            return;
        };
        tracing::warn!("transaction dropped without commit or abort; aborting it");
        let abort = move || {
            if let Err(err) = end_blocking(&producer, Ending::Abort) {
                tracing::warn!(error = %err, "aborting a dropped transaction failed");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(abort)),
            Err(_) => abort(),
        }
    }
}

/// Begins a transaction on `producer` (locally: the coordinator hears of it
/// with its first message).
pub(crate) fn begin_on(producer: &Producer) -> Result<()> {
    producer
        .begin_transaction()
        .map_err(|source| Error::transaction("begin", source))
}

/// How a transaction ends.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    Commit,
    Abort,
}

/// Commits or aborts the transaction open on `producer`, off the async
/// threads, and keeps the producer for the next transaction when it is still
/// usable.
async fn end(connection: &Connection, producer: Producer, ending: Ending) -> Result<()> {
    let ending_producer = producer.clone();
    let ended = tokio::task::spawn_blocking(move || end_blocking(&ending_producer, ending))
        .await
        .map_err(|_| Error::Stopped)?;
    let reusable = !matches!(
        &ended,
        Err(Error::Transaction { .. } | Error::TransactionsUnsupported { .. })
    );
    if reusable {
        if let Some(clients) = connection.clients_if_ready() {
            clients.reuse_transactional(producer);
        }
    }
    ended
}

/// Commits or aborts the transaction open on `producer`. A commit that
/// fails in a way that requires an abort is aborted, and reported as
/// [`Error::TransactionAborted`]; a retriable failure is retried.
pub(crate) fn end_blocking(producer: &Producer, ending: Ending) -> Result<()> {
    if ending == Ending::Abort {
        return producer
            .abort_transaction(END_TIMEOUT)
            .map_err(|source| Error::transaction("abort", source));
    }
    let mut attempts = 0;
    loop {
        attempts += 1;
        let source = match producer.commit_transaction(END_TIMEOUT) {
            Ok(()) => return Ok(()),
            // Neither retrying nor aborting can help.
            Err(source) if Error::lacks_transactions(&source) => {
                return Err(Error::transaction("commit", source));
            }
            Err(source) => source,
        };
        let kafka = match &source {
            rdkafka::error::KafkaError::Transaction(kafka) => Some(kafka),
            _ => None,
        };
        if attempts < COMMIT_ATTEMPTS && kafka.is_some_and(|k| k.is_retriable()) {
            continue;
        }
        if kafka.is_some_and(|k| k.txn_requires_abort()) {
            producer
                .abort_transaction(END_TIMEOUT)
                .map_err(|source| Error::transaction("abort", source))?;
            return Err(Error::TransactionAborted {
                reason: source.to_string(),
            });
        }
        return Err(Error::transaction("commit", source));
    }
}
