//! Consumed Kafka records and message headers.

use crate::native::message as native;

use std::collections::HashSet;
use std::sync::Arc;

use rdkafka::message::BorrowedMessage;

use crate::error::RecordPosition;
impl crate::native::produce::HeaderList for Headers {
    fn count(&self) -> usize {
        self.len()
    }

    fn for_each(&self, add: crate::native::produce::AddHeader<'_>) {
        for header in self.iter() {
            add(header.key.as_bytes(), header.value.as_deref());
        }
    }
}

#[cfg(test)]
pub(crate) use native::header_list;
pub(crate) use native::{FetchedMessage, MessageView};

pub use crate::text::printable;

/// One Kafka header. Values are bytes and pass through untouched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Header name. A consumed key that is not UTF-8 (the protocol allows
    /// any bytes, and other clients may write them) is decoded lossily, as
    /// Java clients decode it.
    pub key: String,
    /// Header value; `None` is a null value, distinct from an empty one.
    pub value: Option<Vec<u8>>,
}

/// The ordered headers of a message. Kafka allows repeated keys; so does this type.
///
/// ```
/// let headers = kafkaesk::Headers::new().with("trace-id", "abc").with("slow", "true");
/// assert_eq!(headers.get("slow"), Some(&b"true"[..]));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<Header>);

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Headers(Vec::new())
    }

    /// Adds a header and returns the headers, for chaining.
    pub fn with(mut self, key: impl Into<String>, value: impl AsRef<[u8]>) -> Self {
        self.insert(key, value);
        self
    }

    /// Appends a header.
    pub fn insert(&mut self, key: impl Into<String>, value: impl AsRef<[u8]>) {
        self.0.push(Header {
            key: key.into(),
            value: Some(value.as_ref().to_vec()),
        });
    }

    /// Appends a header as it is, null value included.
    pub fn push(&mut self, header: Header) {
        self.0.push(header);
    }

    /// The value of the first header with this key.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|h| h.key == key)
            .and_then(|h| h.value.as_deref())
    }

    /// Every header, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Header> {
        self.0.iter()
    }

    /// Number of headers.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no headers.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether a header has this key.
    pub fn contains_key(&self, key: &str) -> bool {
        self.0.iter().any(|h| h.key == key)
    }

    /// Removes every header with this key.
    pub fn remove(&mut self, key: &str) {
        self.0.retain(|h| h.key != key);
    }

    /// Appends every header of `other`.
    pub fn extend(&mut self, other: &Headers) {
        self.0.extend(other.0.iter().cloned());
    }
}

impl<K: Into<String>, V: AsRef<[u8]>> FromIterator<(K, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut headers = Headers::new();
        for (k, v) in iter {
            headers.insert(k, v);
        }
        headers
    }
}

/// A consumed Kafka record: position, key, value, headers and timestamp.
///
/// Cheap to clone. Take it as a handler's first parameter to skip decoding, or
/// as a further parameter to see where the decoded data came from.
#[derive(Debug, Clone)]
pub struct Record(Arc<RecordInner>);

#[derive(Debug)]
struct RecordInner {
    topic: Arc<str>,
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Headers,
    timestamp: Option<i64>,
}

impl Record {
    /// Builds a record by hand, for tests of handlers.
    pub fn new(
        topic: impl Into<Arc<str>>,
        partition: i32,
        offset: i64,
        key: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
        headers: Headers,
        timestamp: Option<i64>,
    ) -> Self {
        Record(Arc::new(RecordInner {
            topic: topic.into(),
            partition,
            offset,
            key,
            value,
            headers,
            timestamp,
        }))
    }

