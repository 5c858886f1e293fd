//! What a subscription does when its handler fails: documented on
//! [`ErrorPolicy`].

use std::time::Duration;

/// The default cap on a retry's backoff.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Most retry streams (tiers) one policy may have.
pub const MAX_RETRY_STREAMS: usize = 10;

/// The longest delay of a retry stream: a record waits in its tier for at
/// most this long, so a retry stream's retention (7 days by default) must
/// be longer.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(24 * 3600);

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
/// # Retry streams
///
/// In-place retries hold the failed record's partition for their backoffs.
/// For a record that needs minutes (a downstream outage, a rate limit),
/// [`retry_in`](ErrorPolicy::retry_in) moves it to a *retry stream* per
/// delay instead, and the partition goes on at once:
///
/// ```
/// use std::time::Duration;
/// use kafkaesk::{ErrorPolicy, Subscription};
/// # async fn charge(raw: Vec<u8>) -> Result<(), std::io::Error> { Ok(()) }
/// let sub = Subscription::new("orders", charge).with_group("billing").on_error(
///     ErrorPolicy::retry_in([Duration::from_secs(10), Duration::from_secs(60), Duration::from_secs(600)])
///         .then_dead_letter("orders.dead"),
/// );
/// assert_eq!(sub.retry_streams(), ["billing.charge.retry-10s", "billing.charge.retry-1m", "billing.charge.retry-10m"]);
/// ```
///
/// With the macro: `#[subscribe("orders", group = "billing", retry_in = ["10s", "1m", "10m"], dead_letter = "orders.dead")]`.
///
/// - A failed record (after the in-place retries, if any) is written to the
///   first retry stream with [`kafkaesk-retry-*` headers](crate::retry_stream)
///   (due time, attempt, origin, error); its offset is committed only once
///   the broker acknowledged that write. The write does not hold the
///   partition: the records behind it are handled meanwhile, and only the
///   partition's commit waits for the acknowledgement. If the write fails
///   for good (the record is too large) the final action applies; if it
///   fails otherwise, the consumer stops and the record comes back. For an
///   [exactly-once](crate::Subscription::exactly_once) subscription the
///   write is in the transaction that commits the offset. What a handler
///   published before it failed is in that transaction too, so a handler of
///   an exactly-once subscription should fail before it publishes.
/// - The subscription consumes its retry streams too. A retry stream's
///   partition is paused until its first record is due, and resumed then:
///   one timer per partition, no sleep and no polling per record. A record
///   that fails again goes to the next retry stream, and after the last one
///   to the final action (a dead letter that names the record's origin, so
///   [`replay_dead_letters`](crate::Application::replay_dead_letters)
///   returns it to its source stream).
/// - Retry streams are named after the group, the subscription and the
///   delay (`{group}.{subscription}.retry-{delay}`, or `{group}.retry-{delay}`
///   when the subscription is named as its group, as it is by default),
///   under the topic prefix, and created when the subscription starts.
/// - **Order:** a retried record leaves its key's order: the records behind
///   it are handled first. So retry streams cannot be combined with
///   [`RecordOrder::Key`](crate::subscription::RecordOrder::Key) or
///   `Partition` (the subscription is refused with a clear error); use
///   in-place retries where order matters.
/// - They need a consumer group (their offsets are committed), so not with
///   [`without_group`](crate::Subscription::without_group) or chosen
///   partitions.
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
    /// The delays of the retry streams, in the order records go through them.
    later: Vec<Duration>,
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
            later: Vec::new(),
            action: FinalAction::Stop,
        }
    }

    /// Log, count, commit and go on.
    pub fn skip() -> Self {
        ErrorPolicy {
            retry: None,
            later: Vec::new(),
            action: FinalAction::Skip,
        }
    }

    /// Publish failed records to `stream`, then commit them.
    pub fn dead_letter(stream: impl Into<String>) -> Self {
        ErrorPolicy {
            retry: None,
            later: Vec::new(),
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
            later: Vec::new(),
            action: FinalAction::Stop,
        }
    }

    /// Retries in retry streams, one per delay, without blocking the
    /// partition; then the final action, which must be
    /// [`then_dead_letter`](Self::then_dead_letter) or
    /// [`then_skip`](Self::then_skip). See [Retry streams](#retry-streams).
    ///
    /// ```
    /// use std::time::Duration;
    /// let policy = kafkaesk::ErrorPolicy::retry_in([Duration::from_secs(10), Duration::from_secs(600)])
    ///     .then_dead_letter("orders.dead");
    /// assert_eq!(policy.retry_delays().len(), 2);
    /// ```
    pub fn retry_in(delays: impl IntoIterator<Item = Duration>) -> Self {
        ErrorPolicy::stop().then_retry_in(delays)
    }

    /// After the in-place retries, retries in retry streams, one per delay
    /// (see [`retry_in`](Self::retry_in)).
    pub fn then_retry_in(mut self, delays: impl IntoIterator<Item = Duration>) -> Self {
        self.later = delays.into_iter().collect();
        self
    }

    /// The delays of the retry streams, in the order a failed record goes
    /// through them.
    pub fn retry_delays(&self) -> &[Duration] {
        &self.later
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
        if self.later.is_empty() {
            return None;
        }
        if self.action == FinalAction::Stop {
            return Some(
                "retry streams end in a dead-letter stream or a skip (then_dead_letter or \
                 then_skip; dead_letter = \"...\" or on_error = \"skip\"): a consumer stopped by \
                 a record of a retry stream would stop on it again at every start",
            );
        }
        if self.later.len() > MAX_RETRY_STREAMS {
            return Some("at most 10 retry streams");
        }
        if self
            .later
            .iter()
            .any(|d| d.is_zero() || *d > MAX_RETRY_DELAY)
        {
            return Some("each retry stream's delay is more than zero and at most 24 hours");
        }
        let names: std::collections::HashSet<String> =
            self.later.iter().map(|d| delay_name(*d)).collect();
        if names.len() < self.later.len() {
            return Some("the retry streams' delays must differ (to the millisecond)");
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
        if !self.later.is_empty() {
            let delays: Vec<String> = self.later.iter().map(|d| delay_name(*d)).collect();
            write!(f, "retry in {}, then ", delays.join(", "))?;
        }
        match &self.action {
            FinalAction::Stop => f.write_str("stop"),
            FinalAction::Skip => f.write_str("skip"),
            FinalAction::DeadLetter(stream) => write!(f, "dead-letter to {stream}"),
        }
    }
}

