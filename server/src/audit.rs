//! The MCP security scanner: probes one MCP endpoint the way an attacker and a careful client
//! would, and reports what it finds with what it means and how to fix it (docs/SECURITY_TESTING.md
//! lists every check).
//!
//! Safe by construction: every request goes through `fetch.rs` (the address checked on the
//! connection it then uses; loopback and private addresses only when the scan allows them;
//! redirects only for reads, same origin; a time and size limit per request), a scan has its
//! own deadline, sends a bounded number of requests one at a time, never calls a real tool
//! (the unauthenticated call names a tool that does not exist) and never stores or logs the
//! token it was given.
//!
//! The engine knows nothing of the database: `jobs.rs` runs it as a background job (stored,
//! on the live feed, cancellable); the CLI (`authmcp-gateway audit`) runs it directly.

pub mod analysis;
pub mod jobs;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, HeaderMap, WWW_AUTHENTICATE};
use serde_json::{Value, json};
use shared::audit::{AuditCheck, AuditFinding, AuditReport, AuditSummary};

use crate::detect::clip;
use crate::fetch::{self, Fetched, Policy};
use crate::mcp::protocol;

/// Per request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Per response read.
const MAX_RESPONSE: usize = 1024 * 1024;
/// The whole scan.
pub const SCAN_DEADLINE: Duration = Duration::from_secs(120);
/// Requests of the rate-limit probe.
const RATE_PROBE: usize = 20;
/// The oversized message.
const OVERSIZED: usize = 2 * 1024 * 1024;
/// Tools read at most (pages of `tools/list`).
const MAX_TOOLS: usize = 2_000;
const MAX_PAGES: usize = 10;

/// What to scan.
#[derive(Clone)]
pub struct Target {
    pub url: String,
    pub token: Option<String>,
    pub allow_private: bool,
    /// The registered server's name and id, when it is one.
    pub server: Option<String>,
    pub server_id: Option<i64>,
    /// The other registered servers' tools, as (server, tool): for shadowing.
    pub others: Vec<(String, String)>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .field("allow_private", &self.allow_private)
            .field("server", &self.server)
            .finish()
    }
}

/// The checks, in the order they run: (id, name).
pub const CHECKS: &[(&str, &str)] = &[
    ("transport_security", "TLS for non-loopback URLs"),
    (
        "unauthenticated_initialize",
        "Unauthenticated initialize refused",
    ),
    (
        "auth_challenge",
        "401 carries WWW-Authenticate with resource_metadata",
    ),
    (
        "authorization_metadata",
        "Protected-resource and authorization-server metadata valid",
    ),
    ("invalid_token", "Invalid token refused"),
    ("token_accepted", "Supplied token works"),
    (
        "unauthenticated_tools_list",
        "Unauthenticated tools/list refused",
    ),
    (
        "unauthenticated_tools_call",
        "Unauthenticated tools/call refused",
    ),
    ("tool_poisoning", "Tool poisoning and shadowing"),
    ("tool_annotations", "Risky tools annotated"),
    (
        "error_disclosure",
        "Errors disclose no paths or stack traces",
    ),
    (
        "malformed_input",
        "Malformed and deeply nested messages refused cleanly",
    ),
    ("oversized_input", "Oversized messages refused"),
    ("protocol_version", "MCP-Protocol-Version validated"),
    ("origin_validation", "Origin validated (DNS rebinding)"),
    ("session_ids", "Session ids unguessable and bound"),
    ("rate_limiting", "Rate limiting (bounded probe)"),
    ("sibling_endpoints", "Sibling endpoints protected"),
];

/// Why a scan could not run at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanError(pub String);

/// Why `preflight` refused a target: the URL itself, or where it points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Invalid(String),
    /// A reserved address, or a private one without the opt-in.
    Address(String),
}

impl From<Refusal> for ScanError {
    fn from(refusal: Refusal) -> ScanError {
        match refusal {
            Refusal::Invalid(why) | Refusal::Address(why) => ScanError(why),
        }
    }
}