    /// Copies a consumed message. `topic` is its topic name, shared between
    /// the records of a topic rather than copied for each.
    pub(crate) fn from_message(message: MessageView<'_>, topic: Arc<str>) -> Self {
        let headers = Headers(
            message
                .headers()
                .map(|(key, value)| Header {
                    key: key.into_owned(),
                    value: value.map(<[u8]>::to_vec),
                })
                .collect(),
        );
        Record::new(
            topic,
            message.partition(),
            message.offset(),
            message.key().map(<[u8]>::to_vec),
            message.payload().map(<[u8]>::to_vec),
            headers,
            message.timestamp(),
        )
    }

    /// Full topic name, prefix included.
    pub fn topic(&self) -> &str {
        &self.0.topic
    }

    /// The topic name, shared.
    pub(crate) fn shared_topic(&self) -> &Arc<str> {
        &self.0.topic
    }

    /// Partition number.
    pub fn partition(&self) -> i32 {
        self.0.partition
    }

    /// Offset within the partition.
    pub fn offset(&self) -> i64 {
        self.0.offset
    }

    /// Message key, if any.
    pub fn key(&self) -> Option<&[u8]> {
        self.0.key.as_deref()
    }

    /// Message value; empty for a null (tombstone) value.
    pub fn value(&self) -> &[u8] {
        self.0.value.as_deref().unwrap_or_default()
    }

    /// Message value as stored: `None` for a null (tombstone) value, which
    /// [`value`](Self::value) cannot tell from an empty one.
    pub fn payload(&self) -> Option<&[u8]> {
        self.0.value.as_deref()
    }

    /// Message headers.
    pub fn headers(&self) -> &Headers {
        &self.0.headers
    }

    /// Timestamp in milliseconds since the Unix epoch, when the broker gave one.
    pub fn timestamp(&self) -> Option<i64> {
        self.0.timestamp
    }

    /// Topic, partition and offset.
    pub fn position(&self) -> RecordPosition {
        RecordPosition {
            topic: self.0.topic.to_string(),
            partition: self.0.partition,
            offset: self.0.offset,
        }
    }
}

/// Names of the topics a consumer reads, shared by their records.
#[derive(Default)]
pub(crate) struct TopicNames {
    names: HashSet<Arc<str>>,
    /// The last name looked up: consecutive messages mostly share a topic.
    last: Option<Arc<str>>,
}

impl TopicNames {
    /// The shared name of the message's topic.
    pub(crate) fn topic(&mut self, message: MessageView<'_>) -> Arc<str> {
        // The name's bytes, compared with the last name's before any UTF-8
        // check: a match is the last name, already checked. About 130
        // instructions a message.
        let raw = message.topic_name();
        if let Some(last) = self
            .last
            .as_ref()
            .filter(|last| last.as_bytes() == raw.to_bytes())
        {
            return last.clone();
        }
        // librdkafka only creates topics whose names are UTF-8 (Kafka's legal
        // characters are ASCII); anything else is read lossily, not trusted.
        let name = String::from_utf8_lossy(raw.to_bytes());
        let topic = match self.names.get(&*name) {
            Some(topic) => topic.clone(),
            None => {
                let topic: Arc<str> = Arc::from(name);
                self.names.insert(topic.clone());
                topic
            }
        };
        self.last = Some(topic.clone());
        topic
    }

    /// The message, copied into an owned record.
    pub(crate) fn record(&mut self, message: &BorrowedMessage<'_>) -> Record {
        let message = MessageView::of(message);
        let topic = self.topic(message);
        Record::from_message(message, topic)
    }

    /// The message, kept as librdkafka delivered it until it must be owned.
    pub(crate) fn pending<'c>(&mut self, message: FetchedMessage<'c>) -> PendingRecord<'c> {
        let topic = self.topic(message.view());
        PendingRecord::Fetched { message, topic }
    }
}

/// A record waiting for its handler: a message as librdkafka delivered it,
/// or an owned [`Record`] (held back during retries, or built by hand).
///
/// Most records are only decoded, so copying each into a `Record` (value, key,
/// headers parsed by librdkafka) is left until something keeps it.
pub(crate) enum PendingRecord<'c> {
    Fetched {
        message: FetchedMessage<'c>,
        topic: Arc<str>,
    },
    Owned(Record),
}

