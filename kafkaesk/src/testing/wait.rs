//! Waiting until everything published has settled.
//!
//! The application's [journal](crate::observe::journal) hears of every message
//! its producers queue (the harness's publishes, what handlers publish,
//! dead letters) and of every record its consumers settle. Everything has
//! settled when no message waits for the broker's acknowledgement and every
//! stored message has been settled by each subscription that consumes it
//! (its streams match, and it consumes that partition). A handler queues
//! what it publishes before it returns, so before its record settles: what
//! a record sets off is in the journal by the time the record is settled,
//! and waiting covers chains of handlers too.
//!
//! The wait wakes on each journal entry (no polling) and ends with an
//! [`Error::NotSettled`] naming what is pending when the timeout passes or
//! the application's consumers stop.

use std::time::Duration;

use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::observe::journal::{Journal, JournalState};
use crate::subscription::{Router, Streams};

/// What each subscription consumes.
pub(super) struct Consumers {
    subscriptions: Vec<Consumes>,
    prefix: String,
}

struct Consumes {
    name: String,
    streams: Streams,
    partitions: Option<Vec<i32>>,
}

impl Consumers {
    pub(super) fn new(router: &Router, prefix: &str) -> Self {
        Consumers {
            subscriptions: router
                .subscriptions()
                .iter()
                .map(|s| Consumes {
                    name: s.name().to_owned(),
                    streams: s.streams().clone(),
                    partitions: s.partitions().map(<[i32]>::to_vec),
                })
                .collect(),
            prefix: prefix.to_owned(),
        }
    }

    /// The subscriptions that have yet to settle the stored message `index`,
    /// as `(subscription, stream)`.
    fn unsettled<'s>(
        &'s self,
        state: &'s JournalState,
        index: usize,
    ) -> impl Iterator<Item = (&'s str, &'s str)> + 's {
        let (topic, partition, offset) = &state.stored[index];
        let stream = topic.strip_prefix(self.prefix.as_str());
        self.subscriptions.iter().filter_map(move |consumes| {
            let stream = stream?;
            let consumed = consumes.streams.matches_topic(&self.prefix, topic)
                && consumes
                    .partitions
                    .as_ref()
                    .is_none_or(|chosen| chosen.contains(partition));
            let settled = state.index.contains(&(
                consumes.name.clone(),
                stream.to_owned(),
                *partition,
                *offset,
            ));
            (consumed && !settled).then_some((consumes.name.as_str(), stream))
        })
    }

    /// Moves `from` past the stored messages every consumer has settled, and
    /// says whether everything has settled.
    fn settled(&self, state: &JournalState, from: &mut usize) -> bool {
        while *from < state.stored.len() && self.unsettled(state, *from).next().is_none() {
            *from += 1;
        }
        *from == state.stored.len() && state.in_flight == 0
    }

    /// What is pending, from stored message `from` on, in words.
    fn pending(&self, state: &JournalState, from: usize) -> Vec<String> {
        let mut pending = Vec::new();
        if state.in_flight > 0 {
            pending.push(format!(
                "{} published message(s) not acknowledged by the broker",
                state.in_flight
            ));
        }
        for index in from..state.stored.len() {
            let (_, partition, offset) = &state.stored[index];
            for (subscription, stream) in self.unsettled(state, index) {
                pending.push(format!(
                    "{subscription} has not settled {stream}[{partition}]@{offset}"
                ));
            }
        }
        pending
    }
}

/// Waits until everything in `journal` has settled; see the [module docs](self).
pub(super) async fn until_settled(
    journal: &Journal,
    consumers: &Consumers,
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut changes = journal.changes();
    // Stored messages before this one are settled by every consumer.
    let mut from = 0;
    loop {
        // Marked seen before reading, so an entry made meanwhile wakes the wait.
        changes.borrow_and_update();
        // `None`: settled; `Some(Some(why))`: never will be, the consumers stopped.
        let unsettled = journal
            .read(|state| (!consumers.settled(state, &mut from)).then(|| state.run_ended.clone()));
        match unsettled {
            None => return Ok(()),
            Some(Some(why)) => return Err(not_settled(journal, consumers, from, why)),
            Some(None) => {}
        }
        // `Err` only if the sender is gone, and the journal holds it.
        if tokio::time::timeout_at(deadline, changes.changed())
            .await
            .is_err()
        {
            return Err(not_settled(
                journal,
                consumers,
                from,
                format!("within {timeout:?}"),
            ));
        }
    }
}

fn not_settled(journal: &Journal, consumers: &Consumers, from: usize, why: String) -> Error {
    let pending = journal.read(|state| consumers.pending(state, from));
    Error::NotSettled { why, pending }
}
