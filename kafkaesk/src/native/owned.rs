//! One owner for every librdkafka object this crate must destroy, so that
//! each type's destructor is named once and called once (rust-rdkafka's
//! `NativePtr<T: KafkaDrop>`, for the objects rdkafka does not wrap).

use std::ptr::NonNull;

use rdkafka::bindings as rd;

/// A librdkafka object type, and the one call that destroys it.
///
/// # Safety
/// `destroy` must be librdkafka's destructor for `Self`.
pub(crate) unsafe trait NativeDrop {
    /// Destroys the object.
    ///
    /// # Safety
    /// `ptr` is a live object of this type that the caller owns and never
    /// uses again.
    unsafe fn destroy(ptr: *mut Self);
}

/// A librdkafka object this crate owns: destroyed when dropped, unless
/// handed over to librdkafka with [`into_raw`](Owned::into_raw).
///
/// Neither `Send` nor `Sync`: the types that hold one say, each for its
/// object, why it may cross threads.
pub(crate) struct Owned<T: NativeDrop>(NonNull<T>);

impl<T: NativeDrop> Owned<T> {
    /// Takes ownership of `ptr`; `None` when it is null (librdkafka's
    /// constructors return null when they fail).
    ///
    /// # Safety
    /// A non-null `ptr` is a live object of type `T` that the caller owns
    /// and hands over: nothing else destroys it.
    pub(crate) unsafe fn from_ptr(ptr: *mut T) -> Option<Self> {
        NonNull::new(ptr).map(Owned)
    }

    /// As [`from_ptr`](Owned::from_ptr), for a pointer known not to be null.
    ///
    /// # Safety
    /// As for `from_ptr`.
    pub(crate) unsafe fn from_non_null(ptr: NonNull<T>) -> Self {
        Owned(ptr)
    }

    /// The object, for librdkafka calls; it stays owned by `self`.
    pub(crate) fn ptr(&self) -> *mut T {
        self.0.as_ptr()
    }

    /// Gives the object up to librdkafka, which took ownership of it.
    pub(crate) fn into_raw(self) -> *mut T {
        let ptr = self.0.as_ptr();
        std::mem::forget(self);
        ptr
    }
}

impl<T: NativeDrop> Drop for Owned<T> {
    fn drop(&mut self) {
        // SAFETY: `from_ptr`'s caller handed the object over to `self`,
        // which destroys it once, here, and never uses it again.
        unsafe { T::destroy(self.0.as_ptr()) }
    }
}

/// Pairs each librdkafka type with its destructor.
macro_rules! destroyed_by {
    ($($object:ty => $destroy:path,)*) => {$(
        // SAFETY: `$destroy` is librdkafka's destructor for `$object`.
        unsafe impl NativeDrop for $object {
            unsafe fn destroy(ptr: *mut Self) {
                // SAFETY: a live object the caller owns (the trait's promise).
                unsafe { $destroy(ptr) }
            }
        }
    )*};
}

destroyed_by! {
    rd::rd_kafka_queue_t => rd::rd_kafka_queue_destroy,
    rd::rd_kafka_message_t => rd::rd_kafka_message_destroy,
    rd::rd_kafka_topic_t => rd::rd_kafka_topic_destroy,
    rd::rd_kafka_headers_t => rd::rd_kafka_headers_destroy,
    rd::rd_kafka_event_t => rd::rd_kafka_event_destroy,
    rd::rd_kafka_AdminOptions_t => rd::rd_kafka_AdminOptions_destroy,
}