impl<'c> PendingRecord<'c> {
    /// The topic name, shared.
    pub(crate) fn topic(&self) -> &Arc<str> {
        self.source().shared_topic()
    }

    pub(crate) fn partition(&self) -> i32 {
        self.source().partition()
    }

    pub(crate) fn offset(&self) -> i64 {
        self.source().offset()
    }

    /// Topic, partition and offset.
    pub(crate) fn position(&self) -> RecordPosition {
        RecordPosition {
            topic: self.topic().to_string(),
            partition: self.partition(),
            offset: self.offset(),
        }
    }

    /// The record, owned.
    pub(crate) fn to_record(&self) -> Record {
        self.source().to_record()
    }

    /// The record, owned; the librdkafka message is released.
    pub(crate) fn into_record(self) -> Record {
        match self {
            PendingRecord::Owned(record) => record,
            fetched => fetched.to_record(),
        }
    }

    /// A borrowed view of the record, as a handler's context reads it.
    pub(crate) fn source(&self) -> RecordSource<'_> {
        match self {
            PendingRecord::Fetched { message, topic } => RecordSource::Fetched {
                message: message.view(),
                topic,
            },
            PendingRecord::Owned(record) => RecordSource::Owned(record),
        }
    }
}

/// A borrowed view of a record: a message in librdkafka's buffers, or an
/// owned [`Record`]. Every read of a pending record or a handler's context
/// goes through it.
#[derive(Clone, Copy)]
pub(crate) enum RecordSource<'m> {
    Fetched {
        message: MessageView<'m>,
        topic: &'m Arc<str>,
    },
    Owned(&'m Record),
}

impl<'m> RecordSource<'m> {
    pub(crate) fn shared_topic(self) -> &'m Arc<str> {
        match self {
            RecordSource::Fetched { topic, .. } => topic,
            RecordSource::Owned(record) => record.shared_topic(),
        }
    }

    pub(crate) fn partition(self) -> i32 {
        match self {
            RecordSource::Fetched { message, .. } => message.partition(),
            RecordSource::Owned(record) => record.partition(),
        }
    }

    pub(crate) fn offset(self) -> i64 {
        match self {
            RecordSource::Fetched { message, .. } => message.offset(),
            RecordSource::Owned(record) => record.offset(),
        }
    }

    /// The value; empty for a null (tombstone) value.
    pub(crate) fn value(self) -> &'m [u8] {
        match self {
            RecordSource::Fetched { message, .. } => message.payload().unwrap_or_default(),
            RecordSource::Owned(record) => record.value(),
        }
    }

    /// Timestamp in milliseconds since the Unix epoch, when the broker gave one.
    pub(crate) fn timestamp(self) -> Option<i64> {
        match self {
            RecordSource::Fetched { message, .. } => message.timestamp(),
            RecordSource::Owned(record) => record.timestamp(),
        }
    }

    /// The value of the first header with this key.
    pub(crate) fn header(self, key: &str) -> Option<&'m [u8]> {
        match self {
            RecordSource::Fetched { message, .. } => message
                .headers()
                .find(|(name, _)| name == key)
                .and_then(|(_, value)| value),
            RecordSource::Owned(record) => record.headers().get(key),
        }
    }

    pub(crate) fn key(self) -> Option<&'m [u8]> {
        match self {
            RecordSource::Fetched { message, .. } => message.key(),
            RecordSource::Owned(record) => record.key(),
        }
    }

    /// The record, owned: a copy out of librdkafka's buffers, or a clone.
    pub(crate) fn to_record(self) -> Record {
        match self {
            RecordSource::Fetched { message, topic } => {
                Record::from_message(message, topic.clone())
            }
            RecordSource::Owned(record) => record.clone(),
        }
    }
}

#[cfg(test)]
mod tests;
