//! Application assembly: the router with its middleware, and the server loop with graceful
//! shutdown. The state every handler shares is `state.rs`.
//!
//! `App::build` does everything that can fail before serving (database, migrations, keys,
//! bootstrap admin, binding the port), so a misconfigured gateway stops at start-up with a
//! clear error rather than on the first request.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;
use utoipa_swagger_ui::SwaggerUi;

use crate::config::{AccessLog, Config};
use crate::conn::{Connections, Tracked};
use crate::error::ApiError;
use crate::openapi::router::ApiRouter;
use crate::state::AppState;
use crate::{admin, auth, health, mcp, oauth, setup, spa};

/// A bound, ready-to-run gateway.
pub struct App {
    state: AppState,
    listener: TcpListener,
}

impl App {
    pub async fn build(config: Config) -> anyhow::Result<App> {
        let addr = SocketAddr::new(config.host, config.port);
        let state = AppState::init(config).await?;
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr} (GATEWAY_HOST/GATEWAY_PORT)"))?;
        Ok(App { state, listener })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then stops accepting, lets in-flight requests finish
    /// for up to `SHUTDOWN_TIMEOUT_SECS`, and closes the database pool.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let service = with_middleware(router(self.state.clone()), &self.state.config);
        serve(
            self.listener,
            service,
            self.state.connections.clone(),
            self.state.config.shutdown_timeout,
            shutdown,
        )
        .await?;
        self.state.db.close().await;
        Ok(())
    }
}

/// The server loop, separate from `App` so tests can serve a router with extra routes.
///
/// HTTP/1.1 straight on hyper's connection (with upgrades, for the live feed's WebSocket)
/// rather than `axum::serve`, whose protocol-detecting connection reads the first 24 bytes on
/// their own, after which hyper grows each connection's read buffer to 16 KiB: with thousands
/// of open SSE streams that was most of their memory. Every socket is admitted and watched by
/// `conn.rs` (caps, head and idle timeouts, shedding). On shutdown: no new connections, each
/// open one finishes its in-flight request, for at most `drain_timeout`.
pub async fn serve<S>(
    listener: TcpListener,
    service: S,
    connections: Arc<Connections>,
    drain_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()>
where
    S: tower::Service<Request, Response = Response, Error = std::convert::Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    use futures_util::FutureExt;
    use tower::ServiceExt;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // Every connection task holds a sender; `recv` returns `None` once all have finished.
    let (live_tx, mut live_rx) = tokio::sync::mpsc::channel::<()>(1);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: free some, and pause rather than
                    // spin.
                    tracing::warn!(error = %e, "could not accept a connection; shedding idle connections");
                    connections.shed();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let admitted = match connections.admit(peer.ip()) {
            Ok(admitted) => admitted,
            Err(refused) => {
                tracing::debug!(peer = %peer.ip(), ?refused, "connection refused");
                drop(stream);
                continue;
            }
        };
        // Small writes (an SSE event, a JSON-RPC answer) go out at once: without TCP_NODELAY,
        // Nagle's algorithm and delayed ACKs add ~40 ms to streamed responses.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        let (watch, wrap) = admitted.watch();
        let stream = wrap(stream);
        let app = service.clone();
        let in_service = watch.clone();
        let service =
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                let in_progress = in_service.begin();
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                app.clone()
                    .oneshot(req.map(axum::body::Body::new))
                    .map(move |res| res.map(|res| res.map(|b| Tracked::new(b, in_progress))))
            });
        let mut stop = stop_rx.clone();
        let live = live_tx.clone();
        tokio::spawn(async move {
            let _live = live;
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .with_upgrades();
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                res = conn.as_mut() => {
                    if let Err(e) = res {
                        tracing::trace!(error = %e, "connection ended with an error");
                    }
                    return;
                }
                () = watch.expired() => {
                    tracing::trace!(%peer, "closing a quiet connection");
                    return;
                }
                _ = stop.wait_for(|stop| *stop) => {}
            }
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        });
    }
    tracing::info!("shutting down: no new connections, draining in-flight requests");
    drop(listener);
    let _ = stop_tx.send(true);
    drop(live_tx);
    if tokio::time::timeout(drain_timeout, live_rx.recv())
        .await
        .is_err()
    {
        tracing::warn!(
            ?drain_timeout,
            "drain timeout reached; closing the remaining connections"
        );
    }
    Ok(())
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// The JSON API's router and its complete OpenAPI document (`openapi::complete`), built now.
pub fn api_parts() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, docs) = api().split();
    (router, docs.build())
}

