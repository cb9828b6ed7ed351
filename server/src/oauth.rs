//! The OAuth 2.1 authorization server for MCP clients, and the protected-resource metadata of
//! the MCP endpoints.
//!
//! * Resource side (RFC 9728): `/.well-known/oauth-protected-resource/mcp` and
//!   `…/mcp/{server}` (and the root, for `/mcp`) name the gateway as the authorization server;
//!   each `resource` is exactly the endpoint's URL. Tokens are bound to the resource asked for
//!   (RFC 8707): a token for `/mcp/a` is refused at `/mcp/b`; one for `/mcp` works on every
//!   server its user may use.
//! * Authorization server (RFC 8414 metadata, also as `openid-configuration`): authorization
//!   code with PKCE S256 only, exact redirect-URI matching (any port for loopback redirects, RFC
//!   8252), `iss` in the authorization response (RFC 9207), refresh-token rotation with reuse
//!   detection, revocation (RFC 7009), client authentication `client_secret_basic`,
//!   `client_secret_post` or `none`.
//! * Clients (`clients.rs`): dynamic registration (RFC 7591), client ID metadata documents
//!   (fetched with SSRF protection), and clients pre-registered by admins.
//! * The browser step (`flow.rs`): `/oauth/authorize` validates the request and sends the
//!   browser to the admin UI's consent page (`/consent`), which signs the user in and shows the
//!   client, its redirect host and the scopes; the decision comes back to
//!   `/oauth/api/decision`, which answers with where to send the browser.

pub mod clients;
pub mod flow;
pub mod grants;

use std::collections::HashMap;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::cache::TtlMap;
use crate::config::Config;
use crate::db::oauth::ClientRow;
use crate::error::{ApiError, AppPath};
use crate::openapi::router::ApiRouter;
use crate::ratelimit::IpLimiter;
use crate::routes;
use crate::state::AppState;

/// Full MCP access.
pub const SCOPE_FULL: &str = "mcp";
/// Discovery and lists only (no calls).
pub const SCOPE_READ: &str = "mcp:read";
pub const SCOPES: &[&str] = &[SCOPE_FULL, SCOPE_READ];

pub const AUTHORIZE_PATH: &str = "/oauth/authorize";
pub const TOKEN_PATH: &str = "/oauth/token";
pub const REGISTER_PATH: &str = "/oauth/register";
pub const REVOKE_PATH: &str = "/oauth/revoke";
/// The admin UI page that asks for consent.
pub const CONSENT_PAGE: &str = "/consent";

/// Per-replica state of the authorization server.
pub struct OAuthState {
    pub register_limit: IpLimiter,
    pub token_limit: IpLimiter,
    /// Client metadata documents fetched recently, by URL.
    pub cimd_cache: TtlMap<String, std::sync::Arc<ClientRow>>,
}

impl OAuthState {
    pub fn new(config: &Config) -> OAuthState {
        OAuthState {
            register_limit: IpLimiter::new(config.oauth.register_per_minute),
            token_limit: IpLimiter::new(config.oauth.token_per_minute),
            cimd_cache: TtlMap::new(),
        }
    }
}

/// The JSON endpoints (in the OpenAPI document).
pub fn router() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(resource_metadata_root))
        .routes(routes!(resource_metadata_aggregated))
        .routes(routes!(resource_metadata_server))
        .routes(routes!(server_metadata))
        .routes(routes!(openid_configuration))
        .routes(routes!(clients::register))
        .routes(routes!(flow::consent_request))
        .routes(routes!(flow::consent_decision))
}

/// The browser redirect and the form-encoded endpoints (OAuth's own formats).
pub fn form_router() -> Router<AppState> {
    Router::new()
        .route(AUTHORIZE_PATH, get(flow::authorize)) // not json: browser redirect (RFC 6749 §4.1.1)
        .route(TOKEN_PATH, post(flow::token)) // not json: form-encoded (RFC 6749 §3.2)
        .route(REVOKE_PATH, post(flow::revoke)) // not json: form-encoded (RFC 7009)
}

/// `OAuthError`: the one error type of the OAuth endpoints' own formats (token, revocation,
/// registration): RFC 6749 §5.2's `{"error", "error_description"}`, never cached, with
/// `Retry-After` or a `Basic` challenge where the error needs one. Protocol errors are `Err`,
/// success is `Ok`; an internal failure (`From<ApiError>`) is logged once and answered as
/// `server_error` without detail.
#[derive(Debug)]
pub struct OAuthError {
    pub status: StatusCode,
    pub error: &'static str,
    pub description: String,
    pub retry_after: Option<u64>,
    /// `WWW-Authenticate: Basic` for a client that tried HTTP Basic authentication (RFC 6749
    /// §5.2).
    pub basic_challenge: bool,
}

