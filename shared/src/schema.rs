//! Property schemas for `#[schema(schema_with = …)]`: fixed sets of strings, and patterns built
//! from the character rules of the gateway's validators, which an inline `pattern = "…"` cannot
//! spell (see below).
//!
//! A `schema_with` function replaces the property's whole schema: utoipa adds neither the
//! field's doc comment nor `null` for an `Option` field. So each function states the
//! description (the field's doc comment, where it has one) and whether `null` is accepted.
//!
//! Patterns are anchored and use only character classes, groups, alternation and repetition, so
//! that ECMA-262 (with the `u` flag, as JSON Schema asks) and Python's `re` (Schemathesis
//! generates from it) read them alike. Code points of the Basic Multilingual Plane are written as
//! `\uXXXX`; supplementary ones have no escape both dialects know (`\u{…}` is ECMA-only,
//! `\U…` Python-only), so they are written as the characters themselves.

use std::fmt::Write as _;

use serde_json::Value;
use utoipa::openapi::schema::{Object, ObjectBuilder, SchemaType, Type};

use crate::text::{CONTROL, INVISIBLE, WHITESPACE};

/// A character class of the union of `sets` and `extra` (ASCII, written as is), or of
/// everything else when `negated`.
fn class(negated: bool, sets: &[&[(char, char)]], extra: &str) -> String {
    let mut ranges: Vec<(char, char)> = sets.iter().flat_map(|set| set.iter().copied()).collect();
    ranges.sort_unstable();
    let mut merged: Vec<(char, char)> = Vec::new();
    for (first, last) in ranges {
        let joins = merged
            .last()
            .is_some_and(|&(_, end)| u32::from(first) <= u32::from(end) + 1);
        if joins {
            if let Some(previous) = merged.last_mut() {
                previous.1 = previous.1.max(last);
            }
        } else {
            merged.push((first, last));
        }
    }
    let mut out = String::from(if negated { "[^" } else { "[" });
    for (first, last) in merged {
        push_char(&mut out, first);
        if last != first {
            out.push('-');
            push_char(&mut out, last);
        }
    }
    out.push_str(extra);
    out.push(']');
    out
}

fn push_char(out: &mut String, c: char) {
    if u32::from(c) <= 0xFFFF {
        let _ = write!(out, "\\u{:04X}", u32::from(c));
    } else {
        out.push(c);
    }
}

/// One character of Unicode `White_Space`.
fn whitespace() -> String {
    class(false, &[WHITESPACE], "")
}

/// One character that is not `White_Space` (nor NUL, which the API refuses in every string).
fn not_whitespace() -> String {
    class(true, &[WHITESPACE, &[('\u{0}', '\u{0}')]], "")
}

/// Any character but NUL, which the API refuses in every string (server/src/error.rs
/// `read_json`; Postgres text cannot hold it).
const NOT_NUL: &str = "[^\\u0000]";

/// One character of a display name: no control or invisible character.
fn visible() -> String {
    class(true, &[CONTROL, INVISIBLE], "")
}

/// The first or last character of a display name: no whitespace either.
fn visible_edge() -> String {
    class(true, &[CONTROL, INVISIBLE, WHITESPACE], "")
}

/// A string, or a string or `null`.
fn string(nullable: bool) -> ObjectBuilder {
    ObjectBuilder::new().schema_type(if nullable {
        SchemaType::Array(vec![Type::String, Type::Null])
    } else {
        SchemaType::new(Type::String)
    })
}

/// One of `values` (or `null` when `nullable`).
fn one_of(values: &[&str], nullable: bool, description: &str) -> Object {
    let mut allowed: Vec<Value> = values.iter().map(|v| Value::from(*v)).collect();
    if nullable {
        allowed.push(Value::Null);
    }
    string(nullable)
        .enum_values(Some(allowed))
        .description(Some(description))
        .build()
}

/// `PinDecision::decision` (server/src/admin/pins.rs `decide`).
pub fn pin_decision() -> Object {
    one_of(&["approve", "reject"], false, "`approve` or `reject`.")
}

/// `SetTeamMember::role` (`teams::ROLES`).
pub fn team_role() -> Object {
    one_of(
        &["member", "team_admin"],
        false,
        "`member` or `team_admin`.",
    )
}

