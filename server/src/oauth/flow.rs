//! The authorization-code flow: `/oauth/authorize`, the consent API behind the admin UI's
//! consent page, `/oauth/token` (code exchange and refresh) and `/oauth/revoke`.
//!
//! A pending authorization request travels sealed (AES-256-GCM, 10 minutes) between the
//! authorize endpoint, the consent page and the decision, so any replica can finish it.
//! Codes are single-use, bound to the client, redirect URI, PKCE challenge, resource and
//! scope, and stored only as hashes; a reused code revokes what was issued with it.
//! Consent is remembered per user and client (`oauth_grants`); the consent page signs the user
//! in with a sealed, HttpOnly, SameSite=Lax cookie (`__Host-` and Secure on https), so a
//! remembered grant is not asked for again.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use shared::auth::LoginRequest;
use shared::oauth::{ConsentDecision, ConsentRequest, ConsentResult};

use crate::auth::identity::{Principal, RequestMeta};
use crate::auth::login;
use crate::auth::tokens::{self, Audience, OAuthBinding, hash_token, random_token};
use crate::db::{self, oauth::ClientRow, oauth::CodeRow};
use crate::error::{ApiError, AppJson, AppQuery};
use crate::events::{EventType, Severity};
use crate::oauth::clients::{self, LookupError, redirect_matches};
use crate::oauth::{
    CONSENT_PAGE, OAuthError, SCOPE_FULL, SCOPES, canonical_resource, error_page, no_store,
    parse_form,
};
use crate::state::AppState;

const REQUEST_CONTEXT: &str = "oauth:authorization-request";
const COOKIE_CONTEXT: &str = "oauth:consent-session";
/// How long a user has to finish the consent page.
const REQUEST_TTL: i64 = 600;
/// Codes live this long.
const CODE_TTL: i64 = 60;
/// The consent page's sign-in lasts this long.
const COOKIE_TTL: i64 = 12 * 3600;
const CODE_PREFIX: &str = "amcode_";

/// A pending authorization request (sealed into the consent page's URL).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct AuthRequest {
    /// `oauth_clients.id`.
    c: i64,
    /// The client id as presented.
    i: String,
    /// Redirect URI (the one the client sent, or its only registered one).
    r: String,
    s: Option<String>,
    /// PKCE S256 challenge.
    p: String,
    /// Canonical resource.
    a: String,
    /// Granted scope (space-separated).
    o: String,
    /// Expiry.
    e: i64,
}

fn seal<T: Serialize>(state: &AppState, value: &T, context: &str) -> Result<String, ApiError> {
    let json = serde_json::to_vec(value).map_err(|e| ApiError::Internal(e.into()))?;
    Ok(URL_SAFE_NO_PAD.encode(state.secret_box.seal(&json, context)?))
}

fn open<T: for<'de> Deserialize<'de>>(state: &AppState, sealed: &str, context: &str) -> Option<T> {
    let bytes = URL_SAFE_NO_PAD.decode(sealed).ok()?;
    let json = state.secret_box.open(&bytes, context).ok()?;
    serde_json::from_slice(&json).ok()
}

/// `redirect_uri` with parameters added (the authorization response, RFC 6749 §4.1.2, with
/// `iss` per RFC 9207).
fn redirect_with(base: &str, params: &[(&str, Option<&str>)]) -> String {
    let Ok(mut url) = url::Url::parse(base) else {
        return base.to_string();
    };
    {
        let mut pairs = url.query_pairs_mut();
        for (k, v) in params {
            if let Some(v) = v {
                pairs.append_pair(k, v);
            }
        }
    }
    url.to_string()
}

fn error_redirect(state: &AppState, req: &AuthRequest, error: &str, description: &str) -> String {
    redirect_with(
        &req.r,
        &[
            ("error", Some(error)),
            ("error_description", Some(description)),
            ("state", req.s.as_deref()),
            ("iss", Some(&state.config.public_url)),
        ],
    )
}

fn see_other(location: &str) -> Response {
    let mut res = Redirect::to(location).into_response();
    no_store(res.headers_mut());
    res
}

fn cookie_name(state: &AppState) -> &'static str {
    if state.config.public_url.starts_with("https://") {
        "__Host-amg_consent"
    } else {
        "amg_consent"
    }
}

#[derive(Serialize, Deserialize)]
struct ConsentCookie {
    u: i64,
    e: i64,
    /// Fingerprint of the user's password hash: a password change (or reset) ends the
    /// consent page's sign-in.
    h: String,
    /// Random id: signing out of the admin UI in this browser revokes it (a used nonce
    /// `consent:<n>` until the cookie expires), on every replica. Cookies without one (issued
    /// before it existed) are not accepted.
    #[serde(default)]
    n: String,
}

/// Reads and opens the consent sign-in cookie, if the request carries one.
fn read_consent_cookie(state: &AppState, headers: &HeaderMap) -> Option<ConsentCookie> {
    let value = crate::cookies::read(headers, cookie_name(state))?;
    open(state, &value, COOKIE_CONTEXT)
}

