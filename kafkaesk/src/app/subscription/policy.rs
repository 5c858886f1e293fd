//! What a subscription does when its handler fails: documented on
//! [`ErrorPolicy`].

use std::time::Duration;

/// The default cap on a retry's backoff.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What happens to a failed record once retries, if any, are used up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinalAction {
    /// Stop the consumer without committing the record.
    Stop,
    /// Log, count and commit the record, and go on.
    Skip,
    /// Publish the record to this dead-letter stream, then commit it.
    DeadLetter(String),
}

/// In-place retries of a failed handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    /// Extra runs of the handler after the first failure.
    pub attempts: u32,
    /// Wait before the first retry; doubled for each further one.
    pub backoff: Duration,
    /// Cap on the wait.
    pub max_backoff: Duration,
}

impl Retry {
    /// The wait before retry number `retry` (1-based).
    pub fn delay(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.saturating_sub(1));
        self.backoff
            .checked_mul(factor)
            .unwrap_or(self.max_backoff)
            .min(self.max_backoff)
    }
}

/// A subscription's error policy: optional retries, then a [`FinalAction`].
///
/// What a subscription does when its handler fails.
///
/// A handler *fails* when it returns an error, panics, or runs past the
/// subscription's timeout. Records that cannot be decoded are not failures:
/// they are always counted as unhandled and skipped.
///
/// An [`ErrorPolicy`] is an optional in-place retry followed by one final
/// action:
///
/// | final action | what happens to the failed record |
/// |---|---|
/// | [`stop`](ErrorPolicy::stop) (default) | the consumer stops without committing it; the application's run returns the error, and the record comes back after a restart (Python kafkaesk's behaviour) |
/// | [`skip`](ErrorPolicy::skip) | logged at error level, counted as `skipped`, committed; the consumer goes on |
/// | [`dead_letter`](ErrorPolicy::dead_letter) | the original record (value and key untouched, headers kept) is published to a dead-letter stream with [headers](crate::dead_letter#headers) describing the failure; its offset is committed only once the broker acknowledged that write. If the write fails, the consumer stops as with `stop` |
///
/// ```
/// use std::time::Duration;
/// use kafkaesk::{ErrorPolicy, Subscription};
///
/// async fn index(raw: Vec<u8>) -> Result<(), std::io::Error> { Ok(()) }
///
/// // Retry 3 times (after 100 ms, 200 ms, 400 ms), then dead-letter.
/// let sub = Subscription::new("content.*", index).on_error(
///     ErrorPolicy::retry(3, Duration::from_millis(100)).then_dead_letter("content.dead"),
/// );
/// ```
///
/// With the macro: `#[subscribe("content.*", retry = 3, backoff = 0.1, dead_letter = "content.dead")]`,
/// or `on_error = "skip"`.
///
/// # Retries
///
/// A retry runs the handler again on the same record, in place, after an
/// exponential backoff (`backoff`, doubled each attempt, capped at
/// [`max_backoff`](ErrorPolicy::max_backoff), 30 s by default).
///
/// Retries hold back only the failed record's partition. The consumer pauses
/// that partition and retries in the background; records of the partition
/// fetched meanwhile wait, and run once the retries end, so each partition is
/// still handled in order and nothing past the failed record is committed
/// before it is settled. The subscription's other partitions are consumed
/// as usual during the backoffs. Because the consumer keeps polling, long
/// retries do not run into `max.poll.interval.ms`.
///
/// If the partition is revoked in a rebalance during the retries, they are
/// abandoned: the partition's new owner consumes the record again from the
/// last commit. If the application stops during the retries, the record and
/// its partition's later records stay uncommitted and are consumed again
/// after a restart.
///
/// # Dead letters
///
/// What a dead-lettered record carries, and how
/// [`Application::replay_dead_letters`](crate::Application::replay_dead_letters)
/// puts it back, is in [`dead_letter`](crate::dead_letter). This module only
/// decides; it does no I/O.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorPolicy {
    retry: Option<Retry>,
    action: FinalAction,
}

impl Default for ErrorPolicy {
    fn default() -> Self {
        ErrorPolicy::stop()
    }
}

impl ErrorPolicy {
    /// Stop the consumer without committing (the default).
    pub fn stop() -> Self {
        ErrorPolicy {
            retry: None,
            action: FinalAction::Stop,
        }
    }

