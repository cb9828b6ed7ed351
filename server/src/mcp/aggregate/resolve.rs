//! Names and URIs back to their backend: prefixed names, aliases (looked up only on servers
//! the caller may use), resource URIs and templates.

use std::sync::Arc;

use axum::response::Response;

use crate::auth::identity::Principal;
use crate::mcp::aggregate::catalog::Kind as ListKind;
use crate::mcp::aggregate::lists::{URI_SCHEME, fetch_lists};
use crate::mcp::aggregate::{AGGREGATED, Ctx, rpc_refusal};
use crate::mcp::backend::BackendError;
use crate::mcp::message::Message;
use crate::mcp::naming;
use crate::mcp::protocol::code;
use crate::mcp::registry::Backend;
use crate::mcp::relay;
use crate::state::AppState;

/// The enabled server with this prefix, as it acts for `user_id` (`Registry::for_user`).
pub(super) fn by_prefix(state: &AppState, prefix: &str, user_id: i64) -> Option<Arc<Backend>> {
    let registry = &state.mcp.registry;
    registry
        .snapshot()
        .values()
        .find(|b| b.enabled && b.prefix == prefix)
        .map(|b| registry.for_user(b, user_id))
}

/// Whether the caller may use `backend` (fails closed).
async fn usable(state: &AppState, principal: &Principal, backend: &Backend) -> bool {
    state
        .mcp
        .registry
        .may_use(principal, backend)
        .await
        .unwrap_or(false)
}

/// The backend and its own name for an exposed tool or prompt name (`Ok(None)`: no such name,
/// or an alias on a server the caller may not use).
/// Natural names are split at the prefix; aliases are looked up in the backend's list.
pub(crate) async fn resolve_exposed(
    state: &AppState,
    principal: &Principal,
    kind: ListKind,
    exposed: &str,
) -> Result<Option<(Arc<Backend>, String)>, BackendError> {
    let Some(backend) =
        naming::prefix_of(exposed).and_then(|p| by_prefix(state, p, principal.user_id))
    else {
        return Ok(None);
    };
    // A name on a server the caller may not use is answered exactly like an unknown one, so
    // prefixes and aliases tell nothing about servers beyond the caller's (and that server's
    // list is never fetched for them).
    if !usable(state, principal, &backend).await {
        return Ok(None);
    }
    // A natural name resolves without a lookup; an alias needs the server's list.
    if let Some(name) = naming::natural_name(&backend.prefix, exposed) {
        return Ok(Some((backend, name.to_string())));
    }
    let listed = state
        .mcp
        .aggregate
        .catalog
        .list(state, &backend, kind)
        .await?;
    let name = listed
        .items
        .iter()
        .filter_map(|t| t["name"].as_str())
        .find(|n| naming::exposed(&backend.prefix, n) == exposed)
        .map(str::to_string);
    Ok(name.map(|n| (backend, n)))
}

pub(super) fn unknown(raw_id: Option<&str>, kind: ListKind, name: &str) -> Response {
    let what = if kind == ListKind::Tools {
        "tool"
    } else {
        "prompt"
    };
    rpc_refusal(
        raw_id,
        code::INVALID_PARAMS,
        &format!("unknown {what}: {name}"),
    )
}

/// The backend and its own name for an exposed tool or prompt name.
pub(super) async fn resolve_name(
    ctx: &Ctx,
    msg: &Message,
    kind: ListKind,
    exposed: &str,
) -> Result<(Arc<Backend>, String), Response> {
    let raw_id = msg.id.as_deref();
    match resolve_exposed(&ctx.state, &ctx.principal, kind, exposed).await {
        Ok(Some(found)) => Ok(found),
        Ok(None) => {
            // The caller sees an unknown name either way; a name on a server they may not use
            // is still recorded as an `access_denied` event for the admins.
            if let Some(backend) = naming::prefix_of(exposed)
                .and_then(|p| by_prefix(&ctx.state, p, ctx.principal.user_id))
                && !usable(&ctx.state, &ctx.principal, &backend).await
            {
                crate::mcp::gate::deny(
                    &ctx.caller(),
                    &backend.name,
                    Some(exposed),
                    "no access to this server",
                );
            }
            ctx.record(AGGREGATED, msg, "unknown_name", 200, 0);
            Err(unknown(raw_id, kind, exposed))
        }
        Err(e) => Err(relay::backend_error(raw_id, &e)),
    }
}

/// A URI template matches a URI when its literal parts appear in order (`{…}` matches
/// anything).
pub(super) fn template_matches(template: &str, uri: &str) -> bool {
    let mut pattern = String::new();
    let mut in_var = false;
    for c in template.chars() {
        match c {
            '{' => {
                in_var = true;
                pattern.push('*');
            }
            '}' => in_var = false,
            c if !in_var => pattern.push(c),
            _ => {}
        }
    }
    naming::glob_match(&pattern, uri)
}

/// The backend and its own URI for a URI the client reads.
pub(super) async fn resolve_uri(
    ctx: &Ctx,
    msg: &Message,
    uri: &str,
) -> Result<(Arc<Backend>, String), Response> {
    if let Some(rest) = uri.strip_prefix(URI_SCHEME)
        && let Some((prefix, encoded)) = rest.split_once('/')
        && let Some(backend) = by_prefix(&ctx.state, prefix, ctx.principal.user_id)
        // A server the caller may not use is searched like any unknown URI (and not found).
        && usable(&ctx.state, &ctx.principal, &backend).await
    {
        return Ok((backend, crate::oauth::form_decode(encoded)));
    }
    let backends = ctx.usable().await?;
    let resources = fetch_lists(ctx, msg, &backends, ListKind::Resources).await;
    let exact: Vec<&Arc<Backend>> = resources
        .iter()
        .filter(|(_, listed)| listed.items.iter().any(|r| r["uri"].as_str() == Some(uri)))
        .map(|(b, _)| b)
        .collect();
    if exact.len() == 1 {
        return Ok((exact[0].clone(), uri.to_string()));
    }
    if exact.is_empty() {
        let templates = fetch_lists(ctx, msg, &backends, ListKind::Templates).await;
        let matching: Vec<&Arc<Backend>> = templates
            .iter()
            .filter(|(_, listed)| {
                listed
                    .items
                    .iter()
                    .filter_map(|t| t["uriTemplate"].as_str())
                    .any(|t| template_matches(t, uri))
            })
            .map(|(b, _)| b)
            .collect();
        if matching.len() == 1 {
            return Ok((matching[0].clone(), uri.to_string()));
        }
        if matching.is_empty() {
            ctx.record(AGGREGATED, msg, "not_found", 200, 0);
            return Err(rpc_refusal(msg.id.as_deref(), -32002, "resource not found"));
        }
    }
    ctx.record(AGGREGATED, msg, "ambiguous", 200, 0);
    Err(rpc_refusal(
        msg.id.as_deref(),
        code::INVALID_PARAMS,
        "more than one server offers this resource; use the URI from resources/list",
    ))
}