/// Ends this browser's consent sign-in (with the admin UI session it signs out of): revoked
/// on every replica, and the returned header clears the cookie.
pub async fn end_consent_sign_in(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<HeaderValue, ApiError> {
    if let Some(cookie) = read_consent_cookie(state, headers)
        && !cookie.n.is_empty()
    {
        db::replicas::use_nonce(&state.db.pool, &format!("consent:{}", cookie.n), cookie.e).await?;
    }
    crate::cookies::set(
        &state.config.public_url,
        cookie_name(state),
        "",
        "/",
        "Lax",
        0,
    )
}

/// A short fingerprint of the stored password hash (never the hash itself).
fn credential_version(user: &db::users::UserRow) -> String {
    hash_token(&user.password_hash)[..16].to_string()
}

pub(crate) fn consent_cookie(
    state: &AppState,
    user: &db::users::UserRow,
) -> Result<HeaderValue, ApiError> {
    let sealed = seal(
        state,
        &ConsentCookie {
            u: user.id,
            e: db::now() + COOKIE_TTL,
            h: credential_version(user),
            n: crate::auth::identity::hex(&crate::keys::random_bytes::<16>()?),
        },
        COOKIE_CONTEXT,
    )?;
    crate::cookies::set(
        &state.config.public_url,
        cookie_name(state),
        &sealed,
        "/",
        "Lax",
        COOKIE_TTL as u64,
    )
}

/// The user signed in on the consent page of this browser, if still enabled.
pub(crate) async fn cookie_user(
    state: &AppState,
    headers: &HeaderMap,
) -> Option<db::users::UserRow> {
    let cookie = read_consent_cookie(state, headers)?;
    if cookie.e <= db::now() || cookie.n.is_empty() {
        return None;
    }
    // Signed out since (fails closed when the database cannot say).
    if db::replicas::nonce_used(&state.db.pool, &format!("consent:{}", cookie.n))
        .await
        .unwrap_or(true)
    {
        return None;
    }
    db::users::find_by_id(&state.db.pool, cookie.u)
        .await
        .ok()
        .flatten()
        .filter(|u| u.enabled != 0 && credential_version(u) == cookie.h)
}

/// Whether the user may use the resource: `/mcp` always (it shows only their servers), a
/// server when they are an admin or were granted it.
async fn may_use_resource(
    state: &AppState,
    user: &db::users::UserRow,
    resource: &str,
) -> Result<bool, ApiError> {
    let prefix = format!("{}/mcp/", state.config.public_url);
    let Some(server) = resource.strip_prefix(&prefix) else {
        return Ok(true);
    };
    let Some(backend) = state.mcp.registry.get(server).filter(|b| b.enabled) else {
        return Ok(false);
    };
    let principal = Principal::signed_in(user);
    Ok(state.mcp.registry.may_use(&principal, &backend).await?)
}

/// Issues a code and remembers the consent, in one transaction.
/// A consent just given on the consent page: remembered, and recorded in the audit log in the
/// same transaction as the code.
struct Given<'a> {
    username: &'a str,
    ip: &'a str,
    client_id: &'a str,
}

