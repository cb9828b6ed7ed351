//! The one strict reading and the one policy gate, tested as an attacker would: hostile
//! variants of real MCP messages by the thousand through `/mcp/{server}` and `/mcp` to a
//! recording backend, the known bypasses against a real Python SDK backend, and the console
//! under the same limits as MCP clients.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use axum::response::{IntoResponse, Response};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestEnv};
use crate::mcp::{add_server, set_access, user_token};
use crate::peers::{PeerServer, Sdk};

/// A backend that records every POST body it receives and answers every request with a
/// result (both eras: `initialize` and `server/discover`).
pub(crate) struct RecordingBackend {
    port: u16,
    bodies: Arc<Mutex<Vec<Bytes>>>,
    _task: tokio::task::JoinHandle<()>,
}

impl RecordingBackend {
    pub(crate) async fn start() -> RecordingBackend {
        let bodies: Arc<Mutex<Vec<Bytes>>> = Arc::default();
        let seen = bodies.clone();
        let app = axum::Router::new().route(
            "/mcp",
            axum::routing::post(move |body: Bytes| {
                let seen = seen.clone();
                async move {
                    seen.lock().unwrap().push(body.clone());
                    answer(&body)
                }
            })
            .get(|| async { AxumStatus::METHOD_NOT_ALLOWED })
            .delete(|| async { AxumStatus::OK }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        RecordingBackend {
            port,
            bodies,
            _task: task,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    fn len(&self) -> usize {
        self.bodies.lock().unwrap().len()
    }

    fn since(&self, from: usize) -> Vec<Bytes> {
        self.bodies.lock().unwrap()[from..].to_vec()
    }
}

fn answer(body: &Bytes) -> Response {
    let Ok(message) = serde_json::from_slice::<Value>(body) else {
        return AxumStatus::BAD_REQUEST.into_response();
    };
    let id = message.get("id").cloned().unwrap_or(Value::Null);
    let info = json!({"name": "rec", "version": "1"});
    let result = match message["method"].as_str() {
        Some("initialize") => json!({
            "protocolVersion": message["params"]["protocolVersion"].as_str().unwrap_or("2025-11-25"),
            "capabilities": {"tools": {}}, "serverInfo": info}),
        Some("server/discover") => json!({
            "supportedVersions": ["2026-07-28", "2025-11-25"], "capabilities": {"tools": {}},
            "resultType": "complete", "_meta": {"io.modelcontextprotocol/serverInfo": info}}),
        Some("tools/list") => json!({"tools": [
            {"name": "echo", "inputSchema": {"type": "object"}},
            {"name": "add", "inputSchema": {"type": "object"}}], "resultType": "complete"}),
        _ if id.is_null() => return AxumStatus::ACCEPTED.into_response(),
        Some("tools/call") => {
            json!({"content": [{"type": "text", "text": "ran"}], "resultType": "complete"})
        }
        _ => json!({"resultType": "complete"}),
    };
    let mut headers = HeaderMap::new();
    headers.insert("content-type", "application/json".parse().unwrap());
    if message["method"] == "initialize" {
        headers.insert("mcp-session-id", "rec-session".parse().unwrap());
    }
    (
        headers,
        json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string(),
    )
        .into_response()
}

/// A JSON reader where the first of duplicate keys wins (serde_json's `Value` keeps the last).
fn first_wins(bytes: &[u8]) -> Option<Value> {
    struct First(Value);
    impl<'de> serde::Deserialize<'de> for First {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<First, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = First;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("json")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> Result<First, A::Error> {
                    let mut out = serde_json::Map::new();
                    while let Some((k, First(v))) = map.next_entry::<String, First>()? {
                        out.entry(k).or_insert(v);
                    }
                    Ok(First(Value::Object(out)))
                }
                fn visit_seq<A: serde::de::SeqAccess<'de>>(
                    self,
                    mut seq: A,
                ) -> Result<First, A::Error> {
                    let mut out = Vec::new();
                    while let Some(First(v)) = seq.next_element()? {
                        out.push(v);
                    }
                    Ok(First(Value::Array(out)))
                }
                fn visit_bool<E>(self, v: bool) -> Result<First, E> {
                    Ok(First(Value::Bool(v)))
                }
                fn visit_i64<E>(self, v: i64) -> Result<First, E> {
                    Ok(First(v.into()))
                }
                fn visit_u64<E>(self, v: u64) -> Result<First, E> {
                    Ok(First(v.into()))
                }
                fn visit_f64<E>(self, v: f64) -> Result<First, E> {
                    Ok(First(
                        serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number),
                    ))
                }
                fn visit_str<E>(self, v: &str) -> Result<First, E> {
                    Ok(First(Value::String(v.to_string())))
                }
                fn visit_unit<E>(self) -> Result<First, E> {
                    Ok(First(Value::Null))
                }
            }
            d.deserialize_any(V)
        }
    }
    serde_json::from_slice::<First>(bytes).ok().map(|f| f.0)
}