/// `CreateServer::detection` (`servers::validate_detection`).
pub fn detection_on_create() -> Object {
    one_of(
        &["off", "log", "block"],
        true,
        "`off`, `log` (default) or `block`.",
    )
}

/// `UpdateServer::detection`.
pub fn detection() -> Object {
    one_of(&["off", "log", "block"], true, "`off`, `log` or `block`.")
}

/// `CreateServer::tool_pinning` (`servers::validate_pinning`).
pub fn tool_pinning_on_create() -> Object {
    one_of(
        &["off", "warn", "quarantine"],
        true,
        "`off`, `warn` or `quarantine` (default for new servers).",
    )
}

/// `UpdateServer::tool_pinning`.
pub fn tool_pinning() -> Object {
    one_of(
        &["off", "warn", "quarantine"],
        true,
        "`off`, `warn` or `quarantine`.",
    )
}

/// `RateLimitOverride::kind` (server/src/admin/limits.rs `check`).
pub fn rate_limit_kind() -> Object {
    one_of(
        &["user", "server", "tool"],
        false,
        "`user`, `server` or `tool`.",
    )
}

/// `auth_method` of an `oauth_client_credentials` credential (`servers::oauth_parts`).
pub fn client_auth_method() -> Object {
    one_of(
        &["client_secret_basic", "client_secret_post"],
        true,
        "`client_secret_basic` (default) or `client_secret_post`.",
    )
}

/// `CreateServer::name`: a server name (`accounts::validate_server_name`), or a display name
/// (`accounts::validate_display_name`) with an ASCII letter or digit to derive the segment from
/// (`accounts::server_name_from`). Every server name is such a display name.
pub fn server_name_or_display_name() -> Object {
    let (inner, edge) = (visible(), visible_edge());
    string(false)
        .min_length(Some(1))
        .max_length(Some(100))
        .pattern(Some(format!(
            "^(?:{edge}{inner}*)?[A-Za-z0-9](?:{inner}*{edge})?$"
        )))
        .description(Some(
            "The path segment of `/mcp/{name}` (`a-z 0-9 - _`), or a display name (\"GitHub MCP\"), \
             from which the segment is derived (`github-mcp`) and which is then kept as the display \
             name.",
        ))
        .build()
}

/// `""` or a display name (`accounts::validate_display_name`): 1 to 100 characters without
/// control or invisible characters or surrounding whitespace; or `null`.
fn display_name(description: &str) -> Object {
    let (inner, edge) = (visible(), visible_edge());
    string(true)
        .max_length(Some(100))
        .pattern(Some(format!("^(?:{edge}(?:{inner}*{edge})?)?$")))
        .description(Some(description))
        .build()
}

/// `CreateServer::display_name`.
pub fn display_name_on_create() -> Object {
    display_name("What the UI shows (default: the name as given).")
}

/// `UpdateServer::display_name`.
pub fn display_name_on_update() -> Object {
    display_name("A new display name; `\"\"` goes back to the name.")
}

/// `TeamName::name` (server/src/admin/teams.rs `valid_name`): trimmed, then a display name.
pub fn team_name() -> Object {
    let (space, inner, edge) = (whitespace(), visible(), visible_edge());
    string(false)
        .min_length(Some(1))
        .pattern(Some(format!(
            "^{space}*{edge}(?:{inner}{{0,98}}{edge})?{space}*$"
        )))
        .description(Some("1 to 100 characters, unique."))
        .build()
}

/// `ConsoleCall::tool`: the name a `tools/call` carries (`mcp::message::clean`; at most 256
/// bytes, which no character count states exactly).
pub fn console_tool() -> Object {
    let (inner, edge) = (visible(), visible_edge());
    string(false)
        .min_length(Some(1))
        .pattern(Some(format!("^{edge}(?:{inner}*{edge})?$")))
        .description(Some(
            "The backend's own tool name with `server`, else its name on `/mcp`: without control or \
             invisible characters or surrounding whitespace, at most 256 bytes.",
        ))
        .build()
}

/// A username as accounts are created with it (`accounts::normalize_username`, then
/// `password::validate_username`): trimmed and lowercased, 3 to 64 of `a-z 0-9 . _ -` starting
/// with a letter or digit. U+212A KELVIN SIGN lowercases to `k`.
pub fn username() -> Object {
    let space = whitespace();
    string(false)
        .pattern(Some(format!(
            "^{space}*[A-Za-z0-9\\u212A][A-Za-z0-9\\u212A._-]{{2,63}}{space}*$"
        )))
        .description(Some(
            "3 to 64 characters from `A-Z a-z 0-9 . _ -`, starting with a letter or digit; \
             case-insensitive (kept in lowercase), surrounding whitespace ignored.",
        ))
        .build()
}

