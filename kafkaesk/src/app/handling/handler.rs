//! Handlers: async functions whose parameters are [extractors](crate::handling::extract).
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
//! router.subscribe(Subscription::new("content.*", on_content).with_group("seen"));
//! ```

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::error::BoxError;
use crate::handling::{FromContext, FromMessage, MessageContext, Rejection};

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
    note = "the first parameter must implement kafkaesk::handling::FromMessage and the rest kafkaesk::handling::FromContext; #[kafkaesk::subscribe] names the parameter that does not"
)]
pub trait Handler<Args>: Clone + Send + Sync + 'static {
    /// Extracts the parameters and starts the handler. A [`Rejection`] means the
    /// record could not be decoded and the handler was not called.
    fn call(&self, ctx: MessageContext<'_>) -> Result<HandlerFuture, Rejection>;

    /// Extracts the parameters, calls the handler and polls it once, in
    /// `slot`'s memory when it holds some: a handler that finishes at once
    /// then costs no allocation.
    fn poll_once(
        &self,
        ctx: MessageContext<'_>,
        cx: &mut Context<'_>,
        slot: &mut FutureSlot,
    ) -> Result<FirstPoll, Rejection>;
}

/// How a handler's first poll ended.
pub enum FirstPoll {
    /// It finished.
    Ready(Result<(), BoxError>),
    /// It waits; poll the future on.
    Pending(HandlerFuture),
}

/// Memory for a handler's future, kept from one run to the next.
///
/// Most handlers finish at their first poll. Their futures are polled in
/// this memory and dropped there, so one allocation serves every run of a
/// batch instead of one a record. A future still pending takes the memory
/// with it, and the next run allocates anew.
#[derive(Default)]
pub struct FutureSlot(Option<Box<dyn Any + Send>>);

pin_project_lite::pin_project! {
    /// A handler's future, or nothing once it finished and was dropped.
    struct RunSlot<F> {
        #[pin]
        future: Option<F>,
    }
}

impl<F> Future for RunSlot<F>
where
    F: Future,
    F::Output: IntoHandlerResult,
{
    type Output = Result<(), BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().future.as_pin_mut() {
            Some(future) => future.poll(cx).map(IntoHandlerResult::into_handler_result),
            // Only a finished run empties the slot, and it is not polled after.
            None => Poll::Ready(Ok(())),
        }
    }
}

impl FutureSlot {
    /// Polls `future` once in the slot's memory.
    fn poll_once<F>(&mut self, future: F, cx: &mut Context<'_>) -> FirstPoll
    where
        F: Future + Send + 'static,
        F::Output: IntoHandlerResult,
    {
        let mut slot = match self.0.take().map(|spare| spare.downcast::<RunSlot<F>>()) {
            Some(Ok(spare)) => Box::into_pin(spare),
            _ => Box::pin(RunSlot { future: None }),
        };
        slot.as_mut().set(RunSlot {
            future: Some(future),
        });
        match slot.as_mut().poll(cx) {
            Poll::Ready(result) => {
                // Drops the finished future where it was pinned.
                slot.as_mut().set(RunSlot { future: None });
                // SAFETY: the slot is empty, so nothing pinned is left to
                // move; the next run pins a new future in the same memory.
                self.0 = Some(unsafe { Pin::into_inner_unchecked(slot) });
                FirstPoll::Ready(result)
            }
            Poll::Pending => FirstPoll::Pending(slot),
        }
    }
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

            #[allow(non_snake_case)]
            fn poll_once(
                &self,
                mut ctx: MessageContext<'_>,
                cx: &mut Context<'_>,
                slot: &mut FutureSlot,
            ) -> Result<FirstPoll, Rejection> {
                let message = M::from_message(&mut ctx)?;
                $(let $injected = $injected::from_context(&ctx)?;)*
                Ok(slot.poll_once((self)(message, $($injected,)*), cx))
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

/// A handler's methods, with its parameter types erased.
trait ErasedHandler: Send + Sync {
    fn call(&self, ctx: MessageContext<'_>) -> Result<HandlerFuture, Rejection>;

    fn poll_once(
        &self,
        ctx: MessageContext<'_>,
        cx: &mut Context<'_>,
        slot: &mut FutureSlot,
    ) -> Result<FirstPoll, Rejection>;
}

/// A handler with the tuple of its parameter types, which tells apart its
/// [`Handler`] implementations.
struct Typed<H, Args>(H, std::marker::PhantomData<fn() -> Args>);

impl<H: Handler<Args>, Args: 'static> ErasedHandler for Typed<H, Args> {
    fn call(&self, ctx: MessageContext<'_>) -> Result<HandlerFuture, Rejection> {
        self.0.call(ctx)
    }

    fn poll_once(
        &self,
        ctx: MessageContext<'_>,
        cx: &mut Context<'_>,
        slot: &mut FutureSlot,
    ) -> Result<FirstPoll, Rejection> {
        self.0.poll_once(ctx, cx, slot)
    }
}

/// A handler with its parameter types erased, as a subscription stores it.
#[derive(Clone)]
pub struct BoxedHandler(Arc<dyn ErasedHandler>);

impl BoxedHandler {
    /// Erases a handler's parameter types.
    pub fn new<H, Args>(handler: H) -> Self
    where
        H: Handler<Args>,
        Args: 'static,
    {
        BoxedHandler(Arc::new(Typed(handler, std::marker::PhantomData)))
    }

    /// Extracts the parameters and starts the handler.
    pub fn call(&self, ctx: MessageContext<'_>) -> Result<HandlerFuture, Rejection> {
        self.0.call(ctx)
    }

    /// Extracts the parameters, calls the handler and polls it once (see
    /// [`Handler::poll_once`]).
    pub fn poll_once(
        &self,
        ctx: MessageContext<'_>,
        cx: &mut Context<'_>,
        slot: &mut FutureSlot,
    ) -> Result<FirstPoll, Rejection> {
        self.0.poll_once(ctx, cx, slot)
    }
}

impl std::fmt::Debug for BoxedHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BoxedHandler")
    }
}

#[cfg(test)]
mod tests {
    use std::panic::AssertUnwindSafe;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn cx() -> Context<'static> {
        Context::from_waker(futures::task::noop_waker_ref())
    }