/// Issues a code for `req`; with `given`, the user just approved it on the consent page, so the
/// consent is remembered and recorded (a silent issue from a remembered consent changes
/// nothing).
async fn issue_code(
    state: &AppState,
    req: &AuthRequest,
    user_id: i64,
    given: Option<Given<'_>>,
) -> Result<String, ApiError> {
    let code = random_token(CODE_PREFIX)?;
    let now = db::now();
    let mut tx = state.db.begin().await?;
    db::oauth::insert_code(
        &mut *tx,
        &CodeRow {
            code_hash: hash_token(&code),
            client_key: req.c,
            user_id,
            redirect_uri: req.r.clone(),
            code_challenge: req.p.clone(),
            resource: req.a.clone(),
            scope: req.o.clone(),
            created_at: now,
            expires_at: now + CODE_TTL,
            used_at: None,
            session_id: None,
        },
    )
    .await?;
    if let Some(given) = given {
        crate::accounts::record_auth(
            &mut *tx,
            user_id,
            given.username,
            given.ip,
            "oauth.authorize",
            json!({ "client_id": given.client_id, "resource": req.a, "scope": req.o }),
        )
        .await?;
        // The consent covers this resource, with exactly the scopes approved for it (added
        // to those approved there before); other resources keep theirs.
        let grant = db::oauth::find_grant(&mut *tx, user_id, req.c).await?;
        let mut resources: Vec<String> = grant
            .as_ref()
            .map(|g| {
                g.resources
                    .split(' ')
                    .filter(|r| !r.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        if !resources.contains(&req.a) {
            resources.push(req.a.clone());
        }
        // The grant row's scope: every scope approved anywhere (for display).
        let all = union_scopes(grant.as_ref().map_or("", |g| g.scope.as_str()), &req.o);
        db::oauth::upsert_grant(&mut *tx, user_id, req.c, &all, &resources.join(" "), now).await?;
        let before = db::oauth::grant_scopes_on(&mut *tx, user_id, req.c, &req.a)
            .await?
            .into_iter()
            .find(|(uri, _)| *uri == req.r)
            .map(|(_, scope)| scope);
        let here = union_scopes(before.as_deref().unwrap_or(""), &req.o);
        db::oauth::set_grant_scope(&mut *tx, user_id, req.c, &req.a, &req.r, &here, now).await?;
    }
    tx.commit().await?;
    Ok(code)
}

/// The scopes of `a` and `b` (space-separated), each once, in a stable order.
fn union_scopes(a: &str, b: &str) -> String {
    let mut all: Vec<&str> = a
        .split(' ')
        .chain(b.split(' '))
        .filter(|s| !s.is_empty())
        .collect();
    all.sort_unstable();
    all.dedup();
    all.join(" ")
}

fn code_redirect(state: &AppState, req: &AuthRequest, code: &str) -> String {
    redirect_with(
        &req.r,
        &[
            ("code", Some(code)),
            ("state", req.s.as_deref()),
            ("iss", Some(&state.config.public_url)),
        ],
    )
}

fn lookup_page(e: LookupError) -> Response {
    match e {
        LookupError::Unknown => error_page(
            StatusCode::BAD_REQUEST,
            "Unknown application",
            "This application is not registered with the gateway.",
        ),
        LookupError::Revoked => error_page(
            StatusCode::BAD_REQUEST,
            "Application blocked",
            "An administrator revoked this application's access.",
        ),
        LookupError::Document(reason) => error_page(
            StatusCode::BAD_REQUEST,
            "This application cannot sign in",
            &reason,
        ),
        LookupError::Internal(e) => {
            tracing::error!(error = %e, "OAuth client lookup failed");
            error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "The gateway could not check this application.",
            )
        }
    }
}

/// A PKCE S256 challenge: 43 characters of base64url.
fn valid_challenge(c: &str) -> bool {
    c.len() == 43
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A PKCE verifier: 43 to 128 unreserved characters (RFC 7636 §4.1).
fn valid_verifier(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Requested scopes: known ones kept (in the gateway's order), `offline_access` accepted and
/// ignored (refresh tokens are always issued), anything else refused. None asked: the client's
/// registered scope, else `mcp`.
fn granted_scope(requested: Option<&str>, client: &ClientRow) -> Result<String, String> {
    let raw = requested
        .filter(|s| !s.trim().is_empty())
        .or(client.scope.as_deref())
        .unwrap_or(SCOPE_FULL);
    let asked: Vec<&str> = raw.split(' ').filter(|s| !s.is_empty()).collect();
    if let Some(unknown) = asked
        .iter()
        .find(|s| !SCOPES.contains(s) && **s != "offline_access")
    {
        return Err(format!("unknown scope `{unknown}`"));
    }
    let granted: Vec<&str> = SCOPES
        .iter()
        .copied()
        .filter(|s| asked.contains(s))
        .collect();
    Ok(if granted.is_empty() {
        SCOPE_FULL.to_string()
    } else {
        granted.join(" ")
    })
}

/// `GET /oauth/authorize`: validates the request; errors about the client or its redirect URI
/// are shown, all others go back to the redirect URI. A user who already consented (and is
/// signed in on this browser) goes straight back with a code; anyone else to the consent page.
pub async fn authorize(
    State(state): State<AppState>,
    meta: RequestMeta,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let params = match parse_form(query.unwrap_or_default().as_bytes()) {
        Ok(p) => p,
        Err(_) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "Invalid sign-in request",
                "A parameter is repeated or contains the NUL character.",
            );
        }
    };
    let Some(client_id) = params.get("client_id") else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Invalid sign-in request",
            "The request names no client_id.",
        );
    };
    // A URL client id makes the gateway fetch a document: bounded per address.
    if (client_id.starts_with("https://") || client_id.starts_with("http://"))
        && state
            .oauth
            .register_limit
            .admit(&state, &meta, "oauth_authorize")
            .is_err()
    {
        return error_page(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many sign-in attempts",
            "Too many sign-ins with new applications from this address; try again in a minute.",
        );
    }
    let client = match clients::lookup(&state, client_id).await {
        Ok(c) => c,
        Err(e) => return lookup_page(e),
    };
    let registered = client.redirect_uris();
    let redirect_uri = match params.get("redirect_uri") {
        Some(r) if registered.iter().any(|reg| redirect_matches(reg, r)) => r.clone(),
        None if registered.len() == 1 => registered[0].clone(),
        _ => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "Redirect address not registered",
                "The application asked to return to an address it did not register, so the \
                 gateway will not send you there.",
            );
        }
    };
    let mut req = AuthRequest {
        c: client.id,
        i: client.client_id.clone(),
        r: redirect_uri,
        s: params.get("state").cloned(),
        p: String::new(),
        a: String::new(),
        o: String::new(),
        e: db::now() + REQUEST_TTL,
    };
    // Errors go back to the redirect URI only for a client an admin registered or that the
    // signed-in user approved before: anyone can register a client with any redirect URI, and
    // an error redirect needs no sign-in, so for other clients the gateway would be an open
    // redirector (RFC 9700 §4.11.2). They get the gateway's own error page instead.
    let signed_in = cookie_user(&state, &headers).await;
    // Approved means approved for this redirect URI: a client may register several, and the
    // user saw only the one they approved.
    let trusted = client.kind == "admin"
        || match &signed_in {
            Some(user) => db::oauth::approved_redirects(&state.db.pool, user.id, client.id)
                .await
                .unwrap_or_default()
                .iter()
                .any(|uri| redirect_matches(uri, &req.r)),
            None => false,
        };
    let back = |req: &AuthRequest, error: &str, description: &str| {
        if trusted {
            see_other(&error_redirect(&state, req, error, description))
        } else {
            error_page(
                StatusCode::BAD_REQUEST,
                "Invalid sign-in request",
                // Only the fixed error code: the description may echo what the request said.
                &format!("The application sent a request the gateway cannot accept ({error})."),
            )
        }
    };
    if params.get("response_type").map(String::as_str) != Some("code") {
        return back(
            &req,
            "unsupported_response_type",
            "only response_type=code is supported",
        );
    }
    match (
        params.get("code_challenge"),
        params.get("code_challenge_method").map(String::as_str),
    ) {
        (Some(c), Some("S256")) if valid_challenge(c) => req.p = c.clone(),
        (Some(_), Some("S256")) => {
            return back(&req, "invalid_request", "malformed code_challenge");
        }
        (None, _) => {
            return back(
                &req,
                "invalid_request",
                "PKCE is required: send code_challenge with code_challenge_method=S256",
            );
        }
        (Some(_), _) => {
            return back(
                &req,
                "invalid_request",
                "code_challenge_method must be S256",
            );
        }
    }
    req.a = match params.get("resource") {
        None => format!("{}/mcp", state.config.public_url),
        Some(raw) => match canonical_resource(&state, raw) {
            Some(r) => r,
            None => {
                return back(
                    &req,
                    "invalid_target",
                    "resource must be this gateway's /mcp or /mcp/{server} URL",
                );
            }
        },
    };
    req.o = match granted_scope(params.get("scope").map(String::as_str), &client) {
        Ok(s) => s,
        Err(m) => return back(&req, "invalid_scope", &m),
    };
    // A remembered consent: no page, unless the client asks for one.
    let prompt_consent = params
        .get("prompt")
        .is_some_and(|p| p.split(' ').any(|p| p == "consent" || p == "login"));
    if !prompt_consent && let Some(user) = signed_in {
        // Remembered only for the scopes the user saw and approved for this very resource and
        // the redirect URI they saw (a client may have registered others). `mcp` includes
        // `mcp:read`.
        let approved = db::oauth::grant_scopes_on(&state.db.pool, user.id, client.id, &req.a)
            .await
            .unwrap_or_default();
        let covered = approved.iter().any(|(uri, scope)| {
            redirect_matches(uri, &req.r)
                && req.o.split(' ').all(|s| {
                    scope.split(' ').any(|h| {
                        h == s || (h == crate::oauth::SCOPE_FULL && s == crate::oauth::SCOPE_READ)
                    })
                })
        });
        if covered
            && may_use_resource(&state, &user, &req.a)
                .await
                .unwrap_or(false)
        {
            return match issue_code(&state, &req, user.id, None).await {
                Ok(code) => see_other(&code_redirect(&state, &req, &code)),
                Err(e) => {
                    tracing::error!(error = %e, "issuing an authorization code failed");
                    back(&req, "server_error", "the gateway could not issue a code")
                }
            };
        }
    }
    match seal(&state, &req, REQUEST_CONTEXT) {
        Ok(sealed) => see_other(&format!(
            "{}{CONSENT_PAGE}?request={sealed}",
            state.config.public_url
        )),
        Err(_) => back(
            &req,
            "server_error",
            "the gateway could not start the sign-in",
        ),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RequestQuery {
    /// The `request` parameter of the consent page.
    request: String,
}

fn already_decided() -> ApiError {
    ApiError::conflict(
        "consent_request_invalid",
        "this sign-in request was decided already; start again from the application",
    )
}

fn open_request(state: &AppState, sealed: &str) -> Result<AuthRequest, ApiError> {
    open::<AuthRequest>(state, sealed, REQUEST_CONTEXT)
        .filter(|r| r.e > db::now())
        .ok_or(ApiError::Unknown {
            code: "consent_request_invalid",
            message: "this sign-in request is invalid or expired; start again from the application"
                .into(),
        })
}

async fn request_client(state: &AppState, req: &AuthRequest) -> Result<Arc<ClientRow>, ApiError> {
    match clients::lookup(state, &req.i).await {
        Ok(c) if c.id == req.c => Ok(c),
        Ok(_) | Err(LookupError::Unknown | LookupError::Revoked | LookupError::Document(_)) => {
            Err(ApiError::Unknown {
                code: "consent_request_invalid",
                message: "this application can no longer sign in".into(),
            })
        }
        Err(LookupError::Internal(e)) => Err(e),
    }
}

/// What the consent page shows: the client, where it will send the browser, the scopes and
/// the MCP endpoint; and who is signed in on this browser already.
#[utoipa::path(get, path = "/oauth/api/request", tag = "oauth", operation_id = "oauth_consent_request",
    params(RequestQuery),
    responses(
        (status = 404, description = "`consent_request_invalid`: unknown or expired, or the application can no longer sign in", body = shared::error::ApiErrorBody),
        (status = 409, description = "`consent_request_invalid`: decided already", body = shared::error::ApiErrorBody),
        (status = 200, description = "The pending request", body = ConsentRequest),
        (status = 400, description = "`invalid_query` or `invalid_body`: a malformed request", body = shared::error::ApiErrorBody),
    ))]
