//! Exactly-once subscriptions: each batch's output and offsets in one
//! transaction (consume, transform, produce).
//!
//! The subscription's producer has the transactional id
//! `PREFIX-SUBSCRIPTION` (see [`transaction`](crate::Transaction)). A
//! transaction is open whenever records are handled. Once a batch is settled
//! (each record handled, skipped or dead-lettered), its offsets are added
//! to the transaction with the consumer's group metadata, and the
//! transaction is committed; the next one begins at once. The broker then
//! fences a member of an older group generation that still tries to commit
//! (KIP-447), so a member that lost its partitions in a rebalance cannot
//! commit output for them.
//!
//! Anything that stops the subscription with records in an open
//! transaction (a failing handler under the stop policy, a failed commit,
//! a stop in the middle of a batch) aborts it: its output disappears and
//! its records, whose offsets were never committed, come back to be handled
//! again, and their output is written anew.

use rdkafka::consumer::Consumer;

use super::BatchConsumer;
use crate::app::Application;
use crate::error::{Error, Result};
use crate::kafka::producer::Producer;
use crate::publish::transaction::{begin_on, end_blocking, Ending};
use crate::subscription::Subscription;
use crate::sync::lock;

/// How long adding the offsets to a transaction may take.
const SEND_OFFSETS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The transactional producer of an exactly-once `subscription`, with its
/// first transaction begun; `None` for other subscriptions.
pub(super) async fn begin(
    app: &Application,
    subscription: &Subscription,
) -> Result<Option<Producer>> {
    if !subscription.is_exactly_once() {
        return Ok(None);
    }
    let clients = app.connection().clients().await?;
    let id = clients.transactional_id(subscription.name());
    let producer = clients.transactional_producer_with_id(&id).await?;
    begin_on(&producer)?;
    tracing::info!(
        subscription = %subscription.name(),
        transactional_id = %id,
        "exactly-once: each batch commits its output and offsets in one transaction"
    );
    Ok(Some(producer))
}

impl BatchConsumer {
    /// Commits the open transaction with the offsets of what was settled,
    /// and begins the next; nothing for a subscription that is not
    /// exactly-once. An error stops the subscription: the transaction was
    /// aborted, and its records come back.
    pub(super) async fn commit_transaction(&self) -> Result<()> {
        let Some(producer) = self.scope.transaction.clone() else {
            return Ok(());
        };
        let offsets = lock(&self.book).uncommitted(None);
        let group = self
            .consumer
            .group_metadata()
            .ok_or_else(|| Error::TransactionAborted {
                reason: "the consumer has no group metadata to commit offsets with".to_owned(),
            })?;
        let committed = tokio::task::spawn_blocking(move || {
            if offsets.count() > 0 {
                if let Err(source) =
                    producer.send_offsets_to_transaction(&offsets, &group, SEND_OFFSETS_TIMEOUT)
                {
                    let _ = end_blocking(&producer, Ending::Abort);
                    return Err(Error::TransactionAborted {
                        reason: format!("its offsets could not be added: {source}"),
                    });
                }
            }
            end_blocking(&producer, Ending::Commit)?;
            begin_on(&producer)?;
            Ok(offsets)
        })
        .await
        .map_err(|_| Error::Stopped)??;
        lock(&self.book).confirm(&committed);
        Ok(())
    }

    /// Aborts the open transaction, if any: what it holds is handled again.
    pub(super) async fn abort_transaction(&self) {
        let Some(producer) = self.scope.transaction.clone() else {
            return;
        };
        let aborted = tokio::task::spawn_blocking(move || end_blocking(&producer, Ending::Abort))
            .await
            .map_err(|_| Error::Stopped)
            .and_then(|aborted| aborted);
        if let Err(err) = aborted {
            tracing::warn!(
                subscription = %self.scope.name,
                error = %err,
                "could not abort the open transaction; the broker aborts it after \
                 `transaction.timeout.ms`"
            );
        }
    }
}
