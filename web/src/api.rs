//! The only place that talks HTTP. Every request goes through `request`, which attaches the
//! in-memory access token (when there is one) and turns any non-2xx answer into an `ApiError`
//! decoded from the server's `{"error": {"code", "message"}}` envelope.

use std::cell::RefCell;

use gloo_net::http::{Request, RequestBuilder};
use serde::Serialize;
use serde::de::DeserializeOwned;
use shared::error::ApiErrorBody;
use shared::health::{Health, Ready};

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
    /// The access token lives in memory only (never in localStorage).
    static ACCESS_TOKEN: RefCell<Option<String>> = const { RefCell::new(None) };
}

pub fn set_access_token(token: Option<String>) {
    ACCESS_TOKEN.with(|t| *t.borrow_mut() = token);
}

fn with_auth(builder: RequestBuilder) -> RequestBuilder {
    match ACCESS_TOKEN.with(|t| t.borrow().clone()) {
        Some(token) => builder.header("Authorization", &format!("Bearer {token}")),
        None => builder,
    }
}

async fn request<T: DeserializeOwned>(request: Result<Request, gloo_net::Error>) -> Result<T, ApiError> {
    let request = request.map_err(transport_error)?;
    let response = request.send().await.map_err(transport_error)?;
    let status = response.status();
    if (200..300).contains(&status) {
        return response.json::<T>().await.map_err(transport_error);
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

fn transport_error(e: gloo_net::Error) -> ApiError {
    ApiError {
        status: 0,
        code: "network_error".into(),
        message: format!("could not reach the gateway: {e}"),
    }
}

async fn get<T: DeserializeOwned>(path: &str) -> Result<T, ApiError> {
    request(with_auth(Request::get(path)).build()).await
}

async fn post<B: Serialize, T: DeserializeOwned>(path: &str, body: &B) -> Result<T, ApiError> {
    request(with_auth(Request::post(path)).json(body)).await
}

pub async fn health() -> Result<Health, ApiError> {
    get(shared::routes::HEALTH).await
}

pub async fn ready() -> Result<Ready, ApiError> {
    get(shared::routes::READY).await
}

/// The admin login. The server side of this arrives with the accounts feature; until then the
/// gateway answers with its JSON 404, which this funnel decodes and the page shows.
pub async fn admin_login(username: &str, password: &str) -> Result<serde_json::Value, ApiError> {
    post(
        "/admin/api/login",
        &serde_json::json!({ "username": username, "password": password }),
    )
    .await
}
