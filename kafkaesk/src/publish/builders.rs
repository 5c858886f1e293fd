//! The publish builders: [`Publish`] for typed messages and [`RawPublish`]
//! for bytes, with every option defined once (`builder_methods!`).

use std::future::IntoFuture;

use serde::Serialize;

use super::handle::{Delivery, PublishFuture, PublishHandle};
use super::send::{send_message, Destination, Options, Outgoing};
use super::Publisher;
use crate::error::Result;
use crate::kafka::clients::Connection;
use crate::observe::propagation;
use crate::record::Headers;

/// A typed publish being prepared: add a key or headers, then await it.
#[must_use = "nothing is published until the builder is awaited"]
pub struct Publish<'a, T: ?Sized> {
    pub(super) publisher: Publisher<'a>,
    pub(super) stream: &'a str,
    pub(super) data: &'a T,
    // Set through `builder_methods`, by the test harness's builder too.
    pub(crate) key: Option<Vec<u8>>,
    pub(crate) headers: Headers,
    pub(crate) options: Options,
}

/// Builder methods of every publish builder (the typed and the raw one, and
/// the test harness's): the key and headers, where the message goes, what
/// acknowledges it, how long to wait. One definition, so that an option
/// added here reaches every builder.
macro_rules! builder_methods {
    (options: $($options:ident).+; key: $($key:ident).+; headers: $($headers:ident).+) => {
        /// Sets the message key, which picks the partition.
        pub fn key(mut self, key: impl AsRef<[u8]>) -> Self {
            self.$($key).+ = Some(key.as_ref().to_vec());
            self
        }

        /// Adds a header.
        pub fn header(mut self, key: impl Into<String>, value: impl AsRef<[u8]>) -> Self {
            self.$($headers).+.insert(key, value);
            self
        }

        /// Adds headers.
        pub fn headers(mut self, headers: &$crate::record::Headers) -> Self {
            self.$($headers).+.extend(headers);
            self
        }

        /// Sends to this partition, whatever the key and the partitioner. A
        /// partition the topic does not have fails the publish.
        pub fn partition(mut self, partition: i32) -> Self {
            self.$($options).+.partition = Some(partition);
            self
        }

        /// Picks the partition with `partitioner` instead of by key (see
        /// [`Partitioner`](crate::publish::Partitioner)).
        pub fn partitioner(mut self, partitioner: $crate::publish::Partitioner) -> Self {
            self.$($options).+.partitioner = Some(partitioner);
            self
        }

        /// Waits for this acknowledgement instead of the application's
        /// [`ack_policy`](crate::Settings::ack_policy).
        pub fn ack_policy(mut self, acks: $crate::settings::AckPolicy) -> Self {
            self.$($options).+.acks = Some(acks);
            self
        }

        /// Writes only if `partition`'s last message is at `offset` (`-1`:
        /// the partition holds none); otherwise nothing is written and the
        /// publish fails with [`Error::ExpectedOffset`](crate::Error::ExpectedOffset), which carries the
        /// offset it is at. The check and the write are one transaction,
        /// fenced against other writers.
        ///
        #[doc = include_str!("../../docs/expected_offset.md")]
        ///
        /// ```no_run
        /// # #[kafkaesk::schema("Content")]
        /// # #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
        /// # pub struct ContentMessage { pub foo: String }
        /// # async fn demo(app: kafkaesk::Application) -> Result<(), kafkaesk::Error> {
        /// let first = ContentMessage { foo: "created".into() };
        /// let written = app.publish("doc-42", &first).expected_offset(0, -1).wait().await?;
        /// let next = ContentMessage { foo: "edited".into() };
        /// match app.publish("doc-42", &next).expected_offset(0, written.offset).wait().await {
        ///     Ok(_) => {}
        ///     Err(kafkaesk::Error::ExpectedOffset { actual, .. }) => {
        ///         println!("someone wrote first, at {actual}: read again and retry");
        ///     }
        ///     Err(err) => return Err(err),
        /// }
        /// # Ok(()) }
        /// ```
        pub fn expected_offset(mut self, partition: i32, offset: i64) -> Self {
            self.$($options).+.expected = Some((partition, offset));
            self
        }

        /// Waits at most this long for the acknowledgement, then fails with
        /// [`Error::DeliveryTimeout`](crate::Error::DeliveryTimeout). The message is not recalled: it may
        /// still be stored, until librdkafka's `message.timeout.ms` (5
        /// minutes by default) gives up on it.
        pub fn timeout(mut self, timeout: ::std::time::Duration) -> Self {
            self.$($options).+.timeout = Some(timeout);
            self
        }
    };
}
// For the test harness's builder.
#[cfg(feature = "testing")]
pub(crate) use builder_methods;

impl<'a, T> Publish<'a, T>
where
    T: Serialize + schemars::JsonSchema + Sync + 'static,
{
    builder_methods!(options: options; key: key; headers: headers);

    /// Publishes and waits for the broker's acknowledgement.
    pub async fn wait(self) -> Result<Delivery> {
        self.await?.await
    }
}

impl<'a, T> IntoFuture for Publish<'a, T>
where
    T: Serialize + schemars::JsonSchema + Sync + 'static,
{
    type Output = Result<PublishHandle>;
    type IntoFuture = PublishFuture<'a>;

    fn into_future(mut self) -> PublishFuture<'a> {
        propagation::inject(&mut self.headers);
        let encoded = self
            .publisher
            .schemas
            .of::<T>()
            .and_then(|schema| Ok((schema.encode(self.data)?, schema.retention())));
        match encoded {
            Ok((payload, retention)) => send_message(
                self.publisher.connection,
                Destination::Stream(self.stream),
                retention,
                Outgoing {
                    payload,
                    key: self.key,
                    headers: self.headers,
                    options: self.options,
                    via: self.publisher.via.cloned(),
                },
            ),
            Err(err) => PublishFuture::done(Err(err)),
        }
    }
}

/// A raw publish being prepared: bytes as they are, no envelope, no validation.
#[must_use = "nothing is published until the builder is awaited"]
pub struct RawPublish<'a> {
    connection: &'a Connection,
    destination: Destination<'a>,
    message: Outgoing,
}

impl<'a> RawPublish<'a> {
    pub(super) fn new(
        publisher: Publisher<'a>,
        destination: Destination<'a>,
        value: Vec<u8>,
    ) -> Self {
        RawPublish {
            connection: publisher.connection,
            destination,
            message: Outgoing {
                payload: value,
                key: None,
                headers: Headers::new(),
                options: Options::default(),
                via: publisher.via.cloned(),
            },
        }
    }

    builder_methods!(options: message.options; key: message.key; headers: message.headers);

    /// Sets the key from an optional value, as a forwarded record carries it.
    pub fn maybe_key(mut self, key: Option<&[u8]>) -> Self {
        self.message.key = key.map(<[u8]>::to_vec);
        self
    }

    /// Publishes and waits for the broker's acknowledgement.
    pub async fn wait(self) -> Result<Delivery> {
        self.await?.await
    }
}

impl<'a> IntoFuture for RawPublish<'a> {
    type Output = Result<PublishHandle>;
    type IntoFuture = PublishFuture<'a>;

    fn into_future(mut self) -> PublishFuture<'a> {
        propagation::inject(&mut self.message.headers);
        send_message(self.connection, self.destination, None, self.message)
    }
}