/// A delay as it appears in a retry stream's name: `10s`, `1m`, `2h`, or
/// `500ms`.
///
/// ```
/// use std::time::Duration;
/// use kafkaesk::subscription::delay_name;
/// assert_eq!(delay_name(Duration::from_secs(600)), "10m");
/// assert_eq!(delay_name(Duration::from_millis(1500)), "1500ms");
/// ```
pub fn delay_name(delay: Duration) -> String {
    let millis = delay.as_millis();
    match millis {
        m if m % 3_600_000 == 0 && m > 0 => format!("{}h", m / 3_600_000),
        m if m % 60_000 == 0 && m > 0 => format!("{}m", m / 60_000),
        m if m % 1000 == 0 && m > 0 => format!("{}s", m / 1000),
        m => format!("{m}ms"),
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

    #[test]
    fn retry_streams_end_in_a_dead_letter_or_a_skip() {
        let secs = Duration::from_secs;
        let policy = ErrorPolicy::retry(2, Duration::from_millis(100))
            .then_retry_in([secs(10), secs(60)])
            .then_dead_letter("orders.dead");
        assert_eq!(policy.problem(), None);
        assert_eq!(
            policy.to_string(),
            "retry 2 x from 100ms, then retry in 10s, 1m, then dead-letter to orders.dead"
        );
        assert!(ErrorPolicy::retry_in([secs(10)]).problem().is_some());
        assert!(ErrorPolicy::retry_in([secs(10), secs(10)])
            .then_skip()
            .problem()
            .is_some());
        assert!(ErrorPolicy::retry_in([Duration::ZERO])
            .then_skip()
            .problem()
            .is_some());
        assert!(ErrorPolicy::retry_in((1..=11).map(secs))
            .then_skip()
            .problem()
            .is_some());
    }
}
