//! Serves the admin SPA for every path that is not an API path, with history fallback: a deep
//! link such as `/admin/users` gets `index.html` and the client-side router takes it from there.
//!
//! The SPA is the one built into the binary (`build.rs` embeds `web/dist` with its brotli and
//! gzip forms), or, when `WEB_DIR` is set, the one in that directory (development; gzip on the
//! fly).
//!
//! A path whose last segment has a dot is a static asset and gets a real 404 when missing; an
//! API path that matches no route gets the JSON 404 (never `index.html`).

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use tower::ServiceExt;
use tower_http::compression::Compression;
use tower_http::services::{ServeDir, ServeFile};

use crate::error::ApiError;
use crate::state::AppState;

/// One file of the embedded SPA (`build.rs` writes the table).
pub struct Asset {
    /// Relative to the SPA's root, without a leading `/`.
    pub path: &'static str,
    pub mime: &'static str,
    /// A hash of the file's bytes, for its entity tags.
    pub tag: &'static str,
    pub identity: &'static [u8],
    pub gzip: Option<&'static [u8]>,
    pub br: Option<&'static [u8]>,
}

mod embedded {
    use super::Asset;
    include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));
}

/// Whether this binary carries the admin UI.
pub const EMBEDDED: bool = embedded::SOURCE.is_some();

#[derive(Clone)]
pub enum Spa {
    /// `WEB_DIR`.
    Dir {
        assets: Box<Compression<ServeDir>>,
        index: Box<Compression<ServeFile>>,
    },
    /// The SPA built into the binary.
    Embedded(&'static [Asset]),
}

impl Spa {
    /// The SPA in `dir` (`WEB_DIR`), or without it the one built into the binary. `None` (with
    /// a log line saying how to build it) when there is none.
    pub fn load(dir: Option<&Path>) -> Option<Spa> {
        let Some(dir) = dir else {
            let assets = embedded::ASSETS;
            if !assets.iter().any(|a| a.path == "index.html") {
                tracing::warn!(
                    "this binary was built without the admin UI and WEB_DIR is not set; the API works, `/` will say how to build the UI: cargo xtask build-web"
                );
                return None;
            }
            tracing::info!(
                source = embedded::SOURCE.unwrap_or_default(),
                files = assets.len(),
                "serving the admin UI built into the binary"
            );
            return Some(Spa::Embedded(assets));
        };
        let index = dir.join("index.html");
        if !index.is_file() {
            tracing::warn!(
                web_dir = %dir.display(),
                "admin UI not found (no index.html in WEB_DIR); the API works, `/` will say how to build the UI: cargo xtask build-web"
            );
            return None;
        }
        tracing::info!(web_dir = %dir.display(), "serving the admin UI from WEB_DIR");
        Some(Spa::Dir {
            assets: Box::new(Compression::new(ServeDir::new(PathBuf::from(dir)))),
            index: Box::new(Compression::new(ServeFile::new(index))),
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
            Html("<!DOCTYPE html><title>AuthMCP Gateway</title><p>The admin UI is not part of this gateway. Build it with <code>cargo xtask build-web</code> and rebuild the gateway (or set <code>WEB_DIR</code> to a built SPA), then restart it. The API is available under <a href=\"/swagger-ui\">/swagger-ui</a>.</p>"),
        )
            .into_response();
    };
    let path = path.to_string();
    let is_asset = path
        .rsplit('/')
        .next()
        .is_some_and(|last| last.contains('.'));
    let result = match spa {
        Spa::Embedded(assets) => Ok(serve_embedded(
            assets,
            &path,
            is_asset,
            req.method() == Method::HEAD,
            req.headers(),
        )),
        Spa::Dir { assets, .. } if is_asset => (**assets)
            .clone()
            .oneshot(req)
            .await
            .map(|r| r.map(Body::new)),
        Spa::Dir { index, .. } => (**index)
            .clone()
            .oneshot(req)
            .await
            .map(|r| r.map(Body::new)),
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

/// A content coding the gateway can send a file in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Coding {
    Br,
    Gzip,
    Identity,
}

/// The coding to send, given what the client accepts (`Accept-Encoding`, RFC 9110 §12.5.3) and
/// which compressed forms exist: the accepted one with the highest weight, brotli on a tie; the
/// file as is when neither is accepted (`q=0` refuses a coding; a malformed weight counts as 0).
fn choose_coding(accept: &str, br: bool, gzip: bool) -> Coding {
    let mut weight_br: Option<f32> = None;
    let mut weight_gzip: Option<f32> = None;
    let mut weight_any: Option<f32> = None;
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or_default().trim();
        let mut q = 1.0_f32;
        for param in parts {
            let Some((key, value)) = param.split_once('=') else {
                continue;
            };
            if key.trim().eq_ignore_ascii_case("q") {
                q = match value.trim().parse::<f32>() {
                    Ok(v) if (0.0..=1.0).contains(&v) => v,
                    _ => 0.0,
                };
            }
        }
        let slot = if name.eq_ignore_ascii_case("br") {
            &mut weight_br
        } else if name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip") {
            &mut weight_gzip
        } else if name == "*" {
            &mut weight_any
        } else {
            continue;
        };
        // A coding named twice keeps its lowest weight (refusal wins).
        *slot = Some(slot.map_or(q, |old: f32| old.min(q)));
    }
    let br = if br {
        weight_br.or(weight_any).unwrap_or(0.0)
    } else {
        0.0
    };
    let gzip = if gzip {
        weight_gzip.or(weight_any).unwrap_or(0.0)
    } else {
        0.0
    };
    if br > 0.0 && br >= gzip {
        Coding::Br
    } else if gzip > 0.0 {
        Coding::Gzip
    } else {
        Coding::Identity
    }
}

/// Whether `If-None-Match` names `tag` (weak comparison, RFC 9110 §13.1.2).
fn none_match(headers: &HeaderMap, tag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| {
            let t = t.trim();
            t.strip_prefix("W/").unwrap_or(t)
        })
        .any(|t| t == "*" || t == tag)
}

