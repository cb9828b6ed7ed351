//! The aggregated lists: fan-out over the caller's backends from the catalog, merged under
//! prefixed names, filtered by tool rules, paginated with cursors that carry each backend's
//! position; colliding resource URIs rewritten.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use serde_json::value::RawValue;

use crate::mcp::aggregate::catalog::{Kind as ListKind, Listed};
use crate::mcp::aggregate::session::Sess;
use crate::mcp::aggregate::{Ctx, invalid};
use crate::mcp::message::Message;
use crate::mcp::registry::Backend;

/// Prefix of resource URIs rewritten because two backends use the same one.
pub(super) const URI_SCHEME: &str = "mcpgw://";

/// The cursor of the aggregated lists: each backend's next offset (backends absent are done).
pub(super) fn decode_cursor(raw: &str) -> Option<HashMap<i64, usize>> {
    let bytes = URL_SAFE_NO_PAD.decode(raw).ok()?;
    let pairs: Vec<(i64, usize)> = serde_json::from_slice(&bytes).ok()?;
    Some(pairs.into_iter().collect())
}

pub(super) fn encode_cursor(positions: &[(i64, usize)]) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(positions).unwrap_or_default())
}

/// Merges one list over the caller's backends into the JSON-RPC response body. Items are
/// copied from the catalog's pre-rendered JSON; only colliding resource URIs are rewritten.
pub(super) async fn list(
    ctx: &Ctx,
    sess: &Sess,
    msg: &Message,
    kind: ListKind,
) -> Result<String, Response> {
    let body = std::str::from_utf8(&ctx.body).unwrap_or_default();
    let cursor = crate::mcp::splice::get_str(body, &["params", "cursor"]);
    let positions = match cursor.as_deref() {
        Some(raw) => match decode_cursor(raw) {
            Some(p) => Some(p),
            None => return Err(invalid(ctx, msg, "invalid cursor")),
        },
        None => None,
    };
    let backends: Vec<Arc<Backend>> = ctx
        .usable()
        .await?
        .into_iter()
        .filter(|b| positions.as_ref().is_none_or(|p| p.contains_key(&b.id)))
        .collect();
    let filter = if kind == ListKind::Tools {
        Some(ctx.tool_filter().await?)
    } else {
        None
    };
    let fetched = fetch_lists(ctx, msg, &backends, kind).await;
    // Only resources can need rewriting (two backends with one URI).
    let rewritten = (kind == ListKind::Resources)
        .then(|| colliding_uris(&fetched))
        .flatten();
    let page_size = ctx.state.config.mcp.aggregate_page_size;
    let mut page: Vec<std::borrow::Cow<'_, RawValue>> = Vec::new();
    let mut next: Vec<(i64, usize)> = Vec::new();
    for (backend, listed) in &fetched {
        // Positions count the items this caller can see.
        let visible: Vec<usize> = (0..listed.rendered.len())
            .filter(|&i| {
                filter
                    .as_ref()
                    .is_none_or(|f| listed.name(i).is_some_and(|n| f.permits(backend.id, n)))
                    && listed.pinned(&ctx.state, backend, i)
            })
            .collect();
        let start = positions
            .as_ref()
            .and_then(|p| p.get(&backend.id).copied())
            .unwrap_or(0)
            .min(visible.len());
        let room = page_size.saturating_sub(page.len());
        let end = (start + room).min(visible.len());
        for &i in &visible[start..end] {
            match rewritten.as_ref().and_then(|r| r.get(&(backend.id, i))) {
                Some(raw) => page.push(std::borrow::Cow::Owned(raw.clone())),
                None => page.push(std::borrow::Cow::Borrowed(&*listed.rendered[i])),
            }
        }
        if end < visible.len() {
            next.push((backend.id, end));
        }
    }
    let mut body =
        String::with_capacity(64 + page.iter().map(|r| r.get().len() + 1).sum::<usize>());
    body.push_str(r#"{"jsonrpc":"2.0","id":"#);
    body.push_str(msg.id.as_deref().unwrap_or("null"));
    body.push_str(r#","result":{""#);
    body.push_str(kind.field());
    body.push_str(r#"":["#);
    for (i, item) in page.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(item.get());
    }
    body.push(']');
    if !next.is_empty() {
        body.push_str(r#","nextCursor":""#);
        body.push_str(&encode_cursor(&next));
        body.push('"');
    }
    if sess.modern {
        body.push_str(r#","resultType":"complete","ttlMs":0,"cacheScope":"private""#);
    }
    body.push_str("}}");
    Ok(body)
}

/// Fetches one list from each backend: fresh cached lists at once, the others in parallel; a
/// backend that fails or is too slow is left out (and an activity record says why).
pub(super) async fn fetch_lists(
    ctx: &Ctx,
    msg: &Message,
    backends: &[Arc<Backend>],
    kind: ListKind,
) -> Vec<(Arc<Backend>, Arc<Listed>)> {
    let catalog = &ctx.state.mcp.aggregate.catalog;
    let registry = &ctx.state.mcp.registry;
    let mut out: Vec<Option<(Arc<Backend>, Arc<Listed>)>> = Vec::with_capacity(backends.len());
    let mut missing = Vec::new();
    for (i, b) in backends.iter().enumerate() {
        if registry.is_offline(b.id) {
            ctx.record(&b.name, msg, "backend_offline", 200, 0);
            out.push(None);
            continue;
        }
        match catalog.cached_list(b, kind) {
            Some(listed) => out.push(Some((b.clone(), listed))),
            None => {
                out.push(None);
                missing.push(i);
            }
        }
    }
    if !missing.is_empty() {
        let fetched = futures_util::future::join_all(missing.iter().map(|&i| {
            let b = &backends[i];
            async move {
                let result =
                    match tokio::time::timeout(b.target.timeout, catalog.list(&ctx.state, b, kind))
                        .await
                    {
                        Ok(Ok(listed)) => Ok(listed),
                        Ok(Err(e)) => Err(e.label()),
                        Err(_) => Err("backend_timeout"),
                    };
                (i, result)
            }
        }))
        .await;
        for (i, result) in fetched {
            let backend = &backends[i];
            match result {
                Ok(listed) => out[i] = Some((backend.clone(), listed)),
                Err(label) => {
                    tracing::info!(server = %backend.name, reason = label, list = kind.method(), "backend left out of an aggregated list");
                    ctx.record(&backend.name, msg, label, 200, 0);
                }
            }
        }
    }
    out.into_iter().flatten().collect()
}

pub(super) fn percent_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Resources whose URI more than one backend lists, rendered with the URI
/// `mcpgw://{prefix}/{percent-encoded uri}`, by (server, index); `None` when nothing collides.
pub(super) fn colliding_uris(
    fetched: &[(Arc<Backend>, Arc<Listed>)],
) -> Option<HashMap<(i64, usize), Box<RawValue>>> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (_, listed) in fetched {
        let unique: HashSet<&str> = listed
            .items
            .iter()
            .filter_map(|r| r["uri"].as_str())
            .collect();
        for uri in unique {
            *seen.entry(uri).or_default() += 1;
        }
    }
    if seen.values().all(|&n| n < 2) {
        return None;
    }
    let mut out = HashMap::new();
    for (backend, listed) in fetched {
        for (i, item) in listed.items.iter().enumerate() {
            if let Some(uri) = item["uri"].as_str()
                && seen.get(uri).copied().unwrap_or(0) > 1
            {
                let mut item = item.clone();
                item["uri"] = json!(format!(
                    "{URI_SCHEME}{}/{}",
                    backend.prefix,
                    percent_encode(uri)
                ));
                if let Ok(raw) = serde_json::value::to_raw_value(&item) {
                    out.insert((backend.id, i), raw);
                }
            }
        }
    }
    Some(out)
}