pub async fn consent_request(
    State(state): State<AppState>,
    headers: HeaderMap,
    AppQuery(query): AppQuery<RequestQuery>,
) -> Result<AppJson<ConsentRequest>, ApiError> {
    let req = open_request(&state, &query.request)?;
    let client = request_client(&state, &req).await?;
    let redirect_host = url::Url::parse(&req.r)
        .ok()
        .map(|u| match u.host_str() {
            Some(h) => h.to_string(),
            None => u.scheme().to_string(),
        })
        .unwrap_or_default();
    Ok(AppJson(ConsentRequest {
        client_id: client.client_id.clone(),
        client_name: client.name.clone(),
        client_kind: client.kind.clone(),
        client_uri: client.client_uri.clone(),
        redirect_uri: req.r.clone(),
        redirect_host,
        scopes: req.o.split(' ').map(str::to_string).collect(),
        resource: req.a.clone(),
        signed_in_as: cookie_user(&state, &headers).await.map(|u| u.username),
    }))
}

/// Refuses a browser request that does not come from the gateway's own pages (`Origin` must
/// be `PUBLIC_URL`'s), with an `origin_rejected` event: cookie-authenticated endpoints that
/// change something.
pub(crate) fn same_origin_only(
    state: &AppState,
    meta: &RequestMeta,
    headers: &HeaderMap,
    endpoint: &str,
) -> Result<(), ApiError> {
    let own = url::Url::parse(&state.config.public_url)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_default();
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if origin == Some(own.as_str()) {
        return Ok(());
    }
    state.events.record(
        EventType::OriginRejected,
        Severity::Medium,
        &meta.ctx(),
        None,
        None,
        json!({ "origin": origin, "endpoint": endpoint }),
    );
    Err(ApiError::Forbidden(
        "cross-origin requests are not allowed here",
    ))
}