/// An email address as `accounts::validate_email` takes it: trimmed; empty (or `null`) for
/// none; else no whitespace or control character, one `@` with something before it and a `.`
/// after it. Its limit of 254 bytes has no exact count in characters.
pub fn email() -> Object {
    let space = whitespace();
    let part = class(true, &[CONTROL, WHITESPACE], "@");
    string(true)
        .pattern(Some(format!(
            "^{space}*(?:{part}+@{part}*\\.{part}*)?{space}*$"
        )))
        .description(Some(
            "An email address (at most 254 bytes): no whitespace or control characters, one `@`, \
             a `.` after it. Surrounding whitespace is ignored; empty or null: none.",
        ))
        .build()
}

/// `CreateServer::description` and `UpdateServer::description` (`servers::validate_description`):
/// at most 1000 characters once trimmed; empty for none.
pub fn server_description() -> Object {
    let (space, other) = (whitespace(), not_whitespace());
    string(true)
        .pattern(Some(format!(
            "^{space}*(?:{other}(?:{NOT_NUL}{{0,998}}{other})?)?{space}*$"
        )))
        .description(Some(
            "At most 1000 characters once surrounding whitespace is removed; empty: none.",
        ))
        .build()
}

/// `CreateApiKey::name` (`accounts::create_api_key`): 1 to 100 characters once trimmed.
pub fn api_key_name() -> Object {
    let (space, other) = (whitespace(), not_whitespace());
    string(false)
        .min_length(Some(1))
        .pattern(Some(format!(
            "^{space}*{other}(?:{NOT_NUL}{{0,98}}{other})?{space}*$"
        )))
        .description(Some(
            "1 to 100 characters once surrounding whitespace is removed.",
        ))
        .build()
}

/// `CreateOAuthClient::name` (server/src/admin/oauth.rs `create_client`): at most 100
/// characters, not only whitespace.
pub fn oauth_client_name() -> Object {
    let (space, other) = (whitespace(), not_whitespace());
    string(false)
        .min_length(Some(1))
        .max_length(Some(100))
        .pattern(Some(format!("^{space}*{other}{NOT_NUL}*$")))
        .description(Some(
            "At most 100 characters, not only whitespace. The consent page shows it without \
             control or invisible characters.",
        ))
        .build()
}

/// The authority and the rest of an `http(s)` URL the `url` crate (WHATWG) parses as written:
/// a host name whose last label starts with a letter or `_` (one ending in a number would be
/// read as an IPv4 address), a dotted IPv4 address, `[::1]` or an IPv6 address in eight groups,
/// a port (1 to 65535), a path and a query of URL code points. Other forms the server takes too
/// (a shortened IPv6 address, surrounding spaces) are left out, so that every URL the pattern
/// admits is one the server accepts. No credentials (`@` before the path) and no fragment: the gateway refuses both.
const HOST: &str = "(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\\.)*[A-Za-z_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?";
const IPV4: &str = "(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
const PORT: &str = "(?::(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?";
/// `[::1]`, or an IPv6 address written out in eight groups.
const IPV6: &str = "\\[(?:::1|(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4})\\]";
const REST: &str = "(?:/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*)?(?:\\?[A-Za-z0-9._~!$&'()*+,;=:@%/?-]*)?";

fn url_pattern(schemes: &str, hosts: &str) -> String {
    format!("^{schemes}://(?:{hosts}){PORT}{REST}$")
}

/// An `http` or `https` URL (`servers::validate_url`, `audit::preflight`): see `HOST`. Where it
/// points is checked when it is used: a reserved address is refused with 403, and so is a
/// private one for a scan without `allow_private`.
pub fn http_url(nullable: bool, max_length: Option<usize>, description: &str) -> Object {
    string(nullable)
        .min_length(Some(1))
        .max_length(max_length)
        .pattern(Some(url_pattern(
            "[Hh][Tt][Tt][Pp][Ss]?",
            &format!("{HOST}|{IPV4}|{IPV6}"),
        )))
        .description(Some(description))
        .build()
}

