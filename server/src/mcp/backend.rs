//! The gateway as an MCP client of its backends: one pooled HTTP client, credential injection,
//! and the few calls the gateway makes on its own behalf (initialize, server/discover,
//! tools/list for health checks), over streamable HTTP (either era) and legacy HTTP+SSE.
//!
//! The client's own `Authorization` never reaches a backend: requests are built from scratch
//! with an allow-list of headers plus the backend's credential: a stored header, or an OAuth
//! access token (`backend_auth.rs`) that is renewed when due; a backend that refuses such a
//! token (401) gets the request once more with a renewed one (it refused before acting, so
//! sending again is safe).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http_body_util::Full;
use hyper::body::Body as _;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST, HeaderName, HeaderValue};
use std::sync::Arc;

use crate::backend_auth::{ServerAuth, TokenCell};
use serde_json::{Value, json};

use crate::mcp::protocol::{self, H_METHOD, H_SESSION, H_VERSION, META_CAPABILITIES, META_VERSION};
use crate::mcp::sse;

pub const ACCEPT_BOTH: &str = "application/json, text/event-stream";

/// Where and how to reach one backend.
#[derive(Clone)]
pub struct Target {
    pub name: String,
    pub url: String,
    /// `url`, parsed once (parsing it per request showed up in profiles).
    pub parsed_url: reqwest::Url,
    /// `url` for the direct HTTP/1.1 client: set for plain `http://` URLs without userinfo.
    pub direct: Option<Direct>,
    pub credential: Credential,
    pub timeout: Duration,
    /// Upper bound on a backend response body (JSON) or event (SSE).
    pub max_response_bytes: usize,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("name", &self.name)
            .field("credential", &self.credential)
            .finish()
    }
}

/// What a backend request carries to authenticate the gateway.
#[derive(Clone, Default)]
pub enum Credential {
    #[default]
    None,
    /// A stored header (bearer, basic or a custom header).
    Static(HeaderName, HeaderValue),
    /// An OAuth access token of the server, or of one user's connected account.
    OAuth(Arc<TokenCell>),
    /// A server with per-user connected accounts, not bound to a user (`Registry::for_user`
    /// binds it): the gateway's own calls go without a credential.
    PerUser(Arc<ServerAuth>),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credential::None => "none",
            Credential::Static(..) => "static [redacted]",
            Credential::OAuth(_) => "oauth [redacted]",
            Credential::PerUser(_) => "per-user",
        })
    }
}

type AuthHeader = Option<(HeaderName, HeaderValue)>;

/// Why a backend call failed. Messages name the server, never its URL.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    #[error("server '{0}' is unreachable")]
    Unavailable(String),
    #[error("server '{0}' did not answer in time")]
    Timeout(String),
    #[error("server '{0}' answered HTTP {1}")]
    Status(String, u16),
    #[error("server '{0}' sent a response that is not valid MCP")]
    Protocol(String),
    #[error("server '{0}' sent a response larger than the limit")]
    TooLarge(String),
    /// No usable OAuth credential (not connected, refused, or its authorization server is
    /// unreachable); the message says what to do.
    #[error("{1}")]
    Credential(String, String),
}

impl BackendError {
    pub fn code(&self) -> i64 {
        match self {
            BackendError::Unavailable(_) => protocol::code::BACKEND_UNAVAILABLE,
            BackendError::Timeout(_) => protocol::code::BACKEND_TIMEOUT,
            BackendError::TooLarge(_) => protocol::code::TOO_LARGE,
            BackendError::Status(..) | BackendError::Protocol(_) | BackendError::Credential(..) => {
                protocol::code::BACKEND_ERROR
            }
        }
    }

    /// The stable short name recorded in activity.
    pub fn label(&self) -> &'static str {
        match self {
            BackendError::Unavailable(_) => "backend_unavailable",
            BackendError::Timeout(_) => "backend_timeout",
            BackendError::Status(..) => "backend_error",
            BackendError::Protocol(_) => "backend_protocol_error",
            BackendError::TooLarge(_) => "response_too_large",
            BackendError::Credential(..) => "backend_credential_error",
        }
    }
}

/// The answer to one JSON-RPC request the gateway sent itself.
#[derive(Debug, Clone)]
pub struct RpcReply {
    pub message: Value,
    pub session_id: Option<String>,
}

/// Read buffer of a backend GET stream's connection (hyper's default is 8 KiB).
const STREAM_READ_BUFFER: usize = 2048;