/// The user's decision. Signs in with `username`/`password` (lockout rules as for login) or the
/// browser's consent sign-in; approving issues a code and remembers the consent, denying
/// returns `error=access_denied` to the client. Same-origin only (`Origin` must be the
/// gateway's).
#[utoipa::path(post, path = "/oauth/api/decision", tag = "oauth", operation_id = "oauth_consent_decision",
    request_body = ConsentDecision,
    responses(
        (status = 404, description = "`consent_request_invalid`: unknown or expired, or the application can no longer sign in", body = shared::error::ApiErrorBody),
        (status = 409, description = "`consent_request_invalid`: decided already", body = shared::error::ApiErrorBody),
        (status = 200, description = "Where to send the browser", body = ConsentResult),
        (status = 400, description = "`invalid_query` or `invalid_body`: a malformed request", body = shared::error::ApiErrorBody),
        (status = 401, description = "`invalid_credentials`, or not signed in", body = shared::error::ApiErrorBody),
        (status = 403, description = "Cross-origin request, or no access to the MCP server", body = shared::error::ApiErrorBody),
        (status = 429, description = "`login_locked` / `too_many_attempts`", body = shared::error::ApiErrorBody),
    ))]
pub async fn consent_decision(
    State(state): State<AppState>,
    meta: RequestMeta,
    headers: HeaderMap,
    AppJson(decision): AppJson<ConsentDecision>,
) -> Result<Response, ApiError> {
    same_origin_only(&state, &meta, &headers, "oauth_consent")?;
    let req = open_request(&state, &decision.request)?;
    let client = request_client(&state, &req).await?;
    let once = format!("consent-request:{}", hash_token(&decision.request));
    if !decision.approve {
        // Anyone holding the page may say no: it only tells the client access was denied. A
        // denial decides the request too.
        if !db::replicas::use_nonce(&state.db.pool, &once, req.e).await? {
            return Err(already_decided());
        }
        let redirect_to =
            error_redirect(&state, &req, "access_denied", "the user denied the request");
        let mut res = AppJson(ConsentResult { redirect_to }).into_response();
        no_store(res.headers_mut());
        return Ok(res);
    }
    let (user, signed_in_now) = match (&decision.username, &decision.password) {
        (Some(username), Some(password)) => {
            let creds = LoginRequest {
                username: username.clone(),
                password: password.clone(),
                session: Default::default(),
            };
            (
                login::verify_credentials(&state, &meta, &creds, Audience::Mcp).await?,
                true,
            )
        }
        _ => (
            cookie_user(&state, &headers)
                .await
                .ok_or(ApiError::Unauthorized)?,
            false,
        ),
    };
    if !may_use_resource(&state, &user, &req.a).await? {
        return Err(ApiError::Forbidden(
            "you do not have access to this MCP server; ask an administrator",
        ));
    }
    // Each request is decided once (on any replica): a second approval of the same sealed
    // request gets no second code.
    if !db::replicas::use_nonce(&state.db.pool, &once, req.e).await? {
        return Err(already_decided());
    }
    let ip = meta.ip.0.to_string();
    if signed_in_now {
        crate::accounts::record_auth(
            &state.db.pool,
            user.id,
            &user.username,
            &ip,
            "auth.sign_in",
            json!({ "audience": "consent" }),
        )
        .await?;
    }
    let given = Given {
        username: &user.username,
        ip: &ip,
        client_id: &client.client_id,
    };
    let code = issue_code(&state, &req, user.id, Some(given)).await?;
    tracing::info!(client_id = %client.client_id, user = %user.username, resource = %req.a, "OAuth consent given");
    let redirect_to = code_redirect(&state, &req, &code);
    let mut res = AppJson(ConsentResult { redirect_to }).into_response();
    no_store(res.headers_mut());
    if signed_in_now {
        res.headers_mut()
            .insert(header::SET_COOKIE, consent_cookie(&state, &user)?);
    }
    Ok(res)
}