/// One raw POST; returns the status and the JSON-RPC answer (JSON or the SSE event with an id).
async fn post_raw(
    app: &TestApp,
    path: &str,
    token: &str,
    headers: &[(&str, String)],
    body: String,
) -> (StatusCode, Value) {
    let mut req = app
        .client
        .post(app.url(path))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let text = res.text().await.unwrap();
    let message = serde_json::from_str(&text).unwrap_or_else(|_| {
        text.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .find(|m| m.get("id").is_some() && m.get("method").is_none())
            .unwrap_or(Value::Null)
    });
    (status, message)
}

/// The pieces a hostile `tools/call` is built from (as JSON text, so duplicates, escapes and
/// wrong types survive).
#[derive(Debug, Clone)]
struct Case {
    aggregated: bool,
    modern: bool,
    id: Option<&'static str>,
    method: &'static str,
    name: Option<&'static str>,
    second_name: Option<(&'static str, &'static str)>,
    arguments: Option<String>,
    extra: Option<&'static str>,
    top_dup: Option<&'static str>,
    reverse: bool,
}

const META_2026: &str = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}"#;

const NAMES: &[&str] = &[
    "\"echo\"",
    "\"add\"",
    "\"\\u0065cho\"",
    "\"\\u0061dd\"",
    "\"Echo\"",
    "\"ECHO\"",
    "\"ec\\u200bho\"",
    "\"echo\\u0000\"",
    "\"\\ud800echo\"",
    "\"echo \"",
    "\"add\\ud83d\\ude00\"",
    "5",
    "null",
    "[\"echo\"]",
    "{\"name\":\"echo\"}",
];

fn ids() -> impl Strategy<Value = Option<&'static str>> {
    prop_oneof![
        20 => Just(Some("7")),
        8 => Just(Some("\"s-1\"")),
        1 => Just(Some("null")),
        1 => Just(Some("1.5")),
        1 => Just(Some("-0")),
        1 => Just(Some("true")),
        1 => Just(Some("\"\\u0031\"")),
        1 => Just(Some("123456789012345678901234567890")),
        1 => Just(None),
    ]
}

fn methods() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        24 => Just("\"tools/call\""),
        4 => Just("\"tools/c\\u0061ll\""),
        1 => Just("\"Tools/call\""),
        1 => Just("\"tools/call \""),
        1 => Just("\"tools/list\""),
        1 => Just("\"ping\""),
        1 => Just("5"),
    ]
}

fn names() -> impl Strategy<Value = Option<&'static str>> {
    prop_oneof![
        12 => prop::sample::select(&NAMES[..5]).prop_map(Some),
        6 => prop::sample::select(NAMES).prop_map(Some),
        1 => Just(None),
    ]
}

