//! The only place that talks HTTP. Every request goes through `send`, which attaches the
//! in-memory access token, retries once after a transparent refresh when the token has expired,
//! and turns any non-2xx answer into an `ApiError` decoded from the server's
//! `{"error": {"code", "message"}}` envelope.
//!
//! The admin session survives reloads without any credential readable by JavaScript: the
//! refresh token lives in an `HttpOnly; SameSite=Strict` cookie scoped to
//! `/admin/api/session`, and the access token only in this module's memory.

use std::cell::RefCell;

use gloo_net::http::{Method, RequestBuilder};
use serde::Serialize;
use serde::de::DeserializeOwned;
use shared::auth::{LoginRequest, Me, NewAccount, SessionMode, SetupStatus, TokenResponse};
use shared::error::ApiErrorBody;
use shared::health::{Health, Ready};
use shared::users::User;

/// An error as the UI shows it: the server's code and message, or a transport failure.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

thread_local! {
    /// The access token lives in memory only (never in localStorage or a readable cookie).
    static ACCESS_TOKEN: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn set_access_token(token: Option<String>) {
    ACCESS_TOKEN.with(|t| *t.borrow_mut() = token);
}

fn access_token() -> Option<String> {
    ACCESS_TOKEN.with(|t| t.borrow().clone())
}

fn transport_error(e: gloo_net::Error) -> ApiError {
    ApiError {
        status: 0,
        code: "network_error".into(),
        message: format!("could not reach the gateway: {e}"),
    }
}

/// One HTTP exchange; `Ok(None)` for 204.
async fn send_once<B: Serialize>(
    method: Method,
    path: &str,
    body: Option<&B>,
) -> Result<Option<gloo_net::http::Response>, ApiError> {
    let mut builder = RequestBuilder::new(path).method(method);
    if let Some(token) = access_token() {
        builder = builder.header("Authorization", &format!("Bearer {token}"));
    }
    let request = match body {
        Some(body) => builder.json(body).map_err(transport_error)?,
        None => builder.build().map_err(transport_error)?,
    };
    let response = request.send().await.map_err(transport_error)?;
    let status = response.status();
    if status == 204 {
        return Ok(None);
    }
    if (200..300).contains(&status) {
        return Ok(Some(response));
    }
    Err(match response.json::<ApiErrorBody>().await {
        Ok(body) => ApiError {
            status,
            code: body.error.code,
            message: body.error.message,
        },
        Err(_) => ApiError {
            status,
            code: "http_error".into(),
            message: format!("the server answered {status}"),
        },
    })
}

/// Sends a request; on a 401 with a token in hand, refreshes the session once and retries.
async fn send<B: Serialize>(
    method: Method,
    path: &str,
    body: Option<&B>,
) -> Result<Option<gloo_net::http::Response>, ApiError> {
    let had_token = access_token().is_some();
    match send_once(method.clone(), path, body).await {
        Err(e) if e.status == 401 && had_token => {
            refresh().await?;
            send_once(method, path, body).await
        }
        other => other,
    }
}

async fn decode<T: DeserializeOwned>(
    response: Option<gloo_net::http::Response>,
) -> Result<T, ApiError> {
    let response = response.ok_or_else(|| ApiError {
        status: 204,
        code: "no_content".into(),
        message: "the server sent no content".into(),
    })?;
    response.json::<T>().await.map_err(transport_error)
}

async fn get<T: DeserializeOwned>(path: &str) -> Result<T, ApiError> {
    decode(send::<()>(Method::GET, path, None).await?).await
}

async fn post<B: Serialize, T: DeserializeOwned>(path: &str, body: &B) -> Result<T, ApiError> {
    decode(send(Method::POST, path, Some(body)).await?).await
}

pub async fn health() -> Result<Health, ApiError> {
    get(shared::routes::HEALTH).await
}

pub async fn ready() -> Result<Ready, ApiError> {
    get(shared::routes::READY).await
}

pub async fn setup_status() -> Result<SetupStatus, ApiError> {
    get("/setup/status").await
}

pub async fn setup_create_admin(account: &NewAccount) -> Result<User, ApiError> {
    post("/setup/create-admin", account).await
}

/// Signs an admin in; the refresh token goes into the HttpOnly cookie, the access token into
/// memory.
pub async fn admin_login(username: &str, password: &str) -> Result<Me, ApiError> {
    let tokens: TokenResponse = decode(
        send_once(
            Method::POST,
            "/admin/api/login",
            Some(&LoginRequest {
                username: username.into(),
                password: password.into(),
                session: SessionMode::Cookie,
            }),
        )
        .await?,
    )
    .await?;
    set_access_token(Some(tokens.access_token));
    me().await
}

/// Trades the refresh cookie for a new access token (and a new cookie).
pub async fn refresh() -> Result<(), ApiError> {
    let result: Result<TokenResponse, ApiError> = decode(
        send_once(
            Method::POST,
            "/admin/api/session/refresh",
            Some(&serde_json::json!({})),
        )
        .await?,
    )
    .await;
    match result {
        Ok(tokens) => {
            set_access_token(Some(tokens.access_token));
            Ok(())
        }
        Err(e) => {
            set_access_token(None);
            Err(e)
        }
    }
}

/// Restores the session after a reload, if the refresh cookie is still good.
pub async fn resume() -> Option<Me> {
    refresh().await.ok()?;
    me().await.ok()
}

pub async fn me() -> Result<Me, ApiError> {
    get("/admin/api/me").await
}

pub async fn logout() -> Result<(), ApiError> {
    let result = send_once::<()>(Method::POST, "/admin/api/session/logout", None).await;
    set_access_token(None);
    result.map(|_| ())
}
