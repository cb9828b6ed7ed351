//! Data a page loads: `Load<T>`, a `LocalResource` whose reactive machinery is compiled once.
//!
//! A `LocalResource<T>` built from a closure compiles leptos's async-derived signal (its
//! constructor, its future's `poll`, its reads) once per value type and per closure: about
//! 4 KB of wasm for each of the UI's 38 resources. `Load<T>` keeps one
//! `LocalResource` of a type-erased value behind a boxed fetcher, so that machinery exists
//! once; what stays per type is boxing the fetcher's future and cloning the value out.

use std::any::Any;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::rc::Rc;

use leptos::prelude::*;

type Value = Rc<dyn Any>;
type Fetch = Rc<dyn Fn() -> Pin<Box<dyn Future<Output = Value>>>>;

/// The one instance of the resource machinery.
fn erased(fetch: Fetch) -> LocalResource<Value> {
    LocalResource::new(move || fetch())
}

/// A resource whose value is a `T`; reads are reactive and suspend a surrounding
/// `<Transition>` like a `LocalResource`'s.
pub struct Load<T> {
    inner: LocalResource<Value>,
    value: PhantomData<fn() -> T>,
}

impl<T> Clone for Load<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Load<T> {}

impl<T: Clone + 'static> Load<T> {
    /// Runs `fetch` now and again whenever a signal it read changes.
    pub fn new<F, Fut>(fetch: F) -> Self
    where
        F: Fn() -> Fut + 'static,
        Fut: Future<Output = T> + 'static,
    {
        let fetch: Fetch = Rc::new(move || {
            let fut = fetch();
            Box::pin(async move { Rc::new(fut.await) as Value })
        });
        Self {
            inner: erased(fetch),
            value: PhantomData,
        }
    }

    /// The value once loaded (`None` while the first load runs), tracked.
    pub fn get(&self) -> Option<T> {
        // The fetcher stores nothing but a `T`, so the downcast cannot fail.
        self.inner
            .get()
            .and_then(|v| v.downcast_ref::<T>().cloned())
    }
}