impl std::fmt::Display for ScanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Told after each check: (checks done, the next check's name, findings so far); answers
/// whether to go on (false: cancelled).
pub type Hook<'a> = Box<
    dyn FnMut(
            usize,
            Option<&'static str>,
            AuditSummary,
        ) -> Pin<Box<dyn Future<Output = bool> + Send + 'a>>
        + Send
        + 'a,
>;

/// A target as it is stored and shown: without its query string, which may carry a key.
pub fn shown_url(url: &url::Url) -> String {
    let mut shown = url.clone();
    shown.set_fragment(None);
    if shown.query().is_some() {
        shown.set_query(None);
        format!("{shown}?…")
    } else {
        shown.to_string()
    }
}

/// Checks a target before anything is sent: a web URL, and not on a private or reserved
/// address unless the scan allows it.
pub async fn preflight(url: &str, allow_private: bool) -> Result<url::Url, Refusal> {
    let parsed = url::Url::parse(url).map_err(|_| Refusal::Invalid("not a valid URL".into()))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(Refusal::Invalid(
            "the URL must be http(s) with a host".into(),
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(Refusal::Invalid(
            "the URL must not carry credentials".into(),
        ));
    }
    let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
    let addrs = fetch::resolve(&parsed, deadline)
        .await
        .map_err(|e| Refusal::Invalid(e.0))?;
    if addrs.iter().any(|a| fetch::is_never_allowed(a.ip())) {
        return Err(Refusal::Address(format!(
            "{} is on a link-local, multicast or unspecified address, which is never scanned",
            fetch::host_of(&parsed)
        )));
    }
    if !allow_private && addrs.iter().any(|a| fetch::is_forbidden_address(a.ip())) {
        return Err(Refusal::Address(format!(
            "{} is on a loopback or private address: allow private addresses for this scan to scan it",
            fetch::host_of(&parsed)
        )));
    }
    Ok(parsed)
}

/// How a probe authenticates.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Auth {
    None,
    Token,
    Invalid,
}

struct Scan {
    target: Target,
    url: url::Url,
    policy: Policy,
    findings: Vec<AuditFinding>,
    checks: Vec<AuditCheck>,
    /// The server answered initialize without a token.
    open: bool,
    /// The 401's challenge, if any.
    challenge: Option<String>,
    /// How the scan reaches the server for the checks that need access (None: it cannot).
    access: Option<Auth>,
    session: Option<String>,
    version: String,
    session_ids: Vec<String>,
    tools: Vec<Value>,
    listed: bool,
}

fn invalid_token() -> String {
    let bytes: [u8; 16] = crate::keys::random_bytes().unwrap_or([7; 16]);
    format!(
        "authmcp-audit-invalid-{}",
        crate::auth::identity::hex(&bytes)
    )
}

fn initialize() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": protocol::LATEST_HANDSHAKE_VERSION,
        "capabilities": {},
        "clientInfo": {"name": "authmcp-audit", "version": env!("CARGO_PKG_VERSION")}}})
}

/// The JSON-RPC message a response carries (JSON, or the first answer in an SSE stream).
fn message_of(res: &Fetched) -> Option<Value> {
    let sse = res
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if sse {
        // The gateway's one SSE parser (the body is already within the size limit); the blank
        // line ends a last event the server did not terminate.
        let mut parser = crate::mcp::sse::Parser::new(MAX_RESPONSE);
        let mut events = parser.push(&res.body).ok()?;
        events.extend(parser.push(b"\n\n").ok()?);
        events
            .iter()
            .filter_map(|e| serde_json::from_str::<Value>(&e.data).ok())
            .find(|m| m.get("result").is_some() || m.get("error").is_some())
    } else {
        serde_json::from_slice(&res.body).ok()
    }
}

fn session_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get(protocol::H_SESSION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn refused(status: u16) -> bool {
    status == 401 || status == 403
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost" || d.ends_with(".localhost"),
        None => false,
    }
}

impl Scan {
    fn finding(
        &mut self,
        check: &str,
        severity: &str,
        title: impl Into<String>,
        detail: &str,
        fix: &str,
        evidence: Option<String>,
    ) {
        // A token never appears in a report (replaced before anything is cut).
        let evidence = evidence.map(|e| match &self.target.token {
            Some(token) if !token.is_empty() => clip(&e.replace(token.as_str(), "[token]"), 400),
            _ => clip(&e, 400),
        });
        self.findings.push(AuditFinding {
            check: check.into(),
            severity: severity.into(),
            title: title.into(),
            detail: detail.into(),
            fix: fix.into(),
            evidence,
        });
    }