    /// Log, count, commit and go on.
    pub fn skip() -> Self {
        ErrorPolicy {
            retry: None,
            action: FinalAction::Skip,
        }
    }

    /// Publish failed records to `stream`, then commit them.
    pub fn dead_letter(stream: impl Into<String>) -> Self {
        ErrorPolicy {
            retry: None,
            action: FinalAction::DeadLetter(stream.into()),
        }
    }

    /// Retry `attempts` times with exponential backoff starting at `backoff`,
    /// then stop. Chain [`then_skip`](Self::then_skip) or
    /// [`then_dead_letter`](Self::then_dead_letter) to change what follows.
    pub fn retry(attempts: u32, backoff: Duration) -> Self {
        ErrorPolicy {
            retry: Some(Retry {
                attempts,
                backoff,
                max_backoff: DEFAULT_MAX_BACKOFF.max(backoff),
            }),
            action: FinalAction::Stop,
        }
    }

    /// Caps the retry backoff (30 s by default).
    pub fn max_backoff(mut self, cap: Duration) -> Self {
        if let Some(retry) = &mut self.retry {
            retry.max_backoff = cap;
        }
        self
    }

    /// After the retries, stop (the default).
    pub fn then_stop(mut self) -> Self {
        self.action = FinalAction::Stop;
        self
    }

    /// After the retries, skip.
    pub fn then_skip(mut self) -> Self {
        self.action = FinalAction::Skip;
        self
    }

    /// After the retries, dead-letter to `stream`.
    pub fn then_dead_letter(mut self, stream: impl Into<String>) -> Self {
        self.action = FinalAction::DeadLetter(stream.into());
        self
    }

    /// The retries, if any.
    pub fn retries(&self) -> Option<&Retry> {
        self.retry.as_ref().filter(|r| r.attempts > 0)
    }

    /// What happens once retries are used up.
    pub fn final_action(&self) -> &FinalAction {
        &self.action
    }

    /// How long to wait before running the handler again after its `runs`-th
    /// run failed, or `None` once the retries are used up.
    ///
    /// ```
    /// use std::time::Duration;
    /// let policy = kafkaesk::ErrorPolicy::retry(2, Duration::from_millis(100));
    /// assert_eq!(policy.retry_after(1), Some(Duration::from_millis(100)));
    /// assert_eq!(policy.retry_after(2), Some(Duration::from_millis(200)));
    /// assert_eq!(policy.retry_after(3), None);
    /// ```
    pub fn retry_after(&self, runs: u32) -> Option<Duration> {
        let retry = self.retries()?;
        (runs <= retry.attempts).then(|| retry.delay(runs))
    }

    /// A problem that makes the policy unusable, if any.
    pub(crate) fn problem(&self) -> Option<&'static str> {
        if matches!(&self.action, FinalAction::DeadLetter(s) if s.is_empty()) {
            return Some("the dead-letter stream is empty");
        }
        None
    }
}

impl std::fmt::Display for ErrorPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(retry) = self.retries() {
            write!(
                f,
                "retry {} x from {:?}, then ",
                retry.attempts, retry.backoff
            )?;
        }
        match &self.action {
            FinalAction::Stop => f.write_str("stop"),
            FinalAction::Skip => f.write_str("skip"),
            FinalAction::DeadLetter(stream) => write!(f, "dead-letter to {stream}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let policy = ErrorPolicy::retry(10, Duration::from_millis(100))
            .max_backoff(Duration::from_millis(500))
            .then_skip();
        let retry = policy.retries().unwrap();
        let delays: Vec<u128> = (1..=5).map(|n| retry.delay(n).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 500, 500]);
        assert_eq!(retry.delay(u32::MAX), Duration::from_millis(500));
        assert_eq!(policy.final_action(), &FinalAction::Skip);
    }

    #[test]
    fn policies_compose_and_display() {
        let policy =
            ErrorPolicy::retry(3, Duration::from_millis(100)).then_dead_letter("orders.dead");
        assert_eq!(
            policy.to_string(),
            "retry 3 x from 100ms, then dead-letter to orders.dead"
        );
        assert_eq!(ErrorPolicy::default(), ErrorPolicy::stop());
        assert!(ErrorPolicy::retry(0, Duration::ZERO).retries().is_none());
        assert!(ErrorPolicy::dead_letter("").problem().is_some());
    }
}