/// `CreateServer::url`.
pub fn server_url() -> Object {
    http_url(
        false,
        None,
        "The backend's MCP endpoint, http(s), without credentials or fragment.",
    )
}

/// `UpdateServer::url`.
pub fn server_url_on_update() -> Object {
    http_url(
        true,
        None,
        "A new MCP endpoint, http(s), without credentials or fragment.",
    )
}

/// `AuditRequest::url`.
pub fn audit_url() -> Object {
    http_url(
        true,
        Some(2000),
        "The MCP endpoint to scan (absent when `server_id` is given; one of the two).",
    )
}

/// `OAuthClientCredentials::token_url` (`servers::valid_endpoint`).
pub fn token_url() -> Object {
    http_url(
        false,
        Some(2000),
        "The authorization server's token endpoint, http(s), without credentials or fragment.",
    )
}

/// `OAuthClientCredentials::resource` (`servers::valid_endpoint`).
pub fn resource_url() -> Object {
    http_url(
        true,
        Some(2000),
        "Sent as `resource` (RFC 8707); default: the server's URL.",
    )
}

/// `LegacyAuditRequest::url`.
pub fn legacy_audit_url() -> Object {
    http_url(false, Some(2000), "The MCP endpoint to scan.")
}

/// `CreateOAuthClient::redirect_uris`: 1 to 10 URIs an admin registers
/// (`oauth::clients::validate_redirect_uri` for a client that is not native): https anywhere,
/// http on a loopback host, at most 2000 characters each.
pub fn redirect_uris() -> utoipa::openapi::schema::Array {
    let https = format!("https://(?:{HOST}|{IPV4}|{IPV6}){PORT}{REST}");
    let http = format!("http://(?:localhost|127\\.0\\.0\\.1|\\[::1\\]){PORT}{REST}");
    let uri = string(false)
        .min_length(Some(1))
        .max_length(Some(2000))
        .pattern(Some(format!("^(?:{https}|{http})$")))
        .build();
    utoipa::openapi::schema::ArrayBuilder::new()
        .items(uri)
        .min_items(Some(1))
        .max_items(Some(10))
        .description(Some(
            "1 to 10 redirect URIs: https, or http on a loopback host (`localhost`, `127.0.0.1`, \
             `[::1]`); no fragment.",
        ))
        .build()
}

/// `RateLimits::overrides`: at most 1000, each one of three shapes by `kind`
/// (server/src/admin/limits.rs `check`): `user` names a `user_id`, `server` a `server_id`,
/// `tool` a `server_id` and a `tool` (1 to 200 bytes); the fields of the other shapes are
/// absent or `null`. `label` is the gateway's (the user's or server's name), ignored when sent.
pub fn rate_limit_overrides() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, OneOfBuilder};
    let integer = || {
        ObjectBuilder::new()
            .schema_type(SchemaType::new(Type::Integer))
            .format(Some(utoipa::openapi::schema::SchemaFormat::KnownFormat(
                utoipa::openapi::schema::KnownFormat::Int64,
            )))
    };
    let null = || ObjectBuilder::new().schema_type(SchemaType::new(Type::Null));
    let shape = |kind: &str, fields: &[&str]| {
        let mut object = ObjectBuilder::new()
            .schema_type(SchemaType::new(Type::Object))
            .property("kind", string(false).enum_values(Some([Value::from(kind)])))
            .required("kind")
            .property(
                "per_minute",
                integer().minimum(Some(0)).maximum(Some(1_000_000_000)),
            )
            .required("per_minute")
            .property("label", string(true));
        for field in ["user_id", "server_id", "tool"] {
            object = if !fields.contains(&field) {
                object.property(field, null())
            } else if field == "tool" {
                object
                    .property(field, string(false).min_length(Some(1)))
                    .required(field)
            } else {
                object.property(field, integer()).required(field)
            };
        }
        object.build()
    };
    ArrayBuilder::new()
        .items(
            OneOfBuilder::new()
                .item(shape("user", &["user_id"]))
                .item(shape("server", &["server_id"]))
                .item(shape("tool", &["server_id", "tool"])),
        )
        .max_items(Some(1000))
        .description(Some(
            "Overrides by user, server or tool: `{kind: user, user_id}`, `{kind: server, \
             server_id}` or `{kind: tool, server_id, tool}`, each with `per_minute`.",
        ))
        .build()
}