/// One embedded file (or `index.html` for a route) in the best coding the client takes, with
/// an entity tag per coding; `304` when the client has it.
fn serve_embedded(
    assets: &'static [Asset],
    path: &str,
    is_asset: bool,
    head: bool,
    headers: &HeaderMap,
) -> Response {
    let name = if is_asset {
        path.strip_prefix('/').unwrap_or(path)
    } else {
        "index.html"
    };
    let Some(asset) = assets.iter().find(|a| a.path == name) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let accept = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    let (coding, bytes, suffix) =
        match choose_coding(&accept, asset.br.is_some(), asset.gzip.is_some()) {
            Coding::Br => ("br", asset.br.unwrap_or(asset.identity), "-br"),
            Coding::Gzip => ("gzip", asset.gzip.unwrap_or(asset.identity), "-gz"),
            Coding::Identity => ("identity", asset.identity, ""),
        };
    let tag = format!("\"{}{suffix}\"", asset.tag);
    let mut response = if none_match(headers, &tag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut response = if head {
            Body::empty().into_response()
        } else {
            Body::from(bytes).into_response()
        };
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.mime));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        if coding != "identity" {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(coding));
        }
        response
    };
    let headers = response.headers_mut();
    if let Ok(tag) = HeaderValue::from_str(&tag) {
        headers.insert(header::ETAG, tag);
    }
    if asset.br.is_some() || asset.gzip.is_some() {
        headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
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
    use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
    use proptest::prelude::*;

    use super::{Asset, Coding, choose_coding, serve_embedded};

    #[test]
    fn the_accepted_coding_with_the_highest_weight_is_sent() {
        for (accept, br, gzip, expected) in [
            ("", true, true, Coding::Identity),
            ("gzip, deflate, br, zstd", true, true, Coding::Br),
            ("gzip, deflate", true, true, Coding::Gzip),
            ("gzip, deflate, br", false, true, Coding::Gzip),
            ("br", false, true, Coding::Identity),
            ("BR;Q=1", true, true, Coding::Br),
            ("x-gzip", true, true, Coding::Gzip),
            ("br;q=0, gzip", true, true, Coding::Gzip),
            ("br;q=0.5, gzip;q=0.8", true, true, Coding::Gzip),
            ("br;q=0.8, gzip;q=0.8", true, true, Coding::Br),
            ("*", true, true, Coding::Br),
            ("*;q=0", true, true, Coding::Identity),
            ("*;q=0, gzip", true, true, Coding::Gzip),
            ("br;q=0, *", true, true, Coding::Gzip),
            ("br, br;q=0", true, false, Coding::Identity),
            ("br;q=abc, gzip", true, true, Coding::Gzip),
            ("br;q=1.5", true, true, Coding::Identity),
            ("br;q=-1", true, true, Coding::Identity),
            ("br;q=NaN", true, true, Coding::Identity),
            ("identity", true, true, Coding::Identity),
            (" gzip ; q = 0.3 ", true, true, Coding::Gzip),
        ] {
            assert_eq!(choose_coding(accept, br, gzip), expected, "{accept:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

        /// Whatever the header says: a coding that exists, never one the header refuses by
        /// name with `q=0`, and no panic.
        #[test]
        fn only_an_available_unrefused_coding_is_chosen(
            items in proptest::collection::vec(
                (
                    "br|gzip|x-gzip|\\*|identity|deflate|BR| br |[ -~]{0,6}",
                    proptest::option::of("0|0\\.0|0\\.5|1|x||[ -~]{0,4}"),
                ),
                0..6,
            ),
            br in any::<bool>(),
            gzip in any::<bool>(),
            noise in "[ -~]{0,40}",
        ) {
            let accept = items
                .iter()
                .map(|(name, q)| match q {
                    Some(q) => format!("{name};q={q}"),
                    None => name.clone(),
                })
                .collect::<Vec<_>>()
                .join(", ");
            let refused = |coding: &str| {
                items.iter().any(|(name, q)| {
                    let name = name.trim();
                    let names = name.eq_ignore_ascii_case(coding)
                        || (coding == "gzip" && name.eq_ignore_ascii_case("x-gzip"));
                    names && q.as_deref().is_some_and(|q| q.trim().parse::<f32>().map_or(true, |v| !(v > 0.0 && v <= 1.0)))
                })
            };
            match choose_coding(&accept, br, gzip) {
                Coding::Br => prop_assert!(br && !refused("br"), "{accept}"),
                Coding::Gzip => prop_assert!(gzip && !refused("gzip"), "{accept}"),
                Coding::Identity => {}
            }
            let _ = choose_coding(&noise, br, gzip);
        }
    }

    static ASSETS: &[Asset] = &[
        Asset {
            path: "index.html",
            mime: "text/html; charset=utf-8",
            tag: "aa",
            identity: b"<!DOCTYPE html>index",
            gzip: Some(b"gz-index"),
            br: Some(b"br-index"),
        },
        Asset {
            path: "web-49ec168690a455e2_bg.wasm",
            mime: "application/wasm",
            tag: "bb",
            identity: b"\0asm-module",
            gzip: Some(b"gz-wasm"),
            br: None,
        },
        Asset {
            path: "favicon.png",
            mime: "image/png",
            tag: "cc",
            identity: b"png",
            gzip: None,
            br: None,
        },
    ];

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    async fn body(response: axum::response::Response) -> Vec<u8> {
        axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec()
    }

    #[tokio::test]
    async fn embedded_files_are_served_in_the_chosen_coding_with_their_tags() {
        let br = headers(&[(header::ACCEPT_ENCODING, "gzip, br")]);
        // Routes get index.html; assets their own file; a missing asset 404.
        let res = serve_embedded(ASSETS, "/admin/users", false, false, &br);
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()[header::CONTENT_ENCODING], "br");
        assert_eq!(res.headers()[header::ETAG], "\"aa-br\"");
        assert_eq!(res.headers()[header::VARY], "accept-encoding");
        assert_eq!(res.headers()[header::CONTENT_LENGTH], "8");
        assert_eq!(body(res).await, b"br-index");
        let res = serve_embedded(ASSETS, "/web-49ec168690a455e2_bg.wasm", true, false, &br);
        assert_eq!(
            res.headers()[header::CONTENT_ENCODING],
            "gzip",
            "no brotli form"
        );
        assert_eq!(res.headers()[header::ETAG], "\"bb-gz\"");
        assert_eq!(res.headers()[header::CONTENT_TYPE], "application/wasm");
        assert_eq!(body(res).await, b"gz-wasm");
        let res = serve_embedded(ASSETS, "/favicon.png", true, false, &br);
        assert!(res.headers().get(header::CONTENT_ENCODING).is_none());
        assert!(res.headers().get(header::VARY).is_none(), "one form only");
        assert_eq!(res.headers()[header::ETAG], "\"cc\"");
        for missing in [
            "/missing.js",
            "/index.htm",
            "/../index.html",
            "//index.html",
        ] {
            let res = serve_embedded(ASSETS, missing, true, false, &br);
            assert_eq!(res.status(), StatusCode::NOT_FOUND, "{missing}");
        }
        // No Accept-Encoding: the file as is.
        let res = serve_embedded(ASSETS, "/", false, false, &HeaderMap::new());
        assert!(res.headers().get(header::CONTENT_ENCODING).is_none());
        assert_eq!(res.headers()[header::ETAG], "\"aa\"");
        assert_eq!(body(res).await, b"<!DOCTYPE html>index");
        // HEAD: the headers of GET, no body.
        let res = serve_embedded(ASSETS, "/", false, true, &HeaderMap::new());
        assert_eq!(res.headers()[header::CONTENT_LENGTH], "20");
        assert!(body(res).await.is_empty());
    }

    #[tokio::test]
    async fn a_client_with_the_current_copy_gets_304() {
        for (if_none_match, accept, expected) in [
            ("\"aa-br\"", "br", StatusCode::NOT_MODIFIED),
            ("W/\"aa-br\"", "br", StatusCode::NOT_MODIFIED),
            ("\"zz\", \"aa-br\"", "br", StatusCode::NOT_MODIFIED),
            ("*", "br", StatusCode::NOT_MODIFIED),
            ("\"aa-br\"", "gzip", StatusCode::OK),
            ("\"aa\"", "br", StatusCode::OK),
            ("aa-br", "br", StatusCode::OK),
            ("", "br", StatusCode::OK),
        ] {
            let map = headers(&[
                (header::ACCEPT_ENCODING, accept),
                (header::IF_NONE_MATCH, if_none_match),
            ]);
            let res = serve_embedded(ASSETS, "/", false, false, &map);
            assert_eq!(res.status(), expected, "{if_none_match} / {accept}");
            assert!(res.headers().contains_key(header::ETAG));
            if expected == StatusCode::NOT_MODIFIED {
                assert!(body(res).await.is_empty());
            }
        }
    }

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