fn token_response(token: shared::auth::TokenResponse, scope: &str) -> Response {
    let mut res = axum::Json(json!({
        "access_token": token.access_token,
        "token_type": "Bearer",
        "expires_in": token.expires_in,
        "refresh_token": token.refresh_token,
        "scope": scope,
    }))
    .into_response();
    no_store(res.headers_mut());
    res
}

fn limited(state: &AppState, meta: &RequestMeta, endpoint: &str) -> Result<(), OAuthError> {
    state
        .oauth
        .token_limit
        .admit(state, meta, endpoint)
        .map_err(|limited| OAuthError::slow_down(limited, "too many requests from this address"))
}

/// The form parameters of a token or revocation request; the error says what is wrong.
fn form_body(headers: &HeaderMap, body: &Bytes) -> Result<HashMap<String, String>, String> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Err("the body must be application/x-www-form-urlencoded".into());
    }
    parse_form(body)
}

/// `POST /oauth/token`: `authorization_code` (with PKCE) and `refresh_token` (rotating).
pub async fn token(
    State(state): State<AppState>,
    meta: RequestMeta,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    limited(&state, &meta, "oauth_token")?;
    let form = form_body(&headers, &body).map_err(OAuthError::invalid_request)?;
    let client = clients::authenticate(&state, &headers, &form).await?;
    match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => exchange_code(&state, &meta, &client, &form).await,
        Some("refresh_token") => refresh(&state, &meta, &client, &form).await,
        Some(_) => Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "supported: authorization_code, refresh_token",
        )),
        None => Err(OAuthError::invalid_request("grant_type is required")),
    }
}

async fn exchange_code(
    state: &AppState,
    meta: &RequestMeta,
    client: &ClientRow,
    form: &HashMap<String, String>,
) -> Result<Response, OAuthError> {
    let Some(code) = form.get("code") else {
        return Err(OAuthError::invalid_request("code is required"));
    };
    let hash = hash_token(code);
    let Some(row) = db::oauth::find_code(&state.db.pool, &hash).await? else {
        return Err(OAuthError::invalid_grant("unknown authorization code"));
    };
    if row.client_key != client.id {
        return Err(OAuthError::invalid_grant(
            "the code was issued to another client",
        ));
    }
    let now = db::now();
    if row.used_at.is_some() {
        // A replayed code: whatever was issued with it is revoked (RFC 6749 §4.1.2).
        if let Some(session) = &row.session_id {
            tokens::revoke_session(state, session, "authorization_code_reuse").await?;
        }
        state.events.record(
            EventType::TokenReuse,
            Severity::High,
            &meta.ctx(),
            Some(row.user_id),
            None,
            json!({ "client_id": client.client_id, "action": "authorization code reused; its tokens were revoked" }),
        );
        return Err(OAuthError::invalid_grant(
            "the authorization code was already used",
        ));
    }
    if row.expires_at <= now {
        return Err(OAuthError::invalid_grant("the authorization code expired"));
    }
    if form.get("redirect_uri") != Some(&row.redirect_uri) {
        db::oauth::burn_code(&state.db.pool, &hash, now).await?;
        return Err(OAuthError::invalid_grant(
            "redirect_uri does not match the authorization request",
        ));
    }
    let verifier_ok = form
        .get("code_verifier")
        .is_some_and(|v| valid_verifier(v) && s256(v) == row.code_challenge);
    if !verifier_ok {
        db::oauth::burn_code(&state.db.pool, &hash, now).await?;
        return Err(OAuthError::invalid_grant(
            "the PKCE code_verifier does not match",
        ));
    }
    if let Some(resource) = form.get("resource")
        && canonical_resource(state, resource).as_deref() != Some(row.resource.as_str())
    {
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "invalid_target",
            "resource differs from the authorization request",
        ));
    }
    let user = db::users::find_by_id(&state.db.pool, row.user_id).await?;
    if user.is_none_or(|u| u.enabled == 0) {
        return Err(OAuthError::invalid_grant("the user can no longer sign in"));
    }
    let binding = OAuthBinding {
        client_key: client.id,
        client_id: &client.client_id,
        resource: &row.resource,
        scope: &row.scope,
    };
    let mut tx = state.db.begin().await?;
    let (session_id, refresh_token) =
        tokens::start_oauth_session(state, &mut tx, row.user_id, &binding).await?;
    if db::oauth::spend_code(&mut *tx, &hash, now, &session_id).await? == 0 {
        tx.rollback().await?;
        return Err(OAuthError::invalid_grant(
            "the authorization code was already used",
        ));
    }
    db::oauth::touch_grant(&mut *tx, row.user_id, client.id, now).await?;
    tx.commit().await?;
    let issued = tokens::oauth_access_token(
        state,
        row.user_id,
        &session_id,
        &binding,
        Some(refresh_token),
    )?;
    Ok(token_response(issued, &row.scope))
}

