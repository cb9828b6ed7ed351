//! Serves the built admin SPA (`WEB_DIR`, default `web/dist`) for every path that is not an
//! API path, with history fallback: a deep link such as `/admin/users` gets `index.html` and
//! the client-side router takes it from there.
//!
//! A path whose last segment has a dot is a static asset and gets a real 404 when missing; an
//! API path that matches no route gets the JSON 404 (never `index.html`).

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use tower::ServiceExt;
use tower_http::compression::Compression;
use tower_http::services::{ServeDir, ServeFile};

use crate::error::ApiError;
use crate::state::AppState;

#[derive(Clone)]
pub struct Spa {
    assets: Compression<ServeDir>,
    index: Compression<ServeFile>,
}

impl Spa {
    /// `None` (with a log line saying how to build it) when `dir/index.html` is missing.
    pub fn load(dir: &Path) -> Option<Spa> {
        let index = dir.join("index.html");
        if !index.is_file() {
            tracing::warn!(
                web_dir = %dir.display(),
                "admin UI not found (no index.html in WEB_DIR); the API works, `/` will say how to build the UI: cargo xtask build-web"
            );
            return None;
        }
        tracing::info!(web_dir = %dir.display(), "serving the admin UI");
        Some(Spa {
            assets: Compression::new(ServeDir::new(PathBuf::from(dir))),
            index: Compression::new(ServeFile::new(index)),
        })
    }
}

/// The router's fallback: JSON 404 for API paths, the SPA for everything else.
pub async fn fallback(State(state): State<AppState>, req: Request) -> Response {
    let path = req.uri().path();
    if shared::routes::is_api_path(path) {
        return ApiError::NotFound("no route for this path").into_response();
    }
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return ApiError::MethodNotAllowed.into_response();
    }
    let Some(spa) = &state.spa else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [
                (header::X_FRAME_OPTIONS, "DENY"),
                (header::CONTENT_SECURITY_POLICY, "frame-ancestors 'none'"),
            ],
            Html("<!DOCTYPE html><title>AuthMCP Gateway</title><p>The admin UI is not built. Run <code>cargo xtask build-web</code> (or set <code>WEB_DIR</code> to a built SPA) and restart the gateway. The API is available under <a href=\"/swagger-ui\">/swagger-ui</a>.</p>"),
        )
            .into_response();
    };
    let path = path.to_string();
    let is_asset = path
        .rsplit('/')
        .next()
        .is_some_and(|last| last.contains('.'));
    let result = if is_asset {
        spa.assets
            .clone()
            .oneshot(req)
            .await
            .map(|r| r.map(Body::new))
    } else {
        spa.index
            .clone()
            .oneshot(req)
            .await
            .map(|r| r.map(Body::new))
    };
    let mut response = match result {
        Ok(response) => response,
        Err(e) => {
            return ApiError::Internal(anyhow::anyhow!("serving the admin UI: {e}"))
                .into_response();
        }
    };
    // trunk names built assets by their content (`web-49ec168690a455e2.js`): such a file never
    // changes, so browsers and proxies may keep it for a year; others an hour; the HTML,
    // which names the current assets, is revalidated every time.
    // A missing file is not cached at all: during a rolling upgrade a replica may not have the
    // assets another one's page names yet.
    let found = response.status().is_success() || response.status() == StatusCode::NOT_MODIFIED;
    let cache = if !found {
        "no-store"
    } else if !is_asset {
        "no-cache"
    } else if content_hashed(&path) {
        "public, max-age=31536000, immutable"
    } else {
        "public, max-age=3600"
    };
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    // No page of the UI (the OAuth consent page least of all) may be framed.
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("frame-ancestors 'none'"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// Whether a file name carries a content hash the way trunk writes them: `<name>-<hex digits>`
/// before the extension (`main-b6d0c1c27b921c80.css`, `web-49ec…_bg.wasm`; trunk writes a
/// 64-bit hash unpadded, so 12 to 16 digits are taken).
fn content_hashed(path: &str) -> bool {
    let file = path.rsplit('/').next().unwrap_or_default();
    let stem = file.split('.').next().unwrap_or_default();
    let stem = stem.strip_suffix("_bg").unwrap_or(stem);
    stem.rsplit_once('-').is_some_and(|(name, hash)| {
        !name.is_empty()
            && (12..=16).contains(&hash.len())
            && hash.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn hashed_names_are_recognised() {
        for hashed in [
            "/main-b6d0c1c27b921c80.css",
            "/web-49ec168690a455e2.js",
            "/web-49ec168690a455e2_bg.wasm",
            "/web-9ec168690a455e2.js",
        ] {
            assert!(super::content_hashed(hashed), "{hashed}");
        }
        for plain in [
            "/favicon.ico",
            "/app-1234.js",
            "/web-49ec168690a455e2ab.js",
            "/-49ec168690a455e2.js",
            "/web-49ec168690a455eg.js",
        ] {
            assert!(!super::content_hashed(plain), "{plain}");
        }
    }
}