/// The JSON API routes and what their OpenAPI document is built from, from one source.
pub fn api() -> ApiRouter {
    ApiRouter::new()
        .merge(health::router())
        .merge(setup::router())
        .merge(auth::router())
        .merge(oauth::router())
        .merge(admin::router())
        .merge(crate::connections::router())
        .merge(crate::portal::router())
}

/// The whole HTTP surface: the API (with OpenAPI and Swagger UI) and the SPA fallback.
///
/// Served through `with_middleware`.
pub fn router(state: AppState) -> Router {
    let config = state.config.clone();
    let (api_router, docs) = api().split();
    // The document is built on its first request and kept as the bytes it serialises to
    // (205 kB); building it at start-up ran 1.8 MB of code that then stayed resident, and the
    // tree behind it is about 5 MB of small allocations (docs/PERFORMANCE.md). One build at a
    // time: concurrent first requests wait for it rather than each building their own.
    let document = Arc::new(tokio::sync::OnceCell::<axum::body::Bytes>::new());
    let openapi_json = axum::routing::get(move || {
        let (document, docs) = (document.clone(), docs.clone());
        async move {
            let bytes = document
                .get_or_try_init(|| async move {
                    serde_json::to_vec(&docs.build())
                        .map(axum::body::Bytes::from)
                        .context("serialising the OpenAPI document")
                })
                .await?;
            Ok::<_, ApiError>(([(header::CONTENT_TYPE, "application/json")], bytes.clone()))
        }
    });
    let api_router = api_router
        .layer(middleware::from_fn_with_state(
            state.clone(),
            request_timeout,
        ))
        .layer(DefaultBodyLimit::max(config.max_body_bytes));
    let mut mcp_router = mcp::router();
    // Form bodies are read by the handlers: bounded in time like the JSON API.
    let mut form_router = oauth::form_router().layer(middleware::from_fn_with_state(
        state.clone(),
        request_timeout,
    ));
    let mut api_router = api_router;
    if config.access_log != AccessLog::Off {
        api_router = api_router.route_layer(middleware::from_fn(access_log));
        form_router = form_router.route_layer(middleware::from_fn(access_log));
    }
    if config.access_log == AccessLog::All {
        mcp_router = mcp_router.route_layer(middleware::from_fn(access_log));
    }

    Router::new()
        .merge(api_router)
        .merge(mcp_router)
        .merge(form_router)
        .route("/admin/api/live", axum::routing::get(crate::live::socket)) // not json: WebSocket upgrade
        .route("/metrics", axum::routing::get(crate::metrics::handler)) // not json: Prometheus text
        .route(shared::routes::OPENAPI_JSON, openapi_json) // not json: the document itself
        .merge(
            SwaggerUi::new(shared::routes::SWAGGER_UI).config(utoipa_swagger_ui::Config::new([
                shared::routes::OPENAPI_JSON,
            ])),
        )
        .fallback(spa::fallback)
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
}

/// The middleware every request passes (request ids, tracing span, `nosniff`, CORS), around the
/// whole router rather than through `Router::layer`, which wraps and boxes every route on its
/// own: each request then cloned a nested stack of boxes (heaptrack: about 20 allocations).
pub fn with_middleware(
    router: Router,
    config: &Config,
) -> impl tower::Service<
    Request,
    Response = Response,
    Error = std::convert::Infallible,
    Future: Send + 'static,