async fn refresh(
    state: &AppState,
    meta: &RequestMeta,
    client: &ClientRow,
    form: &HashMap<String, String>,
) -> Result<Response, OAuthError> {
    let Some(refresh_token) = form.get("refresh_token") else {
        return Err(OAuthError::invalid_request("refresh_token is required"));
    };
    let Some(session) = tokens::session_of_refresh_token(state, refresh_token).await? else {
        return Err(OAuthError::invalid_grant("unknown refresh token"));
    };
    if session.client_key != Some(client.id) {
        return Err(OAuthError::invalid_grant(
            "the refresh token was issued to another client",
        ));
    }
    let resource = session
        .resource
        .clone()
        .unwrap_or_else(|| format!("{}/mcp", state.config.public_url));
    let scope = session.scope.clone().unwrap_or_else(|| SCOPE_FULL.into());
    if let Some(asked) = form.get("resource")
        && canonical_resource(state, asked).as_deref() != Some(resource.as_str())
    {
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "invalid_target",
            "a refresh token is bound to the resource it was issued for",
        ));
    }
    if let Some(asked) = form.get("scope")
        && asked
            .split(' ')
            .filter(|s| !s.is_empty() && *s != "offline_access")
            .any(|s| !scope.split(' ').any(|g| g == s))
    {
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "a refresh cannot widen the granted scope",
        ));
    }
    let (session, next) =
        match tokens::rotate(state, meta, refresh_token, Audience::Mcp, Some(client.id)).await {
            Ok(r) => r,
            Err(ApiError::Unauthorized) => {
                return Err(OAuthError::invalid_grant(
                    "the refresh token is invalid, expired, revoked or was already used",
                ));
            }
            Err(e) => return Err(e.into()),
        };
    db::oauth::touch_grant(&state.db.pool, session.user_id, client.id, db::now()).await?;
    let binding = OAuthBinding {
        client_key: client.id,
        client_id: &client.client_id,
        resource: &resource,
        scope: &scope,
    };
    let issued =
        tokens::oauth_access_token(state, session.user_id, &session.id, &binding, Some(next))?;
    Ok(token_response(issued, &scope))
}

/// `POST /oauth/revoke` (RFC 7009): a refresh token or an access token of this client; its
/// session ends (every token issued in it stops working). Unknown tokens are not an error.
pub async fn revoke(
    State(state): State<AppState>,
    meta: RequestMeta,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    limited(&state, &meta, "oauth_revoke")?;
    let form = form_body(&headers, &body).map_err(OAuthError::invalid_request)?;
    let client = clients::authenticate(&state, &headers, &form).await?;
    let Some(token) = form.get("token") else {
        return Err(OAuthError::invalid_request("token is required"));
    };
    let session_id = if token.starts_with(tokens::REFRESH_TOKEN_PREFIX) {
        tokens::session_of_refresh_token(&state, token)
            .await
            .ok()
            .flatten()
            .filter(|s| s.client_key == Some(client.id))
            .map(|s| s.id)
    } else {
        access_token_session(&state, token)
            .await
            .filter(|(_, client_id)| client_id.as_deref() == Some(client.client_id.as_str()))
            .map(|(sid, _)| sid)
    };
    if let Some(sid) = session_id
        && let Err(e) = tokens::revoke_session(&state, &sid, "oauth_revocation").await
    {
        tracing::error!(error = %e, "revoking a session failed");
        return Err(OAuthError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "try again",
        ));
    }
    let mut res = StatusCode::OK.into_response();
    no_store(res.headers_mut());
    Ok(res)
}