type FastClient = hyper_util::client::legacy::Client<HttpConnector<GuardedResolver>, Full<Bytes>>;

/// Resolves backend host names for both backend clients, dropping addresses never reached
/// (`fetch::is_never_allowed`: link-local, where cloud metadata services live, and the other
/// reserved ranges): checked when a connection is made, not only when a URL is saved, so a
/// name that later resolves there (DNS rebinding) reaches nothing. IP literals skip resolvers;
/// `servers::validate_url` refuses such literals.
#[derive(Clone, Copy, Default)]
pub struct GuardedResolver;

impl GuardedResolver {
    async fn lookup(host: String) -> std::io::Result<Vec<std::net::SocketAddr>> {
        let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
            .await?
            .filter(|a| !crate::fetch::is_never_allowed(a.ip()))
            .collect();
        if addrs.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!("{host} has no address the gateway may reach"),
            ));
        }
        Ok(addrs)
    }
}

type Lookup = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = std::io::Result<std::vec::IntoIter<std::net::SocketAddr>>>
            + Send,
    >,
>;

impl tower::Service<hyper_util::client::legacy::connect::dns::Name> for GuardedResolver {
    type Response = std::vec::IntoIter<std::net::SocketAddr>;
    type Error = std::io::Error;
    type Future = Lookup;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: hyper_util::client::legacy::connect::dns::Name) -> Self::Future {
        let host = name.as_str().to_string();
        Box::pin(async move { Ok(GuardedResolver::lookup(host).await?.into_iter()) })
    }
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs = GuardedResolver::lookup(host).await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[derive(Clone)]
pub struct BackendClient {
    http: reqwest::Client,
    /// The proxy hot path to plain-HTTP backends: hyper's pooled HTTP/1.1 client without
    /// reqwest's layers (redirect policy, URL conversion, boxed futures), which cost about
    /// 4–5 µs of CPU per request on the benchmark machine. `None` when an HTTP proxy is
    /// configured in the environment: reqwest honours it, so every request goes through reqwest.
    fast: Option<FastClient>,
    /// The same for long-lived GET streams, with a small read buffer: an open stream mostly
    /// waits, and hyper's default buffer would cost 8 KiB per stream.
    streams: Option<FastClient>,
}

/// `target.url` in the form the direct client uses: plain `http://` without userinfo (reqwest
/// turns userinfo into Basic credentials, and handles TLS).
pub fn direct(url: &reqwest::Url) -> Option<Direct> {
    if url.scheme() != "http" || !url.username().is_empty() || url.password().is_some() {
        return None;
    }
    let uri: http::Uri = url.as_str().parse().ok()?;
    let host = host_header(&uri)?;
    Some(Direct { uri, host })
}

/// A backend URL the direct client reaches, with its `Host` header made once: hyper's client
/// would otherwise format it for every request (it showed up in profiles).
#[derive(Clone)]
pub struct Direct {
    pub uri: http::Uri,
    pub host: HeaderValue,
}

/// The `Host` header hyper's client sends for an `http://` URI: the host, and the port as
/// written unless it is 80.
fn host_header(uri: &http::Uri) -> Option<HeaderValue> {
    let host = uri.host()?;
    let value = match uri.port() {
        Some(port) if port.as_u16() != 80 => HeaderValue::from_str(&format!("{host}:{port}")),
        _ => HeaderValue::from_str(host),
    };
    value.ok()
}

