//! Applies the suspicious-payload rules (`crate::detect`) to MCP traffic, per server mode:
//! tool-call arguments before they reach a backend, and tool results and tool descriptions
//! before they reach the client. `log` records a `suspicious_payload` event (and flags the
//! activity record); `block` also refuses the call, or replaces the answer with an error.

use serde_json::{Value, json};

use crate::auth::identity::Principal;
use crate::detect::{self, Finding, Mode};
use crate::events::{EventContext, EventType, Severity};
use crate::state::AppState;

/// JSON-RPC error code of a call or answer blocked by the payload rules.
pub const BLOCKED: i64 = -32030;

fn findings_json(findings: &[Finding]) -> Value {
    Value::Array(
        findings
            .iter()
            .take(20)
            .map(|f| json!({ "category": f.category, "rule": f.rule, "location": f.location }))
            .collect(),
    )
}

#[allow(clippy::too_many_arguments)]
fn report(
    state: &AppState,
    ctx: &EventContext,
    principal: Option<&Principal>,
    server: &str,
    tool: Option<&str>,
    direction: &str,
    findings: &[Finding],
    mode: Mode,
) {
    state.events.record(
        EventType::SuspiciousPayload,
        if mode == Mode::Block {
            Severity::High
        } else {
            Severity::Medium
        },
        ctx,
        principal.map(|p| p.user_id),
        principal.map(|p| p.username.as_str()),
        json!({
            "server": server,
            "tool": tool,
            "direction": direction,
            "action": if mode == Mode::Block { "blocked" } else { "logged" },
            "findings": findings_json(findings),
        }),
    );
}

/// Checks a `tools/call`'s arguments (their JSON text). `Some(findings)` when a rule matched (the caller flags
/// the activity record); the error body to answer with when the server blocks.
pub fn check_call(
    state: &AppState,
    ctx: &EventContext,
    principal: &Principal,
    server: &str,
    mode: Mode,
    tool: Option<&str>,
    arguments: &str,
) -> Option<(Vec<Finding>, bool)> {
    if mode == Mode::Off {
        return None;
    }
    let findings = detect::scan_arguments_text(arguments);
    if findings.is_empty() {
        return None;
    }
    report(
        state,
        ctx,
        Some(principal),
        server,
        tool,
        "request",
        &findings,
        mode,
    );
    Some((findings, mode == Mode::Block))
}

/// Checks one answer from a backend (a `tools/call` result or a `tools/list`); in block mode a
/// flagged result becomes a JSON-RPC error with the same id, and flagged tools leave a list.
pub fn check_answer(
    state: &AppState,
    ctx: &EventContext,
    principal: Option<&Principal>,
    server: &str,
    mode: Mode,
    tool: Option<&str>,
    message: &mut Value,
) -> bool {
    if mode == Mode::Off {
        return false;
    }
    let Some(result) = message.get_mut("result") else {
        return false;
    };
    // A tool list: only the flagged tools go (blocked), the others stay usable.
    if let Some(tools) = result.get_mut("tools").and_then(Value::as_array_mut) {
        let mut findings = Vec::new();
        tools.retain(|t| {
            let found = detect::scan_result(&json!({ "tools": [t] }));
            let keep = found.is_empty() || mode != Mode::Block;
            findings.extend(found);
            keep
        });
        if findings.is_empty() {
            return false;
        }
        report(
            state, ctx, principal, server, tool, "response", &findings, mode,
        );
        return true;
    }
    let findings = detect::scan_result(result);
    if findings.is_empty() {
        return false;
    }
    report(
        state, ctx, principal, server, tool, "response", &findings, mode,
    );
    if mode == Mode::Block {
        let id = message.get("id").cloned().unwrap_or(Value::Null);
        *message = json!({
            "jsonrpc": "2.0",
            "id": id,
            "error": {
                "code": BLOCKED,
                "message": "the server's answer was blocked by the gateway's payload rules",
                "data": { "findings": findings_json(&findings) },
            },
        });
    }
    true
}