> + Clone
+ Send
+ Sync
+ 'static {
    let x_request_id = HeaderName::from_static("x-request-id");
    tower::ServiceBuilder::new()
        .map_response(IntoResponse::into_response)
        // A client may send its own request id (to correlate across systems), but only a
        // plain one: anything else is replaced, so no client writes what it likes into logs.
        .map_request(|mut req: Request| {
            let plain = req.headers().get("x-request-id").is_none_or(|v| {
                (1..=64).contains(&v.len())
                    && v.as_bytes()
                        .iter()
                        .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
            });
            if !plain {
                req.headers_mut().remove("x-request-id");
            }
            req
        })
        // v4 UUIDs; the `uuid` dependency's `fast-rng` feature draws them from a thread-local
        // CSPRNG (no `getrandom` system call per request, which perf showed with plain v4).
        .layer(SetRequestIdLayer::new(x_request_id.clone(), MakeRequestUuid))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    let request_id = req
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    // The path only: a query string could carry something secret.
                    tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id)
                })
                // One line per request at debug: at MCP rates an info line each would cost more
                // than the proxying (MCP traffic has its activity records instead).
                .on_response(DefaultOnResponse::new().level(Level::DEBUG)),
        )
        .layer(PropagateRequestIdLayer::new(x_request_id))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(tower::layer::layer_fn({
            let cors = cors(config);
            move |inner| CorsWhenAsked {
                cors: tower::Layer::layer(&cors, inner),
            }
        }))
        .service(router)
}

/// CORS (tower-http's) for the requests it concerns: those with an `Origin` and preflights
/// (`OPTIONS`). The others (MCP clients, curl, same-origin reads) only get its `Vary` header,
/// as a static value: tower-http builds a header map and the `Vary` and expose lists anew for
/// every request, a handful of allocations on each proxied MCP call.
#[derive(Clone)]
struct CorsWhenAsked<S> {
    cors: tower_http::cors::Cors<S>,
}

/// Adds the `Vary` tower-http's CORS layer adds, as it says it.
fn add_cors_vary(mut res: Response) -> Response {
    res.headers_mut().append(
        header::VARY,
        HeaderValue::from_static(
            "origin, access-control-request-method, access-control-request-headers",
        ),
    );
    res
}

impl<S> tower::Service<Request> for CorsWhenAsked<S>
where
    S: tower::Service<Request, Response = Response, Error = std::convert::Infallible>,
{
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = futures_util::future::Either<
        tower_http::cors::ResponseFuture<S::Future>,
        futures_util::future::MapOk<S::Future, fn(Response) -> Response>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.cors.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        use futures_util::TryFutureExt;
        if req.method() == Method::OPTIONS || req.headers().contains_key(header::ORIGIN) {
            futures_util::future::Either::Left(self.cors.call(req))
        } else {
            let add: fn(Response) -> Response = add_cors_vary;
            futures_util::future::Either::Right(self.cors.get_mut().call(req).map_ok(add))
        }
    }
}

/// One INFO line per request (`ACCESS_LOG`, target `access`): method, the route's template,
/// status, time to the response head (a stream's lifetime is not counted) and the request id,
/// inside the request's span (which names the path, never the query); never a token.
async fn access_log(req: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default();
    let request_id = req.headers().get("x-request-id").cloned();
    let res = next.run(req).await;
    // Health probes (every few seconds from each orchestrator) only at debug.
    if route == "/health" || route == "/ready" {
        tracing::debug!(target: "access", %method, route, status = res.status().as_u16(), "request");
        return res;
    }
    tracing::info!(
        target: "access",
        %method,
        route,
        status = res.status().as_u16(),
        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        request_id = request_id.as_ref().and_then(|v| v.to_str().ok()).unwrap_or(""),
        "request"
    );
    res
}

/// Bounds every API request by `REQUEST_TIMEOUT_SECS` (MCP streams will get their own policy).
async fn request_timeout(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(state.config.request_timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout.into_response(),
    }
}

/// CORS for browser clients on other origins: only the exact origins in `ALLOWED_ORIGINS`.
/// The SPA is served from the gateway itself and needs none.
fn cors(config: &Config) -> CorsLayer {
    let origins: Vec<HeaderValue> = config
        .allowed_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            HeaderName::from_static("mcp-session-id"),
            HeaderName::from_static("mcp-protocol-version"),
            HeaderName::from_static("last-event-id"),
        ])
        .expose_headers([
            header::WWW_AUTHENTICATE,
            HeaderName::from_static("mcp-session-id"),
            HeaderName::from_static("x-request-id"),
        ])
        .max_age(Duration::from_secs(600))
}