impl OAuthError {
    pub fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        OAuthError {
            status,
            error,
            description: description.into(),
            retry_after: None,
            basic_challenge: false,
        }
    }

    /// 400 `invalid_request`.
    pub fn invalid_request(description: impl Into<String>) -> Self {
        OAuthError::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    /// 400 `invalid_grant`.
    pub fn invalid_grant(description: impl Into<String>) -> Self {
        OAuthError::new(StatusCode::BAD_REQUEST, "invalid_grant", description)
    }

    /// 429 `slow_down` with `Retry-After`, for an address over its budget.
    pub fn slow_down(limited: crate::ratelimit::IpLimited, description: &str) -> Self {
        OAuthError {
            retry_after: Some(limited.retry_after_secs),
            ..OAuthError::new(StatusCode::TOO_MANY_REQUESTS, "slow_down", description)
        }
    }
}

impl From<ApiError> for OAuthError {
    fn from(e: ApiError) -> Self {
        tracing::error!(error = ?e, "OAuth endpoint failed");
        OAuthError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "the gateway could not complete the request",
        )
    }
}

impl From<sqlx::Error> for OAuthError {
    fn from(e: sqlx::Error) -> Self {
        OAuthError::from(ApiError::from(e))
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let mut res = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            json!({ "error": self.error, "error_description": self.description }).to_string(),
        )
            .into_response();
        no_store(res.headers_mut());
        if let Some(secs) = self.retry_after {
            res.headers_mut().insert(header::RETRY_AFTER, secs.into());
        }
        if self.basic_challenge {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"oauth\""),
            );
        }
        res
    }
}

pub fn no_store(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// Parses an `application/x-www-form-urlencoded` body or query; a repeated parameter, or one
/// holding a NUL (`%00`, which Postgres text cannot hold), is an error (its description).
pub fn parse_form(body: &[u8]) -> Result<HashMap<String, String>, String> {
    let mut out = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(body) {
        if k.contains('\0') || v.contains('\0') {
            return Err("a parameter contains the NUL character (%00)".into());
        }
        if out.insert(k.to_string(), v.to_string()).is_some() {
            return Err(format!("parameter `{k}` is repeated"));
        }
    }
    Ok(out)
}

/// Decodes one `application/x-www-form-urlencoded` value (`+` is a space, `%XX` a byte);
/// invalid escapes are kept as they are.
pub fn form_decode(value: &str) -> String {
    let hex = |b: u8| char::from(b).to_digit(16);
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                bytes.get(i + 1).and_then(|b| hex(*b)),
                bytes.get(i + 2).and_then(|b| hex(*b)),
            ) {
                (Some(hi), Some(lo)) => {
                    out.push(u8::try_from(hi * 16 + lo).unwrap_or(b'%'));
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The resources tokens can be bound to: `<PUBLIC_URL>/mcp` and `<PUBLIC_URL>/mcp/{server}`
/// for an existing server. Returns the canonical form (as in the PRM documents).
pub fn canonical_resource(state: &AppState, raw: &str) -> Option<String> {
    let public = &state.config.public_url;
    let trimmed = raw.trim_end_matches('/');
    let rest = trimmed.strip_prefix(public.as_str())?;
    if rest == "/mcp" {
        return Some(format!("{public}/mcp"));
    }
    let server = rest.strip_prefix("/mcp/")?;
    state
        .mcp
        .registry
        .get(server)
        .map(|b| format!("{public}/mcp/{}", b.name))
}

fn prm(state: &AppState, path: &str, name: &str) -> Value {
    let public = &state.config.public_url;
    json!({
        "resource": format!("{public}/{path}"),
        "authorization_servers": [public],
        "scopes_supported": SCOPES,
        "bearer_methods_supported": ["header"],
        "resource_name": name,
        "resource_documentation": format!("{public}/swagger-ui/"),
    })
}

fn json_doc(value: Value) -> Response {
    let mut res = axum::Json(value).into_response();
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    res.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    res
}

/// Protected-resource metadata of the aggregated `/mcp` (the root document, for clients that
/// do not use the path-suffixed one).
#[utoipa::path(get, path = "/.well-known/oauth-protected-resource", tag = "oauth", operation_id = "resource_metadata_root",
    responses((status = 200, description = "RFC 9728 metadata of `/mcp`", body = Object)))]
async fn resource_metadata_root(State(state): State<AppState>) -> Response {
    json_doc(prm(&state, "mcp", "AuthMCP Gateway (all servers)"))
}

/// Protected-resource metadata of the aggregated `/mcp` (RFC 9728).
#[utoipa::path(get, path = "/.well-known/oauth-protected-resource/mcp", tag = "oauth", operation_id = "resource_metadata_aggregated",
    responses((status = 200, description = "RFC 9728 metadata of `/mcp`", body = Object)))]
