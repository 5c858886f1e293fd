//! Where reading a stream starts: documented on [`Position`].

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};

use crate::error::{Error, Result};

/// Where reading starts.
///
/// Where reading a stream starts: Liftbridge's `start_at_*`, for readers
/// ([`Reader::from`](crate::reader::Reader::from)) and subscriptions
/// ([`Subscription::with_start_at`](crate::Subscription::with_start_at)) alike.
///
/// A position is the earliest record still stored, the latest (only what
/// comes next), an offset in every partition, a point in time, or a time
/// ago. Positions by time use the broker's offsets-for-times lookup: the
/// first record whose timestamp is at or after the time.
///
/// Positions parse from the text the `kafkaesk read --from` flag and the
/// `#[subscribe(start_at = "...")]` attribute take:
///
/// ```
/// use std::time::Duration;
/// use kafkaesk::subscription::Position;
///
/// assert_eq!("earliest".parse::<Position>()?, Position::Earliest);
/// assert_eq!("latest".parse::<Position>()?, Position::Latest);
/// assert_eq!("42".parse::<Position>()?, Position::Offset(42));
/// assert_eq!("-24h".parse::<Position>()?, Position::Since(Duration::from_secs(86_400)));
/// assert!(matches!("2026-12-03T10:00:00Z".parse::<Position>()?, Position::Timestamp(_)));
/// assert!("yesterday".parse::<Position>().is_err());
/// # Ok::<(), kafkaesk::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// The first record still stored. The default when reading forward.
    Earliest,
    /// The end: forward, only records published from now on; backward, the
    /// newest record first.
    Latest,
    /// This offset, in every partition read (forward: from it; backward: it
    /// and what is before it).
    Offset(i64),
    /// The first record at or after this time.
    Timestamp(SystemTime),
    /// The first record of the last `Duration` ("the last 24 hours").
    Since(Duration),
}

impl Position {
    /// The offset of `partition` of `topic` this position points at,
    /// between the partition's `low` and `high` watermarks.
    ///
    /// Blocks on the broker for positions by time.
    pub(crate) fn resolve<C: ConsumerContext>(
        self,
        consumer: &impl Consumer<C>,
        topic: &str,
        partition: i32,
        (low, high): (i64, i64),
        timeout: Duration,
    ) -> Result<i64> {
        let at_time = offsets_for_time(consumer, &[(topic, partition)], self.time(), timeout)?;
        Ok(self.offset_within(at_time.into_iter().flatten().next(), (low, high)))
    }

    /// The offset this position points at in a partition stored from `low`
    /// to `high`, given the first offset at or after the position's time
    /// (`at_time`, found by [`offsets_for_time`]) for positions by time.
    pub(crate) fn offset_within(self, at_time: Option<i64>, (low, high): (i64, i64)) -> i64 {
        let offset = match self {
            Position::Earliest => low,
            Position::Latest => high,
            Position::Offset(offset) => offset,
            // No record at or after that time: the end.
            Position::Timestamp(_) | Position::Since(_) => at_time.unwrap_or(high),
        };
        within(offset, (low, high))
    }

    /// The time a position by time stands for, as of now; `None` for the others.
    pub(crate) fn time(self) -> Option<SystemTime> {
        match self {
            Position::Timestamp(time) => Some(time),
            Position::Since(ago) => Some(
                SystemTime::now()
                    .checked_sub(ago)
                    .unwrap_or(SystemTime::UNIX_EPOCH),
            ),
            _ => None,
        }
    }
}

/// The first offset at or after `time` of each partition, in order; `None`
/// where no record is that recent. `None` for `time` gives all `None`.
pub(crate) fn offsets_for_time<C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    partitions: &[(&str, i32)],
    time: Option<SystemTime>,
    timeout: Duration,
) -> Result<Vec<Option<i64>>> {
    let Some(time) = time else {
        return Ok(vec![None; partitions.len()]);
    };
    let millis = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let mut query = TopicPartitionList::new();
    for (topic, partition) in partitions {
        query.add_partition_offset(topic, *partition, Offset::Offset(millis))?;
    }
    let found = consumer.offsets_for_times(query, timeout)?;
    Ok(partitions
        .iter()
        .map(|(topic, partition)| {
            match found.find_partition(topic, *partition).map(|e| e.offset()) {
                Some(Offset::Offset(offset)) => Some(offset),
                _ => None,
            }
        })
        .collect())
}