fn seconds() -> impl Strategy<Value = Option<(&'static str, &'static str)>> {
    prop::option::weighted(
        0.15,
        (
            prop::sample::select(
                &[
                    "\"name\"",
                    "\"n\\u0061me\"",
                    "\"NAME\"",
                    "\"Name\"",
                    "\"nam\\u0065\\u0000\"",
                ][..],
            ),
            prop::sample::select(NAMES),
        ),
    )
}

fn arguments() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        20 => Just(Some("{\"text\":\"hi\"}".to_string())),
        1 => Just(Some("{\"text\":\"a\",\"text\":\"b\"}".to_string())),
        1 => Just(Some("{\"a\":{\"b\":[{\"c\":1,\"c\":2}]}}".to_string())),
        1 => Just(Some("\"x\"".to_string())),
        1 => Just(Some("[]".to_string())),
        1 => Just(None),
        1 => (1usize..300).prop_map(|d| Some(format!("{{\"d\":{}0{}}}", "[".repeat(d), "]".repeat(d)))),
    ]
}

fn extras() -> impl Strategy<Value = Option<&'static str>> {
    prop_oneof![
        24 => Just(None),
        1 => Just(Some("\"clientInfo\":0")),
        1 => Just(Some("\"clientInfo\":{\"name\":\"x\",\"version\":\"1\"}")),
        1 => Just(Some("\"_meta\":{\"progressToken\":\"t\"}")),
        1 => Just(Some("\"_meta\":{\"progressToken\":1.5}")),
        1 => Just(Some("\"_meta\":5")),
        1 => Just(Some("\"zz\":{\"a\":1,\"a\":2}")),
        1 => Just(Some("\"zz\":[1e400]")),
    ]
}

fn top_dups() -> impl Strategy<Value = Option<&'static str>> {
    prop_oneof![
        30 => Just(None),
        1 => Just(Some("\"method\":\"ping\"")),
        1 => Just(Some("\"params\":{}")),
        1 => Just(Some("\"id\":8")),
        1 => Just(Some("\"jsonrpc\":\"2.0\"")),
    ]
}

prop_compose! {
    fn case()(
        aggregated in any::<bool>(),
        modern in any::<bool>(),
        id in ids(),
        method in methods(),
        name in names(),
        second_name in seconds(),
        arguments in arguments(),
        extra in extras(),
        top_dup in top_dups(),
        reverse in any::<bool>(),
    ) -> Case {
        Case { aggregated, modern, id, method, name, second_name, arguments, extra, top_dup, reverse }
    }
}

/// A name literal on the aggregated endpoint gets the server's prefix inside the string.
fn named(literal: &str, aggregated: bool) -> String {
    match (aggregated, literal.strip_prefix('"')) {
        (true, Some(rest)) => format!("\"rec__{rest}"),
        _ => literal.to_string(),
    }
}

impl Case {
    fn body(&self) -> String {
        let mut params = Vec::new();
        if let Some(n) = self.name {
            params.push(format!("\"name\":{}", named(n, self.aggregated)));
        }
        if let Some((key, n)) = self.second_name {
            params.push(format!("{key}:{}", named(n, self.aggregated)));
        }
        if let Some(a) = &self.arguments {
            params.push(format!("\"arguments\":{a}"));
        }
        if let Some(e) = self.extra {
            params.push(e.to_string());
        }
        if self.modern && !self.extra.is_some_and(|e| e.starts_with("\"_meta\"")) {
            params.push(META_2026.to_string());
        }
        let mut top = vec!["\"jsonrpc\":\"2.0\"".to_string()];
        if let Some(id) = self.id {
            top.push(format!("\"id\":{id}"));
        }
        top.push(format!("\"method\":{}", self.method));
        top.push(format!("\"params\":{{{}}}", params.join(",")));
        if let Some(d) = self.top_dup {
            top.push(d.to_string());
        }
        if self.reverse {
            top.reverse();
        }
        format!("{{{}}}", top.join(","))
    }