/// The session and client of an access token whose signature checks (expired ones too).
async fn access_token_session(state: &AppState, token: &str) -> Option<(String, Option<String>)> {
    #[derive(Deserialize)]
    struct Peek {
        aud: String,
    }
    let payload = token.split('.').nth(1)?;
    let peek: Peek = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    if !peek.aud.starts_with(&state.config.public_url) {
        return None;
    }
    let claims: tokens::AccessClaims = state
        .keys
        .verify(token, &state.config.public_url, &[peek.aud.as_str()])
        .await
        .ok()?;
    Some((claims.sid, claims.client_id))
}

/// The token endpoint's form (`application/x-www-form-urlencoded`), for the document only.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct TokenForm {
    /// `authorization_code` or `refresh_token`.
    grant_type: String,
    /// The authorization code (`authorization_code`).
    code: Option<String>,
    /// The redirect URI the code was issued for (`authorization_code`).
    redirect_uri: Option<String>,
    /// The PKCE verifier (`authorization_code`).
    code_verifier: Option<String>,
    /// The refresh token (`refresh_token`); a new one replaces it.
    refresh_token: Option<String>,
    /// The client, when it does not authenticate with HTTP Basic.
    client_id: Option<String>,
    /// A confidential client's secret (`client_secret_post`).
    client_secret: Option<String>,
    /// The MCP endpoint the token is for (RFC 8707).
    resource: Option<String>,
}

/// The revocation endpoint's form (`application/x-www-form-urlencoded`), for the document only.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct RevokeForm {
    /// A refresh token or an access token of this client.
    token: String,
    /// `refresh_token` or `access_token` (a hint; both are looked for).
    token_type_hint: Option<String>,
    /// The client, when it does not authenticate with HTTP Basic.
    client_id: Option<String>,
    /// A confidential client's secret (`client_secret_post`).
    client_secret: Option<String>,
}

/// The authorization endpoint (RFC 6749 §4.1.1, PKCE S256 required, RFC 8707 `resource`). A
/// browser endpoint: it answers with redirects and, for requests that cannot be sent back to
/// the client, an error page.
#[utoipa::path(get, path = "/oauth/authorize", tag = "oauth", operation_id = "oauth_authorize",
    params(
        ("response_type" = String, Query, description = "`code`"),
        ("client_id" = String, Query, description = "A registered client id, or the URL of a client ID metadata document"),
        ("redirect_uri" = String, Query, description = "One of the client's redirect URIs"),
        ("code_challenge" = String, Query, description = "PKCE challenge (base64url SHA-256 of the verifier)"),
        ("code_challenge_method" = String, Query, description = "`S256`"),
        ("scope" = Option<String>, Query, description = "`mcp` (default) or `mcp:read`"),
        ("state" = Option<String>, Query, description = "Returned unchanged to the client"),
        ("resource" = Option<String>, Query, description = "The MCP endpoint the token will be for"),
    ),
    responses(
        (status = 303, description = "To the consent page; or back to the redirect URI with `code`, or with `error` for a client that may be told"),
        (status = 400, description = "An error page (HTML): the request cannot be sent back to the client", content_type = "text/html"),
        (status = 429, description = "Too many client metadata documents fetched for this address", content_type = "text/html"),
    ))]
#[allow(dead_code)]
pub(crate) fn doc_authorize() {}

/// The token endpoint (RFC 6749 §3.2): `authorization_code` with PKCE, and rotating
/// `refresh_token`. Errors are RFC 6749 §5.2's `{"error", "error_description"}`.
#[utoipa::path(post, path = "/oauth/token", tag = "oauth", operation_id = "oauth_token",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "`access_token`, `token_type`, `expires_in`, `refresh_token`, `scope`", body = Object),
        (status = 400, description = "`invalid_request`, `invalid_grant`, `unsupported_grant_type`, `invalid_scope` or `invalid_target`", body = Object),
        (status = 401, description = "`invalid_client` (with a `Basic` challenge)", body = Object),
        (status = 415, description = "`invalid_request`: the body is not form-encoded", body = Object),
        (status = 429, description = "`slow_down`", body = Object),
    ))]
#[allow(dead_code)]
pub(crate) fn doc_token() {}

/// The revocation endpoint (RFC 7009): the token's session ends. Unknown tokens are not an
/// error.
#[utoipa::path(post, path = "/oauth/revoke", tag = "oauth", operation_id = "oauth_revoke",
    request_body(content = RevokeForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Revoked, or there was nothing to revoke"),
        (status = 400, description = "`invalid_request`", body = Object),
        (status = 401, description = "`invalid_client` (with a `Basic` challenge)", body = Object),
        (status = 415, description = "`invalid_request`: the body is not form-encoded", body = Object),
        (status = 429, description = "`slow_down`", body = Object),
    ))]
#[allow(dead_code)]
pub(crate) fn doc_revoke() {}