    fn summary(&self) -> AuditSummary {
        let mut s = AuditSummary::default();
        for f in &self.findings {
            match f.severity.as_str() {
                "high" => s.high += 1,
                "medium" => s.medium += 1,
                "low" => s.low += 1,
                _ => s.info += 1,
            }
        }
        s
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<Vec<u8>>,
        auth: Auth,
        session: Option<&str>,
        extra: &[(&str, &str)],
    ) -> Result<Fetched, fetch::FetchError> {
        let token = match auth {
            Auth::None => None,
            Auth::Token => self.target.token.clone(),
            Auth::Invalid => Some(invalid_token()),
        };
        let session = session.map(str::to_string);
        // The version once per request: a probe may set its own.
        let version = (!extra
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case(protocol::H_VERSION)))
        .then(|| self.version.clone());
        fetch::send(&self.policy, method, url, move |mut r| {
            r = r.header("accept", "application/json, text/event-stream");
            if let Some(body) = &body {
                r = r
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.clone());
            }
            if let Some(t) = &token {
                r = r.bearer_auth(t);
            }
            if let Some(s) = &session {
                r = r.header(protocol::H_SESSION, s.as_str());
                if let Some(v) = &version {
                    r = r.header(protocol::H_VERSION, v.as_str());
                }
            }
            for (k, v) in extra {
                r = r.header(*k, *v);
            }
            r
        })
        .await
    }

    async fn post(
        &self,
        message: &Value,
        auth: Auth,
        session: Option<&str>,
        extra: &[(&str, &str)],
    ) -> Result<Fetched, fetch::FetchError> {
        let url = self.url.to_string();
        self.send(
            Method::POST,
            &url,
            Some(message.to_string().into_bytes()),
            auth,
            session,
            extra,
        )
        .await
    }

    fn note_session(&mut self, res: &Fetched) -> Option<String> {
        let id = session_of(&res.headers)?;
        if self.session_ids.len() < 8 {
            self.session_ids.push(id.clone());
        }
        Some(id)
    }

    /// The session the access checks use (initialised), when the scan has access.
    async fn open_session(&mut self, auth: Auth) -> Result<Option<String>, fetch::FetchError> {
        let res = self.post(&initialize(), auth, None, &[]).await?;
        if !(200..300).contains(&res.status) {
            return Ok(None);
        }
        if let Some(v) = message_of(&res)
            .and_then(|m| m["result"]["protocolVersion"].as_str().map(str::to_string))
            .filter(|v| protocol::SUPPORTED_VERSIONS.contains(&v.as_str()))
        {
            self.version = v;
        }
        let sid = self.note_session(&res);
        let _ = self
            .post(
                &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
                auth,
                sid.as_deref(),
                &[],
            )
            .await;
        Ok(sid)
    }

    async fn check(&mut self, i: usize) -> Result<&'static str, String> {
        match CHECKS[i].0 {
            "transport_security" => Ok(self.transport_security()),
            "unauthenticated_initialize" => self.unauthenticated_initialize().await,
            "auth_challenge" => Ok(self.auth_challenge()),
            "authorization_metadata" => Ok(self.authorization_metadata().await),
            "invalid_token" => self.invalid_token().await,
            "token_accepted" => self.token_accepted().await,
            "unauthenticated_tools_list" => self.unauthenticated_tools_list().await,
            "unauthenticated_tools_call" => self.unauthenticated_tools_call().await,
            "tool_poisoning" => self.tool_poisoning().await,
            "tool_annotations" => Ok(self.tool_annotations()),
            "error_disclosure" => self.error_disclosure().await,
            "malformed_input" => self.malformed_input().await,
            "oversized_input" => self.oversized_input().await,
            "protocol_version" => self.protocol_version().await,
            "origin_validation" => self.origin_validation().await,
            "session_ids" => self.session_ids().await,
            "rate_limiting" => self.rate_limiting().await,
            "sibling_endpoints" => self.sibling_endpoints().await,
            _ => Ok("skipped"),
        }
    }

    fn transport_security(&mut self) -> &'static str {
        if self.url.scheme() == "https" {
            return "passed";
        }
        if is_loopback(&self.url) {
            self.finding(
                "transport_security",
                "info",
                "Plain HTTP on a loopback address",
                "Traffic to this URL stays on the machine; tokens would travel in clear text if the same server were reached over a network.",
                "Serve it over HTTPS (or behind a TLS-terminating proxy) wherever it is reachable from other machines.",
                Some(self.url.to_string()),
            );
            return "passed";
        }
        self.finding(
            "transport_security",
            "high",
            "MCP endpoint without TLS",
            "Bearer tokens and every tool call travel in clear text over the network: anyone on the path can read and replay them.",
            "Serve the endpoint over HTTPS only (terminate TLS in front of it) and redirect or refuse plain HTTP.",
            Some(self.url.to_string()),
        );
        "failed"
    }

    async fn unauthenticated_initialize(&mut self) -> Result<&'static str, String> {
        let res = self
            .post(&initialize(), Auth::None, None, &[])
            .await
            .map_err(|e| e.0)?;
        if refused(res.status) {
            self.challenge = res
                .headers
                .get_all(WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(str::to_string)
                .next();
            return Ok("passed");
        }
        let answered = (200..300).contains(&res.status)
            && message_of(&res).is_some_and(|m| m.get("result").is_some());
        if answered {
            self.open = true;
            self.access = Some(Auth::None);
            if let Some(v) = message_of(&res)
                .and_then(|m| m["result"]["protocolVersion"].as_str().map(str::to_string))
                .filter(|v| protocol::SUPPORTED_VERSIONS.contains(&v.as_str()))
            {
                self.version = v;
            }
            self.session = self.note_session(&res);
            let sid = self.session.clone();
            let _ = self
                .post(
                    &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
                    Auth::None,
                    sid.as_deref(),
                    &[],
                )
                .await;
            self.finding(
                "unauthenticated_initialize",
                "high",
                "The server accepts clients without authentication",
                "Anyone who can reach the URL can open an MCP session and use whatever the server offers.",
                "Require an OAuth 2.1 bearer token on every request (MCP authorization), or put the server behind an authenticating gateway and make it unreachable otherwise.",
                Some(format!("initialize without a token: HTTP {}", res.status)),
            );
            return Ok("failed");
        }
        Err(format!(
            "initialize without a token answered HTTP {} without a JSON-RPC result",
            res.status
        ))
    }

    fn auth_challenge(&mut self) -> &'static str {
        if self.open {
            return "skipped";
        }
        match &self.challenge {
            Some(c)
                if c.to_ascii_lowercase().starts_with("bearer")
                    && crate::backend_auth::discovery::resource_metadata_param(c).is_some() =>
            {
                "passed"
            }
            other => {
                let evidence = Some(match other {
                    Some(c) => format!("WWW-Authenticate: {c}"),
                    None => "no WWW-Authenticate header".into(),
                });
                self.finding(
                    "auth_challenge",
                    "medium",
                    "The 401 does not point clients at the protected-resource metadata",
                    "MCP clients discover where to sign in from `WWW-Authenticate: Bearer resource_metadata=\"…\"` (RFC 9728); without it, standard clients cannot authenticate on their own.",
                    "Answer unauthenticated requests with 401 and `WWW-Authenticate: Bearer resource_metadata=\"https://…/.well-known/oauth-protected-resource…\"`.",
                    evidence,
                );
                "failed"
            }
        }
    }

    async fn authorization_metadata(&mut self) -> &'static str {
        if self.open {
            return "skipped";
        }
        let url = self.url.to_string();
        match crate::backend_auth::discovery::find(&self.policy, &url).await {
            Ok(_) => "passed",
            Err(why) => {
                self.finding(
                    "authorization_metadata",
                    "medium",
                    "Authorization metadata missing or invalid",
                    "Clients must be able to find and trust the authorization server: the protected-resource metadata must name this exact resource and its authorization server, whose metadata must advertise PKCE with S256.",
                    "Publish RFC 9728 metadata whose `resource` is this URL, and an RFC 8414 authorization server with `code_challenge_methods_supported: [\"S256\"]` and https endpoints.",
                    Some(why),
                );
                "failed"
            }
        }
    }

    async fn invalid_token(&mut self) -> Result<&'static str, String> {
        if self.open {
            return Ok("skipped");
        }
        let res = self
            .post(&initialize(), Auth::Invalid, None, &[])
            .await
            .map_err(|e| e.0)?;
        if refused(res.status) {
            return Ok("passed");
        }
        if (200..300).contains(&res.status) {
            self.note_session(&res);
            self.finding(
                "invalid_token",
                "high",
                "A made-up token is accepted",
                "The server does not verify tokens: any string passes as a credential.",
                "Validate every token (signature, expiry, audience = this resource) and answer 401 otherwise.",
                Some(format!("initialize with a random token: HTTP {}", res.status)),
            );
            return Ok("failed");
        }
        Ok("passed")
    }

    async fn token_accepted(&mut self) -> Result<&'static str, String> {
        if self.target.token.is_none() {
            return Ok("skipped");
        }
        match self.open_session(Auth::Token).await.map_err(|e| e.0)? {
            Some(sid) => {
                self.session = Some(sid);
                self.access = Some(Auth::Token);
                Ok("passed")
            }
            None => {
                let res = self
                    .post(&initialize(), Auth::Token, None, &[])
                    .await
                    .map_err(|e| e.0)?;
                if (200..300).contains(&res.status) {
                    // A stateless server: no session id.
                    self.access = Some(Auth::Token);
                    return Ok("passed");
                }
                self.finding(
                    "token_accepted",
                    "medium",
                    "The supplied token was refused",
                    "The scan could not act as an authenticated client, so the checks that need access were skipped.",
                    "Check the token (expiry, audience, scope) and scan again.",
                    Some(format!("initialize with the token: HTTP {}", res.status)),
                );
                Ok("failed")
            }
        }
    }

    async fn unauthenticated_tools_list(&mut self) -> Result<&'static str, String> {
        let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}});
        let sid = if self.open {
            self.session.clone()
        } else {
            None
        };
        let res = self
            .post(
                &list,
                Auth::None,
                sid.as_deref(),
                &[(protocol::H_VERSION, &self.version.clone())],
            )
            .await
            .map_err(|e| e.0)?;
        if refused(res.status) {
            return Ok("passed");
        }
        let tools = message_of(&res).and_then(|m| m["result"]["tools"].as_array().cloned());
        if let Some(tools) = tools {
            self.finding(
                "unauthenticated_tools_list",
                "high",
                "Tools are listed without authentication",
                "Anyone can enumerate what the server can do (names, descriptions, schemas): the map for an attack.",
                "Require a valid token for every method, including tools/list.",
                Some(format!("{} tools listed without a token", tools.len())),
            );
            return Ok("failed");
        }
        Ok("passed")
    }

    async fn unauthenticated_tools_call(&mut self) -> Result<&'static str, String> {
        // A tool that does not exist: the probe tells whether a call reaches the server
        // without running anything.
        let call = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
            "params": {"name": "authmcp_audit_probe_does_not_exist", "arguments": {}}});
        let sid = if self.open {
            self.session.clone()
        } else {
            None
        };
        let res = self
            .post(
                &call,
                Auth::None,
                sid.as_deref(),
                &[(protocol::H_VERSION, &self.version.clone())],
            )
            .await
            .map_err(|e| e.0)?;
        if refused(res.status) {
            return Ok("passed");
        }
        if (200..300).contains(&res.status) && message_of(&res).is_some() {
            self.finding(
                "unauthenticated_tools_call",
                "high",
                "Tool calls reach the server without authentication",
                "An unauthenticated tools/call was processed (for a tool that does not exist, so nothing ran): real tools can be called by anyone.",
                "Require a valid token before any tools/call is dispatched.",
                Some(format!("tools/call without a token: HTTP {}", res.status)),
            );
            return Ok("failed");
        }
        Ok("passed")
    }

    async fn list_tools(&mut self) -> Result<(), String> {
        if self.listed {
            return Ok(());
        }
        self.listed = true;
        let Some(auth) = self.access else {
            return Ok(());
        };
        let sid = self.session.clone();
        let mut cursor: Option<Value> = None;
        for page in 0..MAX_PAGES {
            let mut params = json!({});
            if let Some(c) = cursor.take() {
                params["cursor"] = c;
            }
            let msg = json!({"jsonrpc": "2.0", "id": 10 + page, "method": "tools/list", "params": params});
            let res = self
                .post(
                    &msg,
                    auth,
                    sid.as_deref(),
                    &[(protocol::H_VERSION, &self.version.clone())],
                )
                .await
                .map_err(|e| e.0)?;
            let Some(m) = message_of(&res) else {
                return Err(format!(
                    "tools/list answered HTTP {} without a JSON-RPC message",
                    res.status
                ));
            };
            if let Some(tools) = m["result"]["tools"].as_array() {
                self.tools.extend(
                    tools
                        .iter()
                        .take(MAX_TOOLS - self.tools.len().min(MAX_TOOLS))
                        .cloned(),
                );
            }
            match m["result"].get("nextCursor") {
                Some(next) if !next.is_null() && self.tools.len() < MAX_TOOLS => {
                    cursor = Some(next.clone())
                }
                _ => break,
            }
        }
        Ok(())
    }

    async fn tool_poisoning(&mut self) -> Result<&'static str, String> {
        if self.access.is_none() {
            return Ok("skipped");
        }
        self.list_tools().await?;
        // Off the async workers: the tools are the target's to make large.
        let (tools, others) = (self.tools.clone(), self.target.others.clone());
        let found = tokio::task::spawn_blocking(move || analysis::poisoning(&tools, &others))
            .await
            .map_err(|_| "the tool analysis failed".to_string())?;
        if found.is_empty() {
            return Ok("passed");
        }
        for f in found {
            let (title, detail, fix) = match f.check {
                "tool_shadowing" => (
                    format!("`{}` shadows another server's tool", f.tool),
                    "Two servers offer a tool of the same name: a model may call the wrong one, and a malicious server can intercept calls meant for a trusted one.",
                    "Rename the tool, or give the servers distinct prefixes on the aggregated endpoint and tell users which is which.",
                ),
                "cross_tool_instructions" => (
                    format!("`{}` gives instructions about other tools", f.tool),
                    "A tool description that tells the model how to use other tools can redirect calls (for example to send data meant for a trusted tool to this one).",
                    "Describe only what the tool itself does; remove instructions about other tools.",
                ),
                _ => (
                    format!("Hidden instructions in `{}`", f.tool),
                    "Tool definitions are read by the model, not the user: instructions, secret-looking text or invisible characters there can make the model exfiltrate data or act against the user (tool poisoning).",
                    "Remove the instructions and invisible characters; if the server is third-party, stop using it and report it. Keep tool pinning on `quarantine` so later changes wait for review.",
                ),
            };
            self.finding(f.check, f.severity, title, detail, fix, Some(f.what));
        }
        Ok("failed")
    }

    fn tool_annotations(&mut self) -> &'static str {
        if self.access.is_none() || !self.listed {
            return "skipped";
        }
        let found = analysis::missing_hints(&self.tools);
        if found.is_empty() {
            return "passed";
        }
        for f in found {
            self.finding(
                "tool_annotations",
                f.severity,
                format!("`{}` lacks risk annotations", f.tool),
                "Clients ask for confirmation based on `destructiveHint` and `openWorldHint`; a tool that executes commands, writes or reaches the network without them may run without the user noticing.",
                "Annotate the tool (`destructiveHint: true` for anything that changes or runs things, `openWorldHint: true` for network access), or `readOnlyHint: true` if it only reads.",
                Some(f.what),
            );
        }
        "failed"
    }

    async fn error_disclosure(&mut self) -> Result<&'static str, String> {
        let auth = self.access.unwrap_or(Auth::None);
        let sid = self.session.clone();
        let v = self.version.clone();
        let probes: [Vec<u8>; 3] = [
            br#"{"jsonrpc": "2.0", "id": 20, "method": "#.to_vec(),
            json!({"jsonrpc": "2.0", "id": 21, "method": "authmcp/audit/unknown", "params": {}}).to_string().into_bytes(),
            json!({"jsonrpc": "2.0", "id": 22, "method": "tools/call", "params": {"name": 12, "arguments": "x"}}).to_string().into_bytes(),
        ];
        let url = self.url.to_string();
        for body in probes {
            let res = self
                .send(
                    Method::POST,
                    &url,
                    Some(body),
                    auth,
                    sid.as_deref(),
                    &[(protocol::H_VERSION, &v)],
                )
                .await
                .map_err(|e| e.0)?;
            let text = String::from_utf8_lossy(&res.body).to_string();
            if let Some(marker) = analysis::disclosure(&text) {
                self.finding(
                    "error_disclosure",
                    "medium",
                    "Error answers disclose internals",
                    "File paths, stack traces or library names in errors tell an attacker how the server is built and where to aim.",
                    "Answer errors with a fixed message and code; log the details on the server only.",
                    Some(format!("`{marker}` in: {}", clip(&text, 300))),
                );
                return Ok("failed");
            }
        }
        Ok("passed")
    }

    async fn malformed_input(&mut self) -> Result<&'static str, String> {
        let auth = self.access.unwrap_or(Auth::None);
        let sid = self.session.clone();
        let v = self.version.clone();
        let url = self.url.to_string();
        let nested = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));
        let mut failed = false;
        for (what, body) in [
            ("malformed JSON", br#"{"jsonrpc": "2.0", "id": 30, "method": "ping", "params": {"#.to_vec()),
            ("a message nested 20,000 levels deep", format!(r#"{{"jsonrpc": "2.0", "id": 31, "method": "ping", "params": {{"x": {nested}}}}}"#).into_bytes()),
        ] {
            match self
                .send(Method::POST, &url, Some(body), auth, sid.as_deref(), &[(protocol::H_VERSION, &v)])
                .await
            {
                Ok(res) if res.status >= 500 => {
                    failed = true;
                    self.finding(
                        "malformed_input",
                        "medium",
                        format!("The server fails on {what}"),
                        "A server error (or a crash behind it) on bad input is a denial-of-service lever and often leaks internals.",
                        "Parse with limits (size, depth) and answer 400 with a JSON-RPC parse error (-32700) or invalid request (-32600).",
                        Some(format!("HTTP {}", res.status)),
                    );
                }
                Ok(_) => {}
                Err(e) => {
                    failed = true;
                    self.finding(
                        "malformed_input",
                        "medium",
                        format!("The server did not answer {what}"),
                        "The connection failed or timed out instead of a clean error: bad input may crash or stall the server.",
                        "Parse with limits (size, depth) and answer 400 with a JSON-RPC error.",
                        Some(e.0),
                    );
                }
            }
        }
        Ok(if failed { "failed" } else { "passed" })
    }

    async fn oversized_input(&mut self) -> Result<&'static str, String> {
        let auth = self.access.unwrap_or(Auth::None);
        let sid = self.session.clone();
        let v = self.version.clone();
        let url = self.url.to_string();
        let body = format!(
            r#"{{"jsonrpc": "2.0", "id": 40, "method": "ping", "params": {{"_meta": {{"pad": "{}"}}}}}}"#,
            "a".repeat(OVERSIZED)
        );
        match self
            .send(
                Method::POST,
                &url,
                Some(body.into_bytes()),
                auth,
                sid.as_deref(),
                &[(protocol::H_VERSION, &v)],
            )
            .await
        {
            Ok(res) if res.status == 413 || res.status == 400 || refused(res.status) => {
                Ok("passed")
            }
            Ok(res) if res.status >= 500 => {
                self.finding(
                    "oversized_input",
                    "medium",
                    "The server fails on a 2 MiB message",
                    "Large messages that end in a server error can exhaust memory; one client can then deny service to all.",
                    "Limit the request body (e.g. 1 MiB) and answer 413.",
                    Some(format!("HTTP {}", res.status)),
                );
                Ok("failed")
            }
            Ok(res) => {
                self.finding(
                    "oversized_input",
                    "low",
                    "A 2 MiB message is accepted",
                    "Without a size limit, a client can make the server read and hold large messages.",
                    "Limit the request body to what real messages need and answer 413 beyond it.",
                    Some(format!("HTTP {}", res.status)),
                );
                Ok("failed")
            }
            // Cutting the upload short is a refusal too.
            Err(_) => Ok("passed"),
        }
    }

    async fn protocol_version(&mut self) -> Result<&'static str, String> {
        let Some(auth) = self.access else {
            return Ok("skipped");
        };
        let sid = self.session.clone();
        let url = self.url.to_string();
        let body = json!({"jsonrpc": "2.0", "id": 50, "method": "ping"})
            .to_string()
            .into_bytes();
        let mut extra = vec![(protocol::H_VERSION, "1999-01-01")];
        if let Some(sid) = sid.as_deref() {
            extra.push((protocol::H_SESSION, sid));
        }
        let res = self
            .send(Method::POST, &url, Some(body), auth, None, &extra)
            .await
            .map_err(|e| e.0)?;
        if res.status == 400 {
            return Ok("passed");
        }
        if (200..300).contains(&res.status)
            && message_of(&res).is_some_and(|m| m.get("result").is_some())
        {
            self.finding(
                "protocol_version",
                "low",
                "An unsupported MCP-Protocol-Version is accepted",
                "The specification requires 400 for a version the server does not support; accepting any version hides mismatches between client and server.",
                "Validate the MCP-Protocol-Version header and answer 400 for unsupported versions.",
                Some("MCP-Protocol-Version: 1999-01-01 answered with a result".into()),
            );
            return Ok("failed");
        }
        Ok("passed")
    }

    async fn origin_validation(&mut self) -> Result<&'static str, String> {
        let Some(auth) = self.access else {
            return Ok("skipped");
        };
        let res = self
            .post(
                &initialize(),
                auth,
                None,
                &[("origin", "http://authmcp-audit.invalid")],
            )
            .await
            .map_err(|e| e.0)?;
        if res.status == 403 || res.status == 400 {
            return Ok("passed");
        }
        if (200..300).contains(&res.status) {
            self.note_session(&res);
            self.finding(
                "origin_validation",
                "medium",
                "Requests from a foreign browser origin are accepted",
                "Without Origin validation a web page the user visits can reach a local or internal MCP server through the browser (DNS rebinding).",
                "Refuse requests whose Origin header is present and not allowed (403).",
                Some(format!("initialize with Origin: http://authmcp-audit.invalid: HTTP {}", res.status)),
            );
            return Ok("failed");
        }
        Ok("passed")
    }

    async fn session_ids(&mut self) -> Result<&'static str, String> {
        let Some(auth) = self.access else {
            return Ok("skipped");
        };
        // One more session, to compare.
        let res = self
            .post(&initialize(), auth, None, &[])
            .await
            .map_err(|e| e.0)?;
        self.note_session(&res);
        if self.session_ids.is_empty() {
            return Ok("skipped");
        }
        let mut failed = false;
        let weak: Vec<String> = self
            .session_ids
            .iter()
            .filter(|id| !analysis::strong_session_id(id))
            .cloned()
            .collect();
        if let Some(id) = weak.first() {
            failed = true;
            self.finding(
                "session_ids",
                "high",
                "Guessable session ids",
                "A session id that is short, numeric or low in entropy can be guessed, and a guessed id can take over another client's session.",
                "Use at least 128 random bits from a secure generator (e.g. a UUIDv4 or 22+ base64url characters).",
                Some(format!("session id `{}`", clip(id, 60))),
            );
        }
        let mut sorted = self.session_ids.clone();
        sorted.sort();
        sorted.dedup();
        if sorted.len() < self.session_ids.len() {
            failed = true;
            self.finding(
                "session_ids",
                "high",
                "The same session id was issued twice",
                "Two initializations got the same id: sessions of different clients can mix.",
                "Issue a fresh random id per initialize.",
                None,
            );
        }
        // Bound to its owner: the session without the credential that opened it.
        if auth == Auth::Token
            && !self.open
            && let Some(sid) = self.session.clone()
        {
            let list = json!({"jsonrpc": "2.0", "id": 60, "method": "tools/list", "params": {}});
            let res = self
                .post(&list, Auth::Invalid, Some(&sid), &[])
                .await
                .map_err(|e| e.0)?;
            if !refused(res.status) && message_of(&res).is_some_and(|m| m.get("result").is_some()) {
                failed = true;
                self.finding(
                    "session_ids",
                    "high",
                    "A session id works without its credential",
                    "Whoever learns a session id can use the session with any token: the id alone is the credential.",
                    "Check the token on every request and bind each session to the identity that opened it.",
                    None,
                );
            }
        }
        Ok(if failed { "failed" } else { "passed" })
    }

    async fn rate_limiting(&mut self) -> Result<&'static str, String> {
        let Some(auth) = self.access else {
            return Ok("skipped");
        };
        let sid = self.session.clone();
        let v = self.version.clone();
        for i in 0..RATE_PROBE {
            let ping = json!({"jsonrpc": "2.0", "id": 100 + i, "method": "ping"});
            let res = self
                .post(&ping, auth, sid.as_deref(), &[(protocol::H_VERSION, &v)])
                .await
                .map_err(|e| e.0)?;
            if res.status == 429 {
                return Ok("passed");
            }
        }
        self.finding(
            "rate_limiting",
            "low",
            format!("No rate limit within {RATE_PROBE} quick requests"),
            "The probe is deliberately small, so this only says the limit (if any) is above it; without one, a single client can exhaust the server or its upstream APIs.",
            "Limit requests per client (and per tool), answering 429 with Retry-After.",
            None,
        );
        Ok("failed")
    }

    async fn sibling_endpoints(&mut self) -> Result<&'static str, String> {
        let origin = self.url.origin().ascii_serialization();
        let own = self.url.path().trim_end_matches('/').to_string();
        let mut failed = false;
        for path in ["/mcp", "/messages", "/sse", "/mcp/sse"] {
            if path == own {
                continue;
            }
            let url = format!("{origin}{path}");
            let res = if path.ends_with("sse") {
                self.send(
                    Method::GET,
                    &url,
                    None,
                    Auth::None,
                    None,
                    &[("accept", "text/event-stream")],
                )
                .await
            } else {
                let body = initialize().to_string().into_bytes();
                self.send(Method::POST, &url, Some(body), Auth::None, None, &[])
                    .await
            };
            // Unreachable, slow or redirected elsewhere: nothing answered there.
            let Ok(res) = res else { continue };
            let is_stream = res
                .headers
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("text/event-stream"));
            let open = (200..300).contains(&res.status)
                && ((path.ends_with("sse")
                    && is_stream
                    && res.body.windows(5).any(|w| w == b"event"))
                    || (!path.ends_with("sse")
                        && message_of(&res).is_some_and(|m| m.get("result").is_some())));
            if open {
                failed = true;
                self.finding(
                    "sibling_endpoints",
                    "high",
                    format!("`{path}` on the same host answers without authentication"),
                    "Another MCP endpoint next to the scanned one is open: protecting one path does not help if the same server is reachable through another.",
                    "Protect every MCP endpoint of the server (streamable HTTP and legacy SSE alike), or remove the ones not used.",
                    Some(format!("{url}: HTTP {}", res.status)),
                );
            }
        }
        Ok(if failed { "failed" } else { "passed" })
    }
}

