//! The JSON API's routes and their OpenAPI document from one list of handlers; the document is
//! built when it is first asked for, not at every start.
//!
//! `utoipa_axum::routes!` builds each operation's documentation (its schemas, parameters and
//! responses) while it routes the handler, so the gateway used to build the whole document
//! when it started: about 1.8 MB of code run once and kept resident, and about 5 MB of
//! allocations freed again (docs/PERFORMANCE.md). [`routes!`](crate::routes) here routes each
//! handler from its documented path and methods alone, and keeps, for the group, a function
//! that runs `utoipa_axum::routes!` on the same handlers; [`ApiDocs::build`] runs them. Both
//! come from one macro call, so the router and the document cannot drift (and
//! `tests/api/openapi.rs` checks that each documented operation is routed).

use std::sync::Arc;

use axum::Router;
use axum::routing::MethodRouter;
use utoipa::OpenApi as _;
use utoipa::openapi::{Components, OpenApi};
use utoipa_axum::router::UtoipaMethodRouter;

use crate::state::AppState;

/// Builds one group's documentation (and a throwaway router) with `utoipa_axum::routes!`.
pub type DocFn = fn() -> UtoipaMethodRouter<AppState>;

/// One [`routes!`](crate::routes) group: its handlers routed on their documented paths, and
/// the function that documents them. Made only by the macro.
#[doc(hidden)]
pub struct Routes {
    pub(crate) routed: Vec<(String, MethodRouter<AppState>)>,
    pub(crate) doc: DocFn,
}

/// The JSON API under construction: the axum router, and the documentation still to build.
#[derive(Default)]
pub struct ApiRouter {
    router: Router<AppState>,
    docs: Vec<DocFn>,
}

impl ApiRouter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a [`routes!`](crate::routes) group. Handlers on a path already routed join its
    /// methods (axum merges them; the same method twice panics, as with utoipa's router).
    pub fn routes(mut self, routes: Routes) -> Self {
        for (path, method_router) in routes.routed {
            let path = if path.is_empty() { "/" } else { &path };
            self.router = self.router.route(path, method_router);
        }
        self.docs.push(routes.doc);
        self
    }

    pub fn merge(mut self, other: ApiRouter) -> Self {
        self.router = self.router.merge(other.router);
        self.docs.extend(other.docs);
        self
    }

    /// The router to serve, and what its document is built from.
    pub fn split(self) -> (Router<AppState>, ApiDocs) {
        (self.router, ApiDocs(self.docs.into()))
    }
}

/// What the OpenAPI document is built from (cheap to clone).
#[derive(Clone)]
pub struct ApiDocs(Arc<[DocFn]>);

impl ApiDocs {
    /// The complete document ([`super::complete`] applied). Only the documentation of each
    /// group is used (as `OpenApiRouter::routes` merges it), not its router: nothing here
    /// routes, so nothing here can panic on a route.
    pub fn build(&self) -> OpenApi {
        let mut openapi = super::ApiDoc::openapi();
        for doc in self.0.iter() {
            let (schemas, paths, _) = doc();
            for (path, item) in paths.paths {
                match openapi.paths.paths.get_mut(&path) {
                    Some(existing) => existing.merge_operations(item),
                    None => {
                        openapi.paths.paths.insert(path, item);
                    }
                }
            }
            openapi
                .components
                .get_or_insert_with(Components::new)
                .schemas
                .extend(schemas);
        }
        super::complete(&mut openapi);
        openapi
    }
}

/// Routes handlers annotated with `#[utoipa::path]`, like `utoipa_axum::routes!`, but
/// documents them only when [`ApiDocs::build`] runs (see the module's documentation).
#[macro_export]
macro_rules! routes {
    ( $( $handler:path ),+ $(,)? ) => {{
        #[allow(unused_imports)]
        use ::utoipa_axum::PathItemExt as _;
        let mut routed = ::std::vec::Vec::new();
        $(
            // `paste!` hands the handler's path on as plain tokens, which utoipa's macro
            // needs to name the handler's `__path_` type (as its own `routes!` does).
            let (path, methods): (::std::string::String, _) = ::utoipa_axum::paste! {(
                ::utoipa_axum::routes!(@path [path()] of $handler),
                ::utoipa_axum::routes!(@path [methods()] of $handler),
            )};
            let method_router = methods.iter().fold(
                ::axum::routing::MethodRouter::new(),
                |router, method| router.on(method.to_method_filter(), $handler),
            );
            routed.push((path, method_router));
        )+
        $crate::openapi::router::Routes {
            routed,
            doc: || ::utoipa_axum::routes!( $( $handler ),+ ),
        }
    }};
}