async fn resource_metadata_aggregated(State(state): State<AppState>) -> Response {
    json_doc(prm(&state, "mcp", "AuthMCP Gateway (all servers)"))
}

/// Protected-resource metadata of `/mcp/{server}` (RFC 9728).
#[utoipa::path(get, path = "/.well-known/oauth-protected-resource/mcp/{server}", tag = "oauth", operation_id = "resource_metadata_server",
    params(("server" = String, Path, description = "Server name")),
    responses(
        (status = 200, description = "RFC 9728 metadata of `/mcp/{server}`", body = Object),
        (status = 404, description = "No such server", body = shared::error::ApiErrorBody),
    ))]
async fn resource_metadata_server(
    State(state): State<AppState>,
    AppPath(server): AppPath<String>,
) -> Result<Response, ApiError> {
    let backend = state
        .mcp
        .registry
        .get(&server)
        .filter(|b| b.enabled)
        .ok_or(ApiError::NotFound("no such MCP server"))?;
    Ok(json_doc(prm(
        &state,
        &format!("mcp/{}", backend.name),
        &format!("AuthMCP Gateway: {}", backend.name),
    )))
}

fn as_metadata(state: &AppState) -> Value {
    let public = &state.config.public_url;
    let oauth = &state.config.oauth;
    let mut doc = json!({
        "issuer": public,
        "authorization_endpoint": format!("{public}{AUTHORIZE_PATH}"),
        "token_endpoint": format!("{public}{TOKEN_PATH}"),
        "revocation_endpoint": format!("{public}{REVOKE_PATH}"),
        "jwks_uri": format!("{public}{}", shared::routes::JWKS),
        "scopes_supported": SCOPES,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "authorization_response_iss_parameter_supported": true,
        "client_id_metadata_document_supported": oauth.cimd,
        "service_documentation": format!("{public}/swagger-ui/"),
    });
    if state.runtime.get().oauth_dcr {
        doc["registration_endpoint"] = json!(format!("{public}{REGISTER_PATH}"));
    }
    doc
}

/// Authorization server metadata (RFC 8414).
#[utoipa::path(get, path = "/.well-known/oauth-authorization-server", tag = "oauth", operation_id = "authorization_server_metadata",
    responses((status = 200, description = "RFC 8414 metadata", body = Object)))]
async fn server_metadata(State(state): State<AppState>) -> Response {
    json_doc(as_metadata(&state))
}

/// The same metadata at the OpenID discovery location (for clients that only look there).
#[utoipa::path(get, path = "/.well-known/openid-configuration", tag = "oauth", operation_id = "openid_configuration",
    responses((status = 200, description = "RFC 8414 metadata", body = Object)))]
async fn openid_configuration(State(state): State<AppState>) -> Response {
    let mut doc = as_metadata(&state);
    doc["subject_types_supported"] = json!(["public"]);
    json_doc(doc)
}

/// A small HTML page for errors that must not be sent to a redirect URI (unknown client,
/// mismatched redirect URI): shown to the user, never redirected.
pub fn error_page(status: StatusCode, title: &str, detail: &str) -> Response {
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\
         <meta name=\"viewport\" content=\"width=device-width\"></head>\
         <body style=\"font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem\">\
         <h1>{t}</h1><p>{d}</p><p>Return to the application and try again, or ask your administrator.</p>\
         </body></html>",
        t = escape(title),
        d = escape(detail),
    );
    let mut res = (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
            ),
        ],
        body,
    )
        .into_response();
    no_store(res.headers_mut());
    res
}

#[cfg(test)]
mod tests {
    #[test]
    fn form_values_decode() {
        assert_eq!(super::form_decode("a+b%26c%3Dd"), "a b&c=d");
        assert_eq!(super::form_decode("100%"), "100%");
        assert_eq!(super::form_decode("%zz%é"), "%zz%é");
        assert_eq!(super::form_decode("file%3A%2F%2F%2Fx"), "file:///x");
    }
}