    /// The address of the slot's memory, if it holds some.
    fn memory(slot: &FutureSlot) -> Option<*const u8> {
        slot.0
            .as_deref()
            .map(|spare| spare as *const _ as *const u8)
    }

    /// Counts its drops, to see futures dropped when they finish.
    struct Dropped(Arc<AtomicUsize>);

    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn quick(drops: &Arc<AtomicUsize>, fail: bool) -> impl Future<Output = Result<(), BoxError>> {
        let guard = Dropped(drops.clone());
        async move {
            let _guard = guard;
            if fail {
                Err("failed".into())
            } else {
                Ok(())
            }
        }
    }

    #[test]
    fn handlers_that_finish_at_once_reuse_one_allocation_and_are_dropped() {
        let drops = Arc::new(AtomicUsize::new(0));
        let mut slot = FutureSlot::default();
        let mut cx = cx();
        assert!(matches!(
            slot.poll_once(quick(&drops, false), &mut cx),
            FirstPoll::Ready(Ok(()))
        ));
        let first = memory(&slot).expect("the memory is kept");
        assert_eq!(drops.load(Ordering::SeqCst), 1, "dropped once finished");
        for _ in 0..3 {
            let polled = slot.poll_once(quick(&drops, true), &mut cx);
            assert!(matches!(polled, FirstPoll::Ready(Err(e)) if e.to_string() == "failed"));
            assert_eq!(memory(&slot), Some(first), "the same memory");
        }
        assert_eq!(drops.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn a_pending_handler_takes_the_memory_and_finishes_when_polled_on() {
        let (tx, rx) = futures::channel::oneshot::channel::<()>();
        let mut slot = FutureSlot::default();
        let mut cx = cx();
        let drops = Arc::new(AtomicUsize::new(0));
        assert!(matches!(
            slot.poll_once(quick(&drops, false), &mut cx),
            FirstPoll::Ready(Ok(()))
        ));
        let waiting = async move {
            rx.await.map_err(|_| "sender dropped")?;
            Ok::<(), BoxError>(())
        };
        let FirstPoll::Pending(mut running) = slot.poll_once(waiting, &mut cx) else {
            panic!("the handler waits for its message");
        };
        assert!(memory(&slot).is_none(), "the pending future took it");
        assert!(running.as_mut().poll(&mut cx).is_pending());
        tx.send(()).expect("the handler listens");
        assert!(matches!(
            running.as_mut().poll(&mut cx),
            Poll::Ready(Ok(()))
        ));
        // A slot left with another type's memory allocates anew.
        assert!(matches!(
            slot.poll_once(quick(&drops, false), &mut cx),
            FirstPoll::Ready(Ok(()))
        ));
        assert!(memory(&slot).is_some());
    }

    #[test]
    fn a_panicking_handler_leaves_the_slot_usable() {
        let mut slot = FutureSlot::default();
        let mut cx = cx();
        let panicked = std::panic::catch_unwind(AssertUnwindSafe(|| {
            slot.poll_once(
                async {
                    panic!("handler bug");
                    #[allow(unreachable_code)]
                    Ok::<(), BoxError>(())
                },
                &mut cx,
            )
        }));
        assert!(panicked.is_err());
        assert!(memory(&slot).is_none(), "a panic gives nothing back");
        let drops = Arc::new(AtomicUsize::new(0));
        assert!(matches!(
            slot.poll_once(quick(&drops, false), &mut cx),
            FirstPoll::Ready(Ok(()))
        ));
    }
}