/// Runs every check against `target` (already through `preflight`). `hook` hears of each step
/// and may stop the scan (it then returns the checks done so far).
pub async fn run(target: Target, url: url::Url, mut hook: Hook<'_>) -> AuditReport {
    let started_at = crate::db::now();
    let mut scan = Scan {
        policy: Policy {
            allow_private: target.allow_private,
            allow_http: true,
            timeout: REQUEST_TIMEOUT,
            max_bytes: MAX_RESPONSE,
            // The opt-in covers the target, not hosts its answers name.
            private_origin: Some(fetch::origin_key(&url)),
        },
        url,
        target,
        findings: Vec::new(),
        checks: Vec::new(),
        open: false,
        challenge: None,
        access: None,
        session: None,
        version: protocol::LATEST_HANDSHAKE_VERSION.to_string(),
        session_ids: Vec::new(),
        tools: Vec::new(),
        listed: false,
    };
    for (i, (id, name)) in CHECKS.iter().enumerate() {
        if !hook(i, Some(name), scan.summary()).await {
            break;
        }
        let before = scan.findings.len();
        let (status, note) = match scan.check(i).await {
            Ok(status) => (status, None),
            Err(why) => ("error", Some(why)),
        };
        let status =
            if status == "passed" && scan.findings[before..].iter().any(|f| f.severity != "info") {
                "failed"
            } else {
                status
            };
        scan.checks.push(AuditCheck {
            id: (*id).into(),
            name: (*name).into(),
            status: status.into(),
            note,
        });
    }
    hook(scan.checks.len(), None, scan.summary()).await;
    let summary = scan.summary();
    // Most severe first.
    let rank = |s: &str| match s {
        "high" => 0,
        "medium" => 1,
        "low" => 2,
        _ => 3,
    };
    scan.findings.sort_by_key(|f| rank(&f.severity));
    AuditReport {
        target: shown_url(&scan.url),
        server: scan.target.server.clone(),
        started_at,
        finished_at: crate::db::now(),
        summary,
        tools: u32::try_from(scan.tools.len()).unwrap_or(u32::MAX),
        findings: scan.findings,
        checks: scan.checks,
    }
}
