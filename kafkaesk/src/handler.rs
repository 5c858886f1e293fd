//! Handlers: async functions whose parameters are [extractors](crate::extract).
//!
//! Any async function (or closure returning a future) whose first parameter
//! implements [`FromMessage`] and whose further parameters implement
//! [`FromContext`] is a [`Handler`]. It may return `()` or `Result<(), E>` for
//! any error `E` convertible into a boxed error (`kafkaesk::Error`,
//! `std::io::Error`, `anyhow::Error`, ...).
//!
//! ```
//! use kafkaesk::{Router, Subscription, Subscriber};
//!
//! #[kafkaesk::schema("Content")]
//! #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
//! pub struct Content { pub foo: String }
//!
//! async fn on_content(data: Content, subscriber: Subscriber) -> Result<(), kafkaesk::Error> {
//!     subscriber.publish("content.seen", &data).await?;
//!     Ok(())
//! }
//!
//! let mut router = Router::new();
//! router.subscribe(Subscription::new("content.*", on_content).group("seen"));
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::error::BoxError;
use crate::extract::{FromContext, FromMessage, MessageContext, Rejection};

/// The future a handler runs, boxed.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send + 'static>>;

/// What a handler may return: `()` or `Result<(), E>`.
#[diagnostic::on_unimplemented(
    message = "kafkaesk handlers must return `()` or `Result<(), E>`, not `{Self}`",
    label = "unsupported return type"
)]
pub trait IntoHandlerResult {
    /// Converts the return value into the outcome the consumer acts on.
    fn into_handler_result(self) -> Result<(), BoxError>;
}

impl IntoHandlerResult for () {
    fn into_handler_result(self) -> Result<(), BoxError> {
        Ok(())
    }
}

impl<E: Into<BoxError>> IntoHandlerResult for Result<(), E> {
    fn into_handler_result(self) -> Result<(), BoxError> {
        self.map_err(Into::into)
    }
}

/// An async function usable as a subscription handler.
///
/// `Args` is the tuple of its parameter types; it only exists to tell the
/// implementations apart and is inferred.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a kafkaesk handler",
    label = "not an async fn whose parameters are all extractors",
    note = "the first parameter must implement kafkaesk::extract::FromMessage and the rest kafkaesk::extract::FromContext; #[kafkaesk::subscribe] names the parameter that does not"
)]
pub trait Handler<Args>: Clone + Send + Sync + 'static {
    /// Extracts the parameters and starts the handler. A [`Rejection`] means the
    /// record could not be decoded and the handler was not called.
    fn call(&self, ctx: MessageContext<'_>) -> Result<HandlerFuture, Rejection>;
}

macro_rules! impl_handler {
    ($($injected:ident),*) => {
        impl<F, Fut, R, M, $($injected,)*> Handler<(M, $($injected,)*)> for F
        where
            F: Fn(M, $($injected,)*) -> Fut + Clone + Send + Sync + 'static,
            Fut: Future<Output = R> + Send + 'static,
            R: IntoHandlerResult,
            M: FromMessage,
            $($injected: FromContext,)*
        {
            #[allow(non_snake_case)]
            fn call(&self, mut ctx: MessageContext<'_>) -> Result<HandlerFuture, Rejection> {
                let message = M::from_message(&mut ctx)?;
                $(let $injected = $injected::from_context(&ctx)?;)*
                let future = (self)(message, $($injected,)*);
                Ok(Box::pin(async move { future.await.into_handler_result() }))
            }
        }
    };
}

impl_handler!();
impl_handler!(T1);
impl_handler!(T1, T2);
impl_handler!(T1, T2, T3);
impl_handler!(T1, T2, T3, T4);
impl_handler!(T1, T2, T3, T4, T5);
impl_handler!(T1, T2, T3, T4, T5, T6);

/// A handler's `call`, with its parameter types erased.
type ErasedCall = dyn Fn(MessageContext<'_>) -> Result<HandlerFuture, Rejection> + Send + Sync;

/// A handler with its parameter types erased, as a subscription stores it.
#[derive(Clone)]
pub struct BoxedHandler(Arc<ErasedCall>);

impl BoxedHandler {
    /// Erases a handler's parameter types.
    pub fn new<H, Args>(handler: H) -> Self
    where
        H: Handler<Args>,
        Args: 'static,
    {
        BoxedHandler(Arc::new(move |ctx| handler.call(ctx)))
    }

    /// Extracts the parameters and starts the handler.
    pub fn call(&self, ctx: MessageContext<'_>) -> Result<HandlerFuture, Rejection> {
        (self.0)(ctx)
    }
}

impl std::fmt::Debug for BoxedHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BoxedHandler")
    }
}