impl BackendClient {
    pub fn new() -> anyhow::Result<BackendClient> {
        let proxied = ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"]
            .iter()
            .any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()));
        let direct = |read_buffer: Option<usize>| {
            let mut connector = HttpConnector::new_with_resolver(GuardedResolver);
            connector.set_nodelay(true);
            connector.set_connect_timeout(Some(Duration::from_secs(10)));
            let mut builder = hyper_util::client::legacy::Client::builder(TokioExecutor::new());
            builder
                .pool_idle_timeout(Duration::from_secs(90))
                .pool_max_idle_per_host(256)
                .pool_timer(TokioTimer::new())
                .timer(TokioTimer::new());
            if let Some(size) = read_buffer {
                builder.http1_read_buf_exact_size(size);
            }
            builder.build(connector)
        };
        let fast = (!proxied).then(|| direct(None));
        let streams = (!proxied).then(|| direct(Some(STREAM_READ_BUFFER)));
        let http = reqwest::Client::builder()
            .dns_resolver(std::sync::Arc::new(GuardedResolver))
            // Following a redirect could carry the credential to another host.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .build()?;
        Ok(BackendClient {
            http,
            fast,
            streams,
        })
    }

    /// Opens the backend's GET stream (server-to-client messages) of a session.
    pub async fn open_stream(
        &self,
        target: &Target,
        session: Option<&str>,
        version: &str,
        last_event_id: Option<&str>,
    ) -> Result<BackendResponse, BackendError> {
        let mut headers = Vec::with_capacity(3);
        headers.push((H_VERSION, version));
        if let Some(session) = session {
            headers.push((H_SESSION, session));
        }
        if let Some(last) = last_event_id {
            headers.push((protocol::H_LAST_EVENT_ID, last));
        }
        let (Some(streams), Some(fast), Some(direct)) = (&self.streams, &self.fast, &target.direct)
        else {
            let mut req = self
                .request(target, reqwest::Method::GET)
                .header(ACCEPT, "text/event-stream");
            for (name, value) in headers {
                req = req.header(name, value);
            }
            return self.send(target, req).await.map(BackendResponse::from);
        };
        let credential = self.auth_header(target).await?;
        let mut req = http::Request::new(Full::new(Bytes::new()));
        *req.uri_mut() = direct.uri.clone();
        let map = req.headers_mut();
        map.insert(HOST, direct.host.clone());
        map.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
        if let Some((name, value)) = credential {
            map.insert(name, value);
        }
        for (name, value) in headers {
            let value = HeaderValue::from_str(value)
                .map_err(|_| BackendError::Unavailable(target.name.clone()))?;
            map.insert(HeaderName::from_static(name), value);
        }
        // The small read buffer also caps the response head: a backend (or a proxy in front of
        // it) that sends more headers than fit is asked again with the usual buffer (a GET).
        let (parts, body) = req.into_parts();
        let again = http::Request::from_parts(parts.clone(), body.clone());
        match self
            .send_direct(streams, target, http::Request::from_parts(parts, body))
            .await
        {
            Err(BackendError::Unavailable(_)) => self.send_direct(fast, target, again).await,
            other => other,
        }
    }

    async fn send_direct(
        &self,
        client: &FastClient,
        target: &Target,
        req: http::Request<Full<Bytes>>,
    ) -> Result<BackendResponse, BackendError> {
        match tokio::time::timeout(target.timeout, client.request(req)).await {
            Err(_) => Err(BackendError::Timeout(target.name.clone())),
            Ok(Err(e)) if timed_out(&e) => Err(BackendError::Timeout(target.name.clone())),
            Ok(Err(e)) => {
                tracing::debug!(server = %target.name, error = %e, "backend request failed");
                Err(BackendError::Unavailable(target.name.clone()))
            }
            Ok(Ok(res)) => Ok(BackendResponse::Direct(res)),
        }
    }

    /// POSTs a JSON-RPC message (the proxy's path): the backend's credential, the given
    /// headers and nothing else; returns once the response headers are in.
    pub async fn post(
        &self,
        target: &Target,
        body: Bytes,
        session: Option<&str>,
        version: Option<&str>,
        extra: &[(String, String)],
    ) -> Result<BackendResponse, BackendError> {
        let (Some(fast), Some(direct)) = (&self.fast, &target.direct) else {
            let mut req = self
                .request(target, reqwest::Method::POST)
                .header(ACCEPT, ACCEPT_BOTH)
                .header(CONTENT_TYPE, "application/json")
                .body(body);
            if let Some(session) = session {
                req = req.header(H_SESSION, session);
            }
            if let Some(version) = version {
                req = req.header(H_VERSION, version);
            }
            for (name, value) in extra {
                req = req.header(name.as_str(), value.as_str());
            }
            return self.send(target, req).await.map(BackendResponse::from);
        };
        let credential = self.auth_header(target).await?;
        let build = |credential: &AuthHeader| -> Result<http::Request<Full<Bytes>>, BackendError> {
            let mut req = http::Request::new(Full::new(body.clone()));
            *req.method_mut() = http::Method::POST;
            *req.uri_mut() = direct.uri.clone();
            let headers = req.headers_mut();
            headers.insert(HOST, direct.host.clone());
            headers.insert(ACCEPT, HeaderValue::from_static(ACCEPT_BOTH));
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            if let Some((name, value)) = credential {
                headers.insert(name.clone(), value.clone());
            }
            let unusable = || {
                tracing::debug!(server = %target.name, "a header for the backend is not a valid header value");
                BackendError::Unavailable(target.name.clone())
            };
            if let Some(session) = session {
                let value = HeaderValue::from_str(session).map_err(|_| unusable())?;
                headers.insert(HeaderName::from_static(H_SESSION), value);
            }
            if let Some(version) = version {
                let value = HeaderValue::from_str(version).map_err(|_| unusable())?;
                headers.insert(HeaderName::from_static(H_VERSION), value);
            }
            for (name, value) in extra {
                let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| unusable())?;
                let value = HeaderValue::from_str(value).map_err(|_| unusable())?;
                headers.append(name, value);
            }
            Ok(req)
        };
        let res = self.send_direct(fast, target, build(&credential)?).await?;
        if res.status() == reqwest::StatusCode::UNAUTHORIZED
            && let Some(fresh) = self.renew_refused(target, &credential).await?
        {
            return self.send_direct(fast, target, build(&fresh)?).await;
        }
        Ok(res)
    }

    /// The credential header to send to `target` now.
    async fn auth_header(&self, target: &Target) -> Result<AuthHeader, BackendError> {
        match &target.credential {
            Credential::None | Credential::PerUser(_) => Ok(None),
            Credential::Static(name, value) => Ok(Some((name.clone(), value.clone()))),
            // Boxed: the renewal machinery is large, and an unboxed future would make every
            // backend request's future (and each of its moves) that large.
            Credential::OAuth(cell) => Box::pin(cell.header())
                .await
                .map(|value| Some((AUTHORIZATION, value)))
                .map_err(|e| {
                    BackendError::Credential(target.name.clone(), e.message(&target.name))
                }),
        }
    }

    /// After a 401: a renewed OAuth token to send the request again with (`None`: the
    /// credential is not one that renews, so the 401 stands).
    async fn renew_refused(
        &self,
        target: &Target,
        used: &AuthHeader,
    ) -> Result<Option<AuthHeader>, BackendError> {
        let (Credential::OAuth(cell), Some((_, used))) = (&target.credential, used) else {
            return Ok(None);
        };
        match Box::pin(cell.rejected(used)).await {
            Ok(Some(value)) => Ok(Some(Some((AUTHORIZATION, value)))),
            Ok(None) => Ok(None),
            Err(e) => Err(BackendError::Credential(
                target.name.clone(),
                e.message(&target.name),
            )),
        }
    }

    /// A request to the backend's URL (`send` attaches its credential).
    pub fn request(&self, target: &Target, method: reqwest::Method) -> reqwest::RequestBuilder {
        self.request_to(target, method, target.parsed_url.clone())
    }

    /// A request to another URL of the same backend (the HTTP+SSE message endpoint).
    pub fn request_to(
        &self,
        _target: &Target,
        method: reqwest::Method,
        url: impl reqwest::IntoUrl,
    ) -> reqwest::RequestBuilder {
        self.http.request(method, url)
    }

    /// Attaches the backend's credential, sends and waits for the response headers (bounded
    /// by the backend timeout); a refused OAuth token is renewed and the request sent again.
    pub async fn send(
        &self,
        target: &Target,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, BackendError> {
        let credential = self.auth_header(target).await?;
        let again = match &target.credential {
            Credential::OAuth(_) => req.try_clone(),
            _ => None,
        };
        let with = |req: reqwest::RequestBuilder, credential: &AuthHeader| match credential {
            Some((name, value)) => req.header(name, value),
            None => req,
        };
        let res = self.send_once(target, with(req, &credential)).await?;
        if res.status() == reqwest::StatusCode::UNAUTHORIZED
            && let Some(again) = again
            && let Some(fresh) = self.renew_refused(target, &credential).await?
        {
            return self.send_once(target, with(again, &fresh)).await;
        }
        Ok(res)
    }

    async fn send_once(
        &self,
        target: &Target,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, BackendError> {
        match tokio::time::timeout(target.timeout, req.send()).await {
            Err(_) => Err(BackendError::Timeout(target.name.clone())),
            Ok(Err(e)) if e.is_timeout() => Err(BackendError::Timeout(target.name.clone())),
            Ok(Err(e)) => {
                tracing::debug!(server = %target.name, error = %e, "backend request failed");
                Err(BackendError::Unavailable(target.name.clone()))
            }
            Ok(Ok(res)) => Ok(res),
        }
    }

    /// Sends one JSON-RPC request over streamable HTTP and returns its response message,
    /// whether the backend answers with JSON or an SSE stream.
    pub async fn rpc(
        &self,
        target: &Target,
        session: Option<&str>,
        version: Option<&str>,
        body: &Value,
    ) -> Result<RpcReply, BackendError> {
        let mut req = self
            .request(target, reqwest::Method::POST)
            .header(ACCEPT, ACCEPT_BOTH)
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_string());
        if let Some(session) = session {
            req = req.header(H_SESSION, session);
        }
        if let Some(version) = version {
            req = req.header(H_VERSION, version);
        }
        if version == Some(protocol::LATEST_VERSION) {
            if let Some(method) = body["method"].as_str() {
                req = req.header(H_METHOD, method);
            }
            if let Some(name) = body["params"]["name"]
                .as_str()
                .or(body["params"]["uri"].as_str())
            {
                req = req.header(protocol::H_NAME, name);
            }
        }
        let res = self.send(target, req).await?;
        let status = res.status().as_u16();
        let session_id = res
            .headers()
            .get(H_SESSION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if status == 202 {
            return Ok(RpcReply {
                message: Value::Null,
                session_id,
            });
        }
        let is_sse = is_event_stream(res.headers());
        if !(200..300).contains(&status) {
            // A 400 with a JSON-RPC error body (e.g. an unsupported version) is still an answer.
            if status == 400
                && let Ok(bytes) = read_limited(target, res).await
                && let Ok(message) = serde_json::from_slice::<Value>(&bytes)
                && message.get("error").is_some()
            {
                return Ok(RpcReply {
                    message,
                    session_id: None,
                });
            }
            return Err(BackendError::Status(target.name.clone(), status));
        }
        let want_id = body.get("id").cloned().unwrap_or(Value::Null);
        let message = if is_sse {
            wait_for_response(target, res, &want_id).await?
        } else {
            let bytes = read_limited(target, res).await?;
            serde_json::from_slice(&bytes)
                .map_err(|_| BackendError::Protocol(target.name.clone()))?
        };
        Ok(RpcReply {
            message,
            session_id,
        })
    }

    /// Sends a notification (expects 202).
    pub async fn notify(
        &self,
        target: &Target,
        session: Option<&str>,
        version: Option<&str>,
        body: &Value,
    ) -> Result<(), BackendError> {
        self.rpc(target, session, version, body).await.map(|_| ())
    }

    /// The handshake: `initialize`, then `notifications/initialized`. Returns the backend's
    /// session id (if it issues one), the negotiated version and the InitializeResult.
    pub async fn initialize(
        &self,
        target: &Target,
        version: &str,
        capabilities: Value,
        client_info: Value,
    ) -> Result<Handshake, BackendError> {
        let body = json!({
            "jsonrpc": "2.0", "id": "authmcp-init", "method": "initialize",
            "params": { "protocolVersion": version, "capabilities": capabilities, "clientInfo": client_info },
        });
        let reply = self.rpc(target, None, None, &body).await?;
        let result = reply
            .message
            .get("result")
            .cloned()
            .ok_or_else(|| BackendError::Protocol(target.name.clone()))?;
        let negotiated = result["protocolVersion"]
            .as_str()
            .unwrap_or(version)
            .to_string();
        let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        self.notify(
            target,
            reply.session_id.as_deref(),
            Some(&negotiated),
            &initialized,
        )
        .await?;
        Ok(Handshake {
            session_id: reply.session_id,
            protocol_version: negotiated,
            result,
        })
    }

    /// Ends a backend session (best effort: `DELETE` with its id).
    pub async fn end_session(&self, target: &Target, session_id: &str, version: &str) {
        let req = self
            .request(target, reqwest::Method::DELETE)
            .header(H_SESSION, session_id)
            .header(H_VERSION, version);
        let _ = self.send(target, req).await;
    }

    /// `server/discover` (2026-07-28). `Ok(None)` when the backend does not speak it.
    pub async fn discover(&self, target: &Target) -> Result<Option<Value>, BackendError> {
        let body = json!({
            "jsonrpc": "2.0", "id": "authmcp-discover", "method": "server/discover",
            "params": { "_meta": {
                META_VERSION: protocol::LATEST_VERSION,
                META_CAPABILITIES: {},
                protocol::META_CLIENT_INFO: client_info(),
            }},
        });
        match self
            .rpc(target, None, Some(protocol::LATEST_VERSION), &body)
            .await
        {
            Ok(reply) => Ok(reply
                .message
                .get("result")
                .filter(|r| {
                    r["supportedVersions"]
                        .as_array()
                        .is_some_and(|v| v.iter().any(|v| v == protocol::LATEST_VERSION))
                })
                .cloned()),
            Err(BackendError::Status(_, 400 | 404 | 405 | 406 | 415)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Connects, negotiates and lists tools, as "test connection" and the health checker do.
    pub async fn probe(&self, target: &Target, transport: shared::servers::Transport) -> Probe {
        let started = Instant::now();
        let result = self.probe_inner(target, transport).await;
        let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match result {
            Ok(mut probe) => {
                probe.latency_ms = latency_ms;
                probe
            }
            Err(e) => Probe {
                latency_ms,
                error: Some(e.to_string()),
                refused: matches!(e, BackendError::Status(_, 401 | 403)),
                credential_error: matches!(e, BackendError::Credential(..)),
                per_user: matches!(target.credential, Credential::PerUser(_)),
                ..Default::default()
            },
        }
    }

    async fn probe_inner(
        &self,
        target: &Target,
        transport: shared::servers::Transport,
    ) -> Result<Probe, BackendError> {
        use shared::servers::Transport;
        if transport == Transport::Sse {
            let mut session = crate::mcp::legacy::LegacySession::connect(self, target).await?;
            let handshake = session.initialize(json!({}), client_info()).await?;
            let tools = session
                .request(json!({"jsonrpc": "2.0", "id": "authmcp-tools", "method": "tools/list", "params": {}}))
                .await?;
            return Ok(Probe::from_parts(
                "sse",
                &handshake.protocol_version,
                &handshake.result,
                &tools,
            ));
        }
        if let Some(discovered) = self.discover(target).await? {
            let body = json!({
                "jsonrpc": "2.0", "id": "authmcp-tools", "method": "tools/list",
                "params": { "_meta": { META_VERSION: protocol::LATEST_VERSION, META_CAPABILITIES: {} } },
            });
            let tools = self
                .rpc(target, None, Some(protocol::LATEST_VERSION), &body)
                .await?;
            let info =
                json!({ "serverInfo": discovered["_meta"]["io.modelcontextprotocol/serverInfo"] });
            return Ok(Probe::from_parts(
                "streamable-http",
                protocol::LATEST_VERSION,
                &info,
                &tools.message,
            ));
        }
        let handshake = match self
            .initialize(
                target,
                protocol::LATEST_HANDSHAKE_VERSION,
                json!({}),
                client_info(),
            )
            .await
        {
            Err(BackendError::Status(_, 400 | 404 | 405)) if transport == Transport::Auto => {
                return Box::pin(self.probe_inner(target, Transport::Sse)).await;
            }
            other => other?,
        };
        let body =
            json!({"jsonrpc": "2.0", "id": "authmcp-tools", "method": "tools/list", "params": {}});
        let tools = self
            .rpc(
                target,
                handshake.session_id.as_deref(),
                Some(&handshake.protocol_version),
                &body,
            )
            .await?;
        if let Some(session) = &handshake.session_id {
            self.end_session(target, session, &handshake.protocol_version)
                .await;
        }
        Ok(Probe::from_parts(
            "streamable-http",
            &handshake.protocol_version,
            &handshake.result,
            &tools.message,
        ))
    }
}

/// The result of a completed handshake with a backend.
#[derive(Debug, Clone)]
pub struct Handshake {
    pub session_id: Option<String>,
    pub protocol_version: String,
    pub result: Value,
}

#[derive(Debug, Clone, Default)]
pub struct Probe {
    pub latency_ms: u64,
    /// The backend refused the request (401/403).
    pub refused: bool,
    /// The gateway had no usable OAuth credential to send.
    pub credential_error: bool,
    /// The server acts with each user's own account (probed without a credential).
    pub per_user: bool,
    pub transport: Option<String>,
    pub protocol_version: Option<String>,
    pub server_name: Option<String>,
    pub tools: Vec<shared::servers::ToolInfo>,
    pub error: Option<String>,
}

impl Probe {
    fn from_parts(transport: &str, version: &str, init: &Value, tools: &Value) -> Probe {
        let tools = tools["result"]["tools"]
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|t| {
                        Some(shared::servers::ToolInfo {
                            name: t["name"].as_str()?.to_string(),
                            description: t["description"].as_str().map(str::to_string),
                            input_schema: t.get("inputSchema").cloned(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        Probe {
            latency_ms: 0,
            transport: Some(transport.into()),
            protocol_version: Some(version.into()),
            server_name: init["serverInfo"]["name"].as_str().map(str::to_string),
            tools,
            ..Probe::default()
        }
    }
}

/// How the gateway introduces itself to backends.
pub fn client_info() -> Value {
    json!({ "name": "authmcp-gateway", "version": env!("CARGO_PKG_VERSION") })
}

pub fn is_event_stream(headers: &reqwest::header::HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"))
}

/// Whether an error comes from a timeout somewhere down its chain (the connect timeout), as
/// reqwest's `is_timeout` reports it.
fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(err) = cause {
        if err
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        cause = err.source();
    }
    false
}

/// A backend's response, from the direct client or from reqwest.
pub enum BackendResponse {
    Direct(http::Response<hyper::body::Incoming>),
    Reqwest(reqwest::Response),
}

impl From<reqwest::Response> for BackendResponse {
    fn from(res: reqwest::Response) -> BackendResponse {
        BackendResponse::Reqwest(res)
    }
}

impl BackendResponse {
    pub fn status(&self) -> reqwest::StatusCode {
        match self {
            BackendResponse::Direct(res) => res.status(),
            BackendResponse::Reqwest(res) => res.status(),
        }
    }

    pub fn headers(&self) -> &reqwest::header::HeaderMap {
        match self {
            BackendResponse::Direct(res) => res.headers(),
            BackendResponse::Reqwest(res) => res.headers(),
        }
    }

    pub fn content_length(&self) -> Option<u64> {
        match self {
            BackendResponse::Direct(res) => res.body().size_hint().exact(),
            BackendResponse::Reqwest(res) => res.content_length(),
        }
    }

    /// The body's data, chunk by chunk.
    pub fn bytes_stream(self) -> BodyStream {
        match self {
            BackendResponse::Direct(res) => BodyStream::Direct(res.into_body()),
            BackendResponse::Reqwest(res) => BodyStream::Reqwest(Box::pin(res.bytes_stream())),
        }
    }
}

/// The backend connection failed while a body was being read.
#[derive(Debug)]
pub struct BodyError;

type ReqwestStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

pub enum BodyStream {
    Direct(hyper::body::Incoming),
    Reqwest(ReqwestStream),
}

impl Stream for BodyStream {
    type Item = Result<Bytes, BodyError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.get_mut() {
            BodyStream::Direct(body) => loop {
                match Pin::new(&mut *body).poll_frame(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(None) => return Poll::Ready(None),
                    Poll::Ready(Some(Err(_))) => return Poll::Ready(Some(Err(BodyError))),
                    Poll::Ready(Some(Ok(frame))) => {
                        // Trailers carry nothing the gateway uses.
                        if let Ok(data) = frame.into_data() {
                            return Poll::Ready(Some(Ok(data)));
                        }
                    }
                }
            },
            BodyStream::Reqwest(stream) => stream
                .as_mut()
                .poll_next(cx)
                .map(|item| item.map(|r| r.map_err(|_| BodyError))),
        }
    }
}

/// Reads a whole (JSON) body, refusing more than the limit. A body that arrives in one chunk
/// (the usual case) is returned without a copy.
pub async fn read_limited(
    target: &Target,
    res: impl Into<BackendResponse>,
) -> Result<Bytes, BackendError> {
    let res = res.into();
    if res
        .content_length()
        .is_some_and(|len| len > target.max_response_bytes as u64)
    {
        return Err(BackendError::TooLarge(target.name.clone()));
    }
    let mut first: Option<Bytes> = None;
    let mut body = Vec::new();
    let mut stream = res.bytes_stream();
    loop {
        let next = tokio::time::timeout(target.timeout, stream.next())
            .await
            .map_err(|_| BackendError::Timeout(target.name.clone()))?;
        match next {
            None => break,
            Some(Err(_)) => return Err(BackendError::Unavailable(target.name.clone())),
            Some(Ok(chunk)) => {
                let held = first.as_ref().map_or(0, Bytes::len) + body.len();
                if held + chunk.len() > target.max_response_bytes {
                    return Err(BackendError::TooLarge(target.name.clone()));
                }
                if let Some(first) = first.take() {
                    body.extend_from_slice(&first);
                }
                if body.is_empty() {
                    first = Some(chunk);
                } else {
                    body.extend_from_slice(&chunk);
                }
            }
        }
    }
    Ok(first.unwrap_or_else(|| Bytes::from(body)))
}

/// Reads an SSE response until the JSON-RPC response with `id` arrives.
async fn wait_for_response(
    target: &Target,
    res: reqwest::Response,
    id: &Value,
) -> Result<Value, BackendError> {
    let mut parser = sse::Parser::new(target.max_response_bytes);
    let mut stream = res.bytes_stream();
    loop {
        let next = tokio::time::timeout(target.timeout, stream.next())
            .await
            .map_err(|_| BackendError::Timeout(target.name.clone()))?;
        let chunk = match next {
            None => return Err(BackendError::Protocol(target.name.clone())),
            Some(Err(_)) => return Err(BackendError::Unavailable(target.name.clone())),
            Some(Ok(chunk)) => chunk,
        };
        let events = parser
            .push(&chunk)
            .map_err(|_| BackendError::TooLarge(target.name.clone()))?;
        for event in events {
            if let Ok(message) = serde_json::from_str::<Value>(&event.data)
                && message.get("id") == Some(id)
                && (message.get("result").is_some() || message.get("error").is_some())
            {
                return Ok(message);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `Host` header made once per backend is the one hyper's client would have made: what
    /// the client sends without it, to a listener that reads the request head, for several URL
    /// forms; and the default port left out.
    #[tokio::test]
    async fn the_direct_host_header_is_the_one_hyper_would_send() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let mut hosts = Vec::new();
            for _ in 0..3 {
                let (mut sock, _) = listener.accept().await.unwrap();
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = sock.read(&mut buf).await.unwrap();
                    assert!(n > 0, "the connection closed before the request head");
                    head.extend_from_slice(&buf[..n]);
                }
                let head = String::from_utf8(head).unwrap();
                let host = head
                    .lines()
                    .find_map(|l| l.strip_prefix("host: "))
                    .map(str::to_owned);
                hosts.push(host);
                sock.write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
                    .await
                    .unwrap();
            }
            hosts
        });
        let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .build::<_, Full<Bytes>>(HttpConnector::new());
        let urls = [
            format!("http://127.0.0.1:{port}/mcp"),
            format!("http://localhost:{port}/a/b?q=1"),
            format!("http://LocalHost:{port}"),
        ];
        let mut ours = Vec::new();
        for url in &urls {
            let direct = direct(&reqwest::Url::parse(url).unwrap()).unwrap();
            ours.push(direct.host.to_str().unwrap().to_owned());
            let mut req = http::Request::new(Full::new(Bytes::new()));
            *req.uri_mut() = direct.uri.clone();
            assert_eq!(client.request(req).await.unwrap().status(), 204);
        }
        let sent: Vec<String> = server
            .await
            .unwrap()
            .into_iter()
            .map(Option::unwrap)
            .collect();
        assert_eq!(ours, sent);
        assert_eq!(ours[0], format!("127.0.0.1:{port}"));

        let host = |url: &str| direct(&reqwest::Url::parse(url).unwrap()).map(|d| d.host);
        assert_eq!(host("http://example.com:80/mcp").unwrap(), "example.com");
        assert_eq!(host("http://example.com/mcp").unwrap(), "example.com");
        assert_eq!(host("http://[::1]:8080/mcp").unwrap(), "[::1]:8080");
        assert_eq!(host("http://example.com:443/").unwrap(), "example.com:443");
        // Not for the direct client: TLS, and credentials in the URL.
        assert!(host("https://example.com/mcp").is_none());
        assert!(host("http://user:pw@example.com/mcp").is_none());
    }

    /// What a name resolves to when a backend connection is made: never a reserved address
    /// (a name rebound to the metadata service reaches nothing), loopback and private ones as
    /// before.
    #[tokio::test]
    async fn the_backend_resolver_never_returns_reserved_addresses() {
        for reserved in [
            "169.254.169.254",
            "fd00:ec2::254",
            "::ffff:169.254.169.254",
            "100.100.100.200",
            "168.63.129.16",
            "0.0.0.0",
        ] {
            let err = GuardedResolver::lookup(reserved.into()).await.unwrap_err();
            assert_eq!(
                err.kind(),
                std::io::ErrorKind::PermissionDenied,
                "{reserved}"
            );
        }
        for allowed in ["127.0.0.1", "10.0.0.5", "localhost"] {
            assert!(
                GuardedResolver::lookup(allowed.into()).await.is_ok(),
                "{allowed}"
            );
        }
    }
}