impl FromStr for Position {
    type Err = Error;

    /// `earliest`, `latest`, an offset (`42`), a UTC time in RFC 3339
    /// (`2026-12-03T10:00:00Z`, fractions allowed) or a time ago with a
    /// leading minus (`-24h`, `-15m`, `-1h30m`, `-90s`).
    fn from_str(text: &str) -> Result<Self> {
        let text = text.trim();
        let invalid = |why: String| Error::InvalidSetting {
            name: "position".to_owned(),
            reason: format!(
                "`{text}` is not a position{why}: use earliest, latest, an offset (42), \
                 a UTC time (2026-12-03T10:00:00Z) or a time ago (-24h, -15m)"
            ),
        };
        match text {
            "earliest" => return Ok(Position::Earliest),
            "latest" => return Ok(Position::Latest),
            _ => {}
        }
        if let Some(ago) = text.strip_prefix('-') {
            return humantime::parse_duration(ago)
                .map(Position::Since)
                .map_err(|err| invalid(format!(" ({err})")));
        }
        if text.bytes().all(|b| b.is_ascii_digit()) && !text.is_empty() {
            return text
                .parse()
                .map(Position::Offset)
                .map_err(|err| invalid(format!(" ({err})")));
        }
        humantime::parse_rfc3339_weak(text)
            .map(Position::Timestamp)
            .map_err(|err| invalid(format!(" ({err})")))
    }
}

impl fmt::Display for Position {
    /// The text [`FromStr`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Earliest => f.write_str("earliest"),
            Position::Latest => f.write_str("latest"),
            Position::Offset(offset) => write!(f, "{offset}"),
            Position::Timestamp(time) => write!(f, "{}", humantime::format_rfc3339_millis(*time)),
            Position::Since(ago) => write!(f, "-{}", humantime::format_duration(*ago)),
        }
    }
}

/// `offset` moved into a partition stored from `low` to `high`. Both come
/// from the broker, which may report `low` above `high` (a partition being
/// truncated, or a broker that is wrong): `low` then wins, where
/// `i64::clamp` would panic.
pub(crate) fn within(offset: i64, (low, high): (i64, i64)) -> i64 {
    offset.min(high).max(low)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broker_reporting_low_above_high_places_at_low_without_panicking() {
        // Watermarks come from the broker: a wrong or truncating one can
        // report the low one above the high one.
        for position in [
            Position::Earliest,
            Position::Latest,
            Position::Offset(7),
            Position::Since(Duration::from_secs(60)),
        ] {
            assert_eq!(position.offset_within(Some(12), (10, 5)), 10, "{position}");
        }
        assert_eq!(Position::Offset(i64::MAX).offset_within(None, (0, 5)), 5);
        assert_eq!(within(-3, (0, 5)), 0);
    }

    #[test]
    fn positions_round_trip_through_text() {
        let positions = [
            Position::Earliest,
            Position::Latest,
            Position::Offset(0),
            Position::Offset(1_234_567),
            Position::Since(Duration::from_secs(90 * 60)),
            Position::Timestamp(SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_756_000_123)),
        ];
        for position in positions {
            let text = position.to_string();
            assert_eq!(text.parse::<Position>().unwrap(), position, "{text}");
        }
    }

    #[test]
    fn times_are_utc_rfc3339() {
        let parsed: Position = "2026-12-03T10:00:00.5Z".parse().unwrap();
        let expected = SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_292_000_500);
        assert_eq!(parsed, Position::Timestamp(expected));
    }

    #[test]
    fn bad_positions_say_what_is_accepted() {
        for text in [
            "",
            "first",
            "-",
            "-tomorrow",
            "12abc",
            "99999999999999999999",
            "2026-13-01T00:00:00Z",
        ] {
            let err = text.parse::<Position>().unwrap_err().to_string();
            assert!(err.contains("earliest, latest"), "{text}: {err}");
        }
    }
}