    /// The headers an honest client would send for this body (as a last-wins reader sees it).
    fn headers(&self, body: &str, session: Option<&str>) -> Vec<(&'static str, String)> {
        let mut headers = Vec::new();
        if !self.modern {
            headers.push(("mcp-protocol-version", "2025-11-25".to_string()));
            if let Some(s) = session {
                headers.push(("mcp-session-id", s.to_string()));
            }
            return headers;
        }
        headers.push(("mcp-protocol-version", "2026-07-28".to_string()));
        let read: Value = serde_json::from_str(body).unwrap_or(Value::Null);
        headers.push((
            "mcp-method",
            read["method"].as_str().unwrap_or("tools/call").to_string(),
        ));
        if let Some(name) = read["params"]["name"].as_str() {
            let safe = name.bytes().all(|b| (0x20..0x7f).contains(&b)) && name.trim() == name;
            let value = if safe {
                name.to_string()
            } else {
                use base64::Engine;
                format!(
                    "=?base64?{}?=",
                    base64::engine::general_purpose::STANDARD.encode(name)
                )
            };
            headers.push(("mcp-name", value));
        }
        headers
    }
}

/// Registers `server` at `url`, creates `username` with access to it and a rule that denies
/// `echo`, and returns the user's MCP token.
async fn user_denied_echo(
    app: &TestApp,
    admin: &str,
    server: &str,
    url: &str,
    username: &str,
) -> String {
    // Warn, not quarantine: these tests read the gate's one reading of calls to tools the
    // recording backend answers without listing them all (pinning has its own tests).
    let server = add_server(
        app,
        admin,
        json!({"name": server, "url": url, "tool_pinning": "warn"}),
    )
    .await;
    let user = app.create_user(admin, username, "user").await;
    set_access(app, admin, user, server, true).await;
    let res = app
        .send(
            Method::PUT,
            &format!("/admin/api/users/{user}/tool-rules"),
            Some(admin),
            Some(json!({"rules": [{"server_id": server, "pattern": "echo", "effect": "deny"}]})),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    user_token(app, username).await
}

/// Thousands of hostile `tools/call` variants through `/mcp/{server}` and `/mcp`, both eras, to
/// a recording backend, for a user whose rule denies `echo`. For every message, either the
/// gateway refused it and the backend saw nothing, or the backend received bytes that a
/// first-wins and a last-wins JSON reader read the same, naming a tool other than `echo`; and
/// every call that reached the backend has exactly one activity record naming the same tool.
#[tokio::test]
async fn hostile_variants_reach_the_backend_with_one_reading() {
    let backend = RecordingBackend::start().await;
    let app = TestEnv::new(crate::helpers::Backend::Sqlite)
        .await
        .with_admin()
        .with_var("MCP_RATE_LIMIT_USER_PER_MINUTE", "1000000")
        .with_var("MCP_RATE_LIMIT_USER_SERVER_PER_MINUTE", "1000000")
        .with_var("MCP_RATE_LIMIT_USER_TOOL_PER_MINUTE", "1000000")
        .spawn()
        .await;
    let admin = app.admin_token().await;
    let token = user_denied_echo(&app, &admin, "rec", &backend.url(), "mallory").await;
    let init = |v: &str| {
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": v, "capabilities": {}, "clientInfo": {"name": "fuzz", "version": "1"}}})
        .to_string()
    };
    let mut sessions = Vec::new();
    for path in ["/mcp/rec", "/mcp"] {
        let res = app
            .client
            .post(app.url(path))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(init("2025-11-25"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        sessions.push(
            res.headers()["mcp-session-id"]
                .to_str()
                .unwrap()
                .to_string(),
        );
    }

    let cases = std::env::var("GATE_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3000);
    let mut runner = TestRunner::default();
    let strategy = case();
    let mut reached: BTreeMap<String, usize> = BTreeMap::new();
    let (mut refused, mut forwarded) = (0usize, 0usize);
    for _ in 0..cases {
        let case = strategy.new_tree(&mut runner).unwrap().current();
        let body = case.body();
        let (path, session) = if case.aggregated {
            ("/mcp", &sessions[1])
        } else {
            ("/mcp/rec", &sessions[0])
        };
        let headers = case.headers(&body, Some(session));
        let before = backend.len();
        let (status, answer) = post_raw(&app, path, &token, &headers, body.clone()).await;
        let calls: Vec<Bytes> = backend
            .since(before)
            .into_iter()
            .filter(|b| {
                serde_json::from_slice::<Value>(b).is_ok_and(|m| m["method"] == "tools/call")
            })
            .collect();
        assert!(
            calls.len() <= 1,
            "one message, one call: {body} -> {calls:?}"
        );
        let Some(received) = calls.first() else {
            refused += 1;
            assert_ne!(
                answer["result"]["content"][0]["text"], "ran",
                "no call reached the backend but the client got its result: {body}"
            );
            continue;
        };
        forwarded += 1;
        let last: Value = serde_json::from_slice(received).unwrap();
        let first = first_wins(received).expect("the backend's bytes are JSON");
        assert_eq!(
            first, last,
            "two readings of what reached the backend: {body}"
        );
        // A case-insensitive reader (Go's encoding/json) would see the same fields too.
        for object in [&last, &last["params"]] {
            for key in object.as_object().into_iter().flat_map(|o| o.keys()) {
                let folded = key.to_lowercase().replace('\u{17f}', "s");
                assert!(
                    ![
                        "jsonrpc",
                        "id",
                        "method",
                        "params",
                        "name",
                        "arguments",
                        "_meta"
                    ]
                    .iter()
                    .any(|k| folded == *k && key != k),
                    "a look-alike of a known field reached the backend: {body}"
                );
            }
        }
        let tool = last["params"]["name"].as_str().unwrap_or_else(|| {
            panic!("a call without a tool name reached the backend: {body} -> {last}")
        });
        assert_ne!(tool, "echo", "the denied tool ran: {body}");
        assert!(
            !last["id"].is_null(),
            "a call without an id reached the backend: {body}"
        );
        assert_eq!(status, StatusCode::OK, "{body} -> {answer}");
        assert_eq!(
            answer["result"]["content"][0]["text"], "ran",
            "{body} -> {answer}"
        );
        *reached.entry(tool.to_string()).or_default() += 1;
    }
    eprintln!("hostile variants: {refused} refused, {forwarded} forwarded");
    assert!(
        refused > cases / 10 && forwarded > cases / 10,
        "the generator must exercise both outcomes: {refused} refused, {forwarded} forwarded"
    );

    // Exactly one activity record per call that reached the backend, naming the tool it ran.
    let mut recorded: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..200 {
        let rows: Vec<(Option<String>,)> = sqlx::query_as(
            "select tool from mcp_activity where method = 'tools/call' and status = 'ok' and server = 'rec'",
        )
        .fetch_all(&app.state.db.pool)
        .await
        .unwrap();
        recorded.clear();
        for (tool,) in rows {
            *recorded.entry(tool.unwrap_or_default()).or_default() += 1;
        }
        if recorded == reached {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        recorded, reached,
        "activity records vs calls the backend ran"
    );
    app.wait_for_event("malformed_request").await;
}

/// The three bypasses found against main (a duplicate `name`, a wrongly typed `clientInfo`, an
/// `id: null` call), and escaped names, against a real Python SDK backend: refused on both
/// endpoints, for a password session and an API key, and `echo` never runs.
#[tokio::test]
async fn known_bypasses_are_refused_on_both_endpoints() {
    let peer = PeerServer::start(Sdk::Py2, "alpha", &[]).await;
    let (app, admin) = TestApp::sqlite_with_admin().await;
    let jwt = user_denied_echo(&app, &admin, "alpha", &peer.url(), "erin").await;
    let created: Value = app
        .post_json("/auth/api-keys", Some(&jwt), json!({"name": "ci"}))
        .await
        .json()
        .await
        .unwrap();
    let key = created["secret"].as_str().expect("api key").to_string();

    for token in [&jwt, &key] {
        for (path, prefix) in [("/mcp/alpha", ""), ("/mcp", "alpha__")] {
            let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
            let res = app
                .client
                .post(app.url(path))
                .bearer_auth(token)
                .header("accept", "application/json, text/event-stream")
                .json(&init)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::OK, "{path}");
            let session = res.headers()["mcp-session-id"]
                .to_str()
                .unwrap()
                .to_string();
            let handshake = [
                ("mcp-protocol-version", "2025-11-25".to_string()),
                ("mcp-session-id", session),
            ];
            let call = |params: &str| {
                format!(r#"{{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{params}}}"#)
            };
            for (params, status, code) in [
                (
                    format!(
                        r#"{{"name":"{prefix}echo","name":"{prefix}echo","arguments":{{"text":"x"}}}}"#
                    ),
                    400,
                    -32600,
                ),
                (
                    format!(
                        r#"{{"name":"{prefix}add","name":"{prefix}echo","arguments":{{"a":1,"b":2}}}}"#
                    ),
                    400,
                    -32600,
                ),
                (
                    format!(
                        r#"{{"name":"{prefix}echo","arguments":{{"text":"x"}},"clientInfo":0}}"#
                    ),
                    400,
                    -32602,
                ),
                (
                    format!(r#"{{"name":"{prefix}\u0065cho","arguments":{{"text":"x"}}}}"#),
                    200,
                    -32003,
                ),
                (
                    format!(r#"{{"name":"{prefix}echo","arguments":{{"text":"x"}}}}"#),
                    200,
                    -32003,
                ),
            ] {
                let (got, answer) = post_raw(&app, path, token, &handshake, call(&params)).await;
                assert_eq!(
                    (got.as_u16(), answer["error"]["code"].as_i64()),
                    (status, Some(code)),
                    "{path} {params}: {answer}"
                );
            }
            // 2026-07-28: a call with a null id is refused, not run unrecorded.
            let modern = [
                ("mcp-protocol-version", "2026-07-28".to_string()),
                ("mcp-method", "tools/call".to_string()),
                ("mcp-name", format!("{prefix}add")),
            ];
            let body = format!(
                r#"{{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{{"name":"{prefix}add","arguments":{{"a":1,"b":2}},"_meta":{{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{{}}}}}}}}"#
            );
            let (got, answer) = post_raw(&app, path, token, &modern, body.clone()).await;
            assert_eq!(got, StatusCode::BAD_REQUEST, "{path}: {answer}");
            assert_eq!(answer["error"]["code"], -32600);
            // The same call without an id: a request method sent as a notification.
            let (got, _) =
                post_raw(&app, path, token, &modern, body.replace("\"id\":null,", "")).await;
            assert_eq!(got, StatusCode::BAD_REQUEST, "{path}");
            // And with a proper id it runs (the refusals above were not a broken endpoint).
            let (got, answer) = post_raw(
                &app,
                path,
                token,
                &modern,
                body.replace("\"id\":null", "\"id\":9"),
            )
            .await;
            assert_eq!(got, StatusCode::OK, "{path}: {answer}");
            assert_eq!(
                answer["result"]["content"][0]["text"], "3",
                "{path}: {answer}"
            );
        }
    }
    // Nothing ran `echo`; each refusal left its trace.
    let ran: Vec<(String,)> =
        sqlx::query_as("select status from mcp_activity where tool = 'echo' and status = 'ok'")
            .fetch_all(&app.state.db.pool)
            .await
            .unwrap();
    assert!(ran.is_empty(), "echo ran: {ran:?}");
    app.wait_for_event("malformed_request").await;
    app.wait_for_event("access_denied").await;
}

/// The admin console passes the same gate: its calls take the user's rate limits like any MCP
/// client's, and are recorded the same way.
#[tokio::test]
async fn the_console_takes_the_same_rate_limits() {
    let backend = RecordingBackend::start().await;
    let app = TestEnv::new(crate::helpers::Backend::Sqlite)
        .await
        .with_admin()
        .with_var("MCP_RATE_LIMIT_USER_PER_MINUTE", "30")
        .spawn()
        .await;
    let admin = app.admin_token().await;
    add_server(&app, &admin, json!({"name": "rec", "url": backend.url()})).await;
    // Signed in before the budget is spent: 30 a minute refills one call every two seconds,
    // and a password check on a loaded machine must not give one back before the MCP call.
    let token = app.mcp_token("admin", crate::helpers::ADMIN_PASSWORD).await;
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let res = app
            .post_json(
                "/admin/api/console/call",
                Some(&admin),
                json!({"server": "rec", "tool": "add", "arguments": {"a": 1}}),
            )
            .await;
        statuses.push(res.status().as_u16());
        if res.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(res.headers().contains_key("retry-after"));
            let body: Value = res.json().await.unwrap();
            assert_eq!(body["error"]["code"], "rate_limited", "{body}");
            break;
        }
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    // The MCP budget is the same one: the admin's MCP calls are refused too.
    let (status, answer) = post_raw(
        &app,
        "/mcp/rec",
        &token,
        &[
            ("mcp-protocol-version", "2026-07-28".to_string()),
            ("mcp-method", "tools/list".to_string()),
        ],
        format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{{{META_2026}}}}}"#),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{answer}");
    // Both refusals are recorded; the console's own one names its endpoint.
    app.wait_for_event("rate_limited").await;
    let events = app.events("rate_limited", 10).await;
    let console = events
        .iter()
        .find(|e| {
            e.details.as_deref().is_some_and(|d| {
                serde_json::from_str::<Value>(d).is_ok_and(|d| d["endpoint"] == "console")
            })
        })
        .unwrap_or_else(|| panic!("no rate_limited event of the console: {events:?}"));
    assert_eq!(console.server.as_deref(), Some("rec"));
}

/// A gateway served on loopback accepts loopback origins (the conformance suite's DNS-rebinding
/// scenario); foreign origins stay refused.
#[tokio::test]
async fn loopback_origins_are_one_origin_and_foreign_ones_are_refused() {
    let app = TestEnv::new(crate::helpers::Backend::Sqlite)
        .await
        .with_admin()
        .with_public_port()
        .spawn()
        .await;
    let token = app.mcp_token("admin", crate::helpers::ADMIN_PASSWORD).await;
    let port = app.addr.port();
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"server/discover","params":{{{META_2026}}}}}"#
    );
    for (origin, allowed) in [
        (format!("http://localhost:{port}"), true),
        (format!("http://127.0.0.1:{port}"), true),
        (format!("http://[::1]:{port}"), true),
        ("http://evil.example.com".to_string(), false),
        (format!("http://evil.example.com:{port}"), false),
        (format!("http://localhost:{}", port + 1), true),
        ("http://localhost.evil.example".to_string(), false),
        ("http://127.0.0.1.nip.io".to_string(), false),
        ("file://".to_string(), false),
        ("null".to_string(), false),
    ] {
        let (status, answer) = post_raw(
            &app,
            "/mcp",
            &token,
            &[
                ("origin", origin.clone()),
                ("mcp-protocol-version", "2026-07-28".to_string()),
                ("mcp-method", "server/discover".to_string()),
            ],
            body.to_string(),
        )
        .await;
        assert_eq!(
            status == StatusCode::FORBIDDEN,
            !allowed,
            "{origin}: {status} {answer}"
        );
    }
}
