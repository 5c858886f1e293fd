//! Handlers and what they are given: the [`Handler`] trait over async
//! functions, the extractors a handler's parameters name ([`FromMessage`],
//! [`FromContext`]), the [`Subscriber`] a handler holds to publish, forward
//! and commit, and running a handler once on a record (timeout, panics,
//! outcome).
//!
//! A handler may take the [`Application`](crate::Application) that runs it,
//! so handling refers back to the application, which holds the
//! subscriptions, which hold handlers: the crate's one import circle, kept
//! inside `app/` (see [`app`](crate::app)).

pub(crate) mod extract;
pub(crate) mod handler;
pub(crate) mod invoke;
pub(crate) mod subscriber;

pub use extract::{FromContext, FromMessage, Json, MessageContext, Rejection, SchemaId};
pub use handler::{BoxedHandler, FirstPoll, FutureSlot, Handler, HandlerFuture, IntoHandlerResult};
pub(crate) use subscriber::HandlerScope;
pub use subscriber::Subscriber;
