//! Which dead letters a look or a replay is about: by subscription, error
//! text and age, read from kafkaesk's headers.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::record::Record;

use super::{DLQ_ERROR, DLQ_SUBSCRIPTION};

/// Selects dead letters by their `kafkaesk-dlq-*` headers and timestamp.
/// An empty filter selects every record.
///
/// A header that appears more than once is matched by its first value, and
/// a value that is not UTF-8 by its text with invalid bytes replaced.
///
/// ```
/// use kafkaesk::dead_letter::DeadLetterFilter;
/// let filter = DeadLetterFilter::default()
///     .subscription("billing")
///     .error_contains("timed out");
/// assert!(!filter.is_empty());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadLetterFilter {
    subscription: Option<String>,
    error_contains: Option<String>,
    since: Option<SystemTime>,
}

impl DeadLetterFilter {
    /// Only records dead-lettered by the subscription named `name`.
    pub fn subscription(mut self, name: impl Into<String>) -> Self {
        self.subscription = Some(name.into());
        self
    }

    /// Only records whose error text contains `text` (case-sensitive).
    pub fn error_contains(mut self, text: impl Into<String>) -> Self {
        self.error_contains = Some(text.into());
        self
    }

    /// Only records with a timestamp at or after `time` (when they were
    /// dead-lettered); a record without a timestamp does not match.
    pub fn since(mut self, time: SystemTime) -> Self {
        self.since = Some(time);
        self
    }

    /// Whether the filter selects every record.
    pub fn is_empty(&self) -> bool {
        self.subscription.is_none() && self.error_contains.is_none() && self.since.is_none()
    }

    /// Whether `record` is selected.
    pub fn matches(&self, record: &Record) -> bool {
        let headers = record.headers();
        if let Some(name) = &self.subscription {
            if headers.get(DLQ_SUBSCRIPTION) != Some(name.as_bytes()) {
                return false;
            }
        }
        if let Some(text) = &self.error_contains {
            let found = headers
                .get(DLQ_ERROR)
                .is_some_and(|error| String::from_utf8_lossy(error).contains(text.as_str()));
            if !found {
                return false;
            }
        }
        if let Some(since) = self.since {
            let since_ms = match since.duration_since(UNIX_EPOCH) {
                Ok(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
                Err(before) => -i64::try_from(before.duration().as_millis()).unwrap_or(i64::MAX),
            };
            if record.timestamp().is_none_or(|ts| ts < since_ms) {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Headers;
    use std::time::Duration;

    fn dead_letter(subscription: &str, error: &[u8], timestamp: Option<i64>) -> Record {
        let headers = Headers::new()
            .with(DLQ_SUBSCRIPTION, subscription)
            .with(DLQ_ERROR, error);
        Record::new("dead", 0, 0, None, None, headers, timestamp)
    }

    #[test]
    fn every_condition_must_hold() {
        let record = dead_letter("billing", b"handler timed out", Some(5_000));
        assert!(DeadLetterFilter::default().matches(&record));
        assert!(DeadLetterFilter::default()
            .subscription("billing")
            .error_contains("timed")
            .since(UNIX_EPOCH + Duration::from_secs(5))
            .matches(&record));
        assert!(!DeadLetterFilter::default()
            .subscription("bill")
            .matches(&record));
        assert!(!DeadLetterFilter::default()
            .error_contains("Timed")
            .matches(&record));
        assert!(!DeadLetterFilter::default()
            .since(UNIX_EPOCH + Duration::from_millis(5_001))
            .matches(&record));
        let undated = dead_letter("billing", b"x", None);
        assert!(!DeadLetterFilter::default()
            .since(UNIX_EPOCH)
            .matches(&undated));
    }

    #[test]
    fn an_error_that_is_not_utf8_is_matched_by_its_readable_part() {
        let record = dead_letter("billing", b"bad \xff\xfe byte", None);
        assert!(DeadLetterFilter::default()
            .error_contains("byte")
            .matches(&record));
        let bare = Record::new("dead", 0, 0, None, None, Headers::new(), None);
        assert!(!DeadLetterFilter::default()
            .error_contains("")
            .matches(&bare));
    }
}
