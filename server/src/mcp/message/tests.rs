use proptest::prelude::*;
use serde_json::Value;

use super::*;

fn read(body: &str) -> Result<Message, Unreadable> {
    Message::parse(body.as_bytes())
}

fn refused(body: &str, code: i64) {
    match read(body) {
        Ok(m) => panic!("accepted {body}: {m:?}"),
        Err(u) => assert_eq!(u.malformed.code, code, "{body}: {}", u.malformed.reason),
    }
}

#[test]
fn envelopes() {
    let m = read(r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"x":1}}}"#).unwrap();
    assert_eq!(m.kind, Kind::Request);
    assert_eq!(m.id.as_deref(), Some("7"));
    assert_eq!(m.tool.as_deref(), Some("echo"));
    assert_eq!(m.name.as_deref(), Some("echo"));
    let m = read(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
    assert_eq!(m.kind, Kind::Notification);
    let m = read(r#"{"jsonrpc":"2.0","id":"a","result":{}}"#).unwrap();
    assert_eq!(m.kind, Kind::Response);
    assert_eq!(m.id.as_deref(), Some("\"a\""));
    let m = read(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","clientInfo":{"name":"claude","version":"1"}}}"#).unwrap();
    assert_eq!(m.init_version.as_deref(), Some("2025-06-18"));
    assert_eq!(m.client_name.as_deref(), Some("claude"));
    let m = read(r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#).unwrap();
    assert_eq!(m.name.as_deref(), Some("file:///a"));
    assert_eq!(m.meta_version.as_deref(), Some("2026-07-28"));
    // Escapes are read: the gate sees the name every backend sees.
    let m = read(r#"{"jsonrpc":"2.0","id":"\u0031","method":"tools/c\u0061ll","params":{"n\u0061me":"\u0065cho"}}"#).unwrap();
    assert_eq!(m.tool.as_deref(), Some("echo"));
    assert_eq!(m.id.as_deref(), Some("\"1\""));
    let m =
        read(r#"{"jsonrpc":"2.0","id":-3,"method":"ping","extra":{"a":[1,{"b":null}]}}"#).unwrap();
    assert_eq!(m.id.as_deref(), Some("-3"));
    // Known fields the reader does not type pass as they are (only look-alikes are refused).
    read(r#"{"jsonrpc":"2.0","id":1,"method":"logging/setLevel","params":{"level":"debug"}}"#)
        .unwrap();
    read(
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","task":{"ttl":1}}}"#,
    )
    .unwrap();
}

#[test]
fn what_cannot_be_read_one_way_is_refused() {
    use crate::mcp::protocol::code::*;
    for (body, code) in [
        ("{nope", PARSE_ERROR),
        ("[{}]", INVALID_REQUEST),
        ("5", INVALID_REQUEST),
        (r#"{"jsonrpc":"2.0"}"#, INVALID_REQUEST),
        (r#"{"id":1,"method":"ping"}"#, INVALID_REQUEST),
        (
            r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#,
            INVALID_REQUEST,
        ),
        (r#"{"jsonrpc":2,"id":1,"method":"ping"}"#, INVALID_REQUEST),
        // Duplicate keys at every depth, also when escaped.
        (
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","name":"echo"}}"#,
            INVALID_REQUEST,
        ),
        (
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"add","n\u0061me":"echo"}}"#,
            INVALID_REQUEST,
        ),
        (
            r#"{"jsonrpc":"2.0","id":3,"id":4,"method":"ping"}"#,
            INVALID_REQUEST,
        ),
        (
            r#"{"jsonrpc":"2.0","id":3,"method":"ping","method":"tools/call"}"#,
            INVALID_REQUEST,
        ),
        (
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"a","arguments":{"x":{"y":1,"y":2}}}}"#,
            INVALID_REQUEST,
        ),
        (
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"a","arguments":{"x":[{"y":1,"y":2}]}}}"#,
            INVALID_REQUEST,
        ),
        // Keys a case-insensitive reader would take for a known field, and control characters.
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","Name":"echo"}}"#,
            INVALID_REQUEST,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","NAME":"echo"}}"#,
            INVALID_REQUEST,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","paramſ":{"name":"echo"},"params":{"name":"add"}}"#,
            INVALID_REQUEST,
        ),
        (
            r#"{"jsonrpc":"2.0","id":7,"error":{"code":0,"message":""},"Method":"tools/call","Params":{"name":"echo"}}"#,
            INVALID_REQUEST,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","name\u0000":"echo"}}"#,
            INVALID_REQUEST,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","_meta":{"progressToKen":1}}}"#,
            INVALID_REQUEST,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","arguments":{"a\u0007":1}}}"#,
            INVALID_REQUEST,
        ),
        // Known fields of the wrong type, wherever they are.
        (
            r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"echo","clientInfo":0}}"#,
            INVALID_PARAMS,
        ),
        (
            r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":5}}"#,
            INVALID_PARAMS,
        ),
        (
            r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"a","arguments":"x"}}"#,
            INVALID_PARAMS,
        ),
        (
            r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"a","_meta":{"progressToken":1.5}}}"#,
            INVALID_REQUEST,
        ),
        (
            r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"a","_meta":1}}"#,
            INVALID_PARAMS,
        ),
        (
            r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":[1]}"#,
            INVALID_PARAMS,
        ),
        (
            r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"a","inputResponses":{"u":12345}}}"#,
            INVALID_PARAMS,
        ),
        (
            r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"a","inputResponses":null}}"#,
            INVALID_PARAMS,
        ),
        (r#"{"jsonrpc":"2.0","id":4,"method":5}"#, INVALID_REQUEST),
        (
            r#"{"jsonrpc":"2.0","id":4,"method":"initialize","params":{"clientInfo":{"name":7}}}"#,
            INVALID_PARAMS,
        ),
        // Ids: never null, fractional, boolean or structured.
        (
            r#"{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{"name":"add"}}"#,
            INVALID_REQUEST,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#,
            INVALID_REQUEST,
        ),
        (
            r#"{"jsonrpc":"2.0","id":-0,"method":"ping"}"#,
            INVALID_REQUEST,
        ),
        (
            r#"{"jsonrpc":"2.0","id":true,"method":"ping"}"#,
            INVALID_REQUEST,
        ),
        (
            r#"{"jsonrpc":"2.0","id":[1],"method":"ping"}"#,
            INVALID_REQUEST,
        ),
        (
            r#"{"jsonrpc":"2.0","id":123456789012345678901234567890,"method":"ping"}"#,
            INVALID_REQUEST,
        ),
        // A request method without an id (some servers would run it).
        (
            r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"add"}}"#,
            INVALID_REQUEST,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"Tools/call","params":{"name":"add"}}"#,
            METHOD_NOT_FOUND,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call ","params":{"name":"add"}}"#,
            METHOD_NOT_FOUND,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#,
            INVALID_PARAMS,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{}}"#,
            INVALID_PARAMS,
        ),
        // Names that read differently to different eyes.
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ec\u200bho"}}"#,
            INVALID_PARAMS,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo\u0000"}}"#,
            INVALID_PARAMS,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":" echo"}}"#,
            INVALID_PARAMS,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo\u202e"}}"#,
            INVALID_PARAMS,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo\udb40\udc41"}}"#,
            INVALID_PARAMS,
        ),
        // Lone surrogates and other strings that are not UTF-8 once unescaped.
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"\ud800echo"}}"#,
            PARSE_ERROR,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"\udc00"}}"#,
            PARSE_ERROR,
        ),
        // Responses are answers, nothing else.
        (
            r#"{"jsonrpc":"2.0","id":1,"result":{},"error":{"code":1,"message":"x"}}"#,
            INVALID_REQUEST,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":"x","message":"x"}}"#,
            INVALID_REQUEST,
        ),
        (r#"{"jsonrpc":"2.0","id":1,"result":5}"#, INVALID_PARAMS),
    ] {
        refused(body, code);
    }
    let bytes = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":{\"x\":\"\xff\"}}";
    assert!(Message::parse(bytes).is_err(), "invalid UTF-8");
    let deep = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"a","arguments":{{"x":{}1{}}}}}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    refused(&deep, crate::mcp::protocol::code::PARSE_ERROR);
}

#[test]
fn the_2026_reading_wants_request_metadata_and_knows_no_removed_methods() {
    use crate::mcp::protocol::code::*;
    let meta = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}"#;
    let ok = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"a",{meta}}}}}"#
    );
    let m = Message::parse_modern(ok.as_bytes()).unwrap();
    assert!(m.meta_capabilities);
    assert_eq!(m.meta_version.as_deref(), Some("2026-07-28"));
    for (body, code) in [
        (r#"{"jsonrpc":"2.0","id":101,"method":"server/discover","params":{}}"#.to_string(), INVALID_PARAMS),
        (r#"{"jsonrpc":"2.0","id":102,"method":"server/discover","params":{"_meta":{"io.modelcontextprotocol/clientCapabilities":{}}}}"#.to_string(), INVALID_PARAMS),
        (r#"{"jsonrpc":"2.0","id":104,"method":"server/discover","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#.to_string(), INVALID_PARAMS),
        (format!(r#"{{"jsonrpc":"2.0","id":5,"method":"initialize","params":{{{meta}}}}}"#), METHOD_NOT_FOUND),
        (format!(r#"{{"jsonrpc":"2.0","id":5,"method":"resources/subscribe","params":{{{meta}}}}}"#), METHOD_NOT_FOUND),
        (format!(r#"{{"jsonrpc":"2.0","id":5,"method":"ping","params":{{{meta}}}}}"#), METHOD_NOT_FOUND),
    ] {
        let u = Message::parse_modern(body.as_bytes()).unwrap_err();
        assert_eq!(u.malformed.code, code, "{body}");
        assert!(u.id.is_some(), "{body}");
    }
    // The handshake era has neither rule.
    assert!(Message::parse(br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#).is_ok());
}

#[test]
fn refusals_echo_the_id_once_read() {
    let u = read(r#"{"jsonrpc":"2.0","id":101,"method":"tools/call","params":{"_meta":5}}"#)
        .unwrap_err();
    assert_eq!(u.id.as_deref(), Some("101"));
    let u = read(r#"{"jsonrpc":"2.0","id":"x","method":"Tools/call","params":{"name":"a"}}"#)
        .unwrap_err();
    assert_eq!(u.id.as_deref(), Some("\"x\""));
}

/// JSON with duplicate keys, escapes and type confusion, built as text.
fn hostile_json() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_string()),
        Just("1".to_string()),
        Just("1.5".to_string()),
        Just("\"echo\"".to_string()),
        Just("\"\\u0065cho\"".to_string()),
        Just("\"add\"".to_string()),
        Just("true".to_string()),
        Just("\"\\ud800\"".to_string()),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec(
                (
                    prop_oneof![
                        Just("name"),
                        Just("n\\u0061me"),
                        Just("arguments"),
                        Just("clientInfo"),
                        Just("_meta"),
                        Just("progressToken"),
                        Just("x")
                    ],
                    inner
                ),
                0..4
            )
            .prop_map(|kv| {
                let fields: Vec<String> = kv.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                format!("{{{}}}", fields.join(","))
            }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Whatever is accepted is read as a JSON library reads it, and the tool the gate sees is
    /// the tool it sees (the differential first-wins/last-wins test through the gateway is
    /// `tests/api/gate.rs`).
    #[test]
    fn accepted_messages_have_one_reading(
        params in hostile_json(),
        id in prop_oneof![Just("1"), Just("null"), Just("\"a\""), Just("1.5"), Just("")],
        method in prop_oneof![Just("tools/call"), Just("tools/c\\u0061ll"), Just("Tools/call"), Just("ping")],
        dup_method in any::<bool>(),
    ) {
        let id = if id.is_empty() { String::new() } else { format!("\"id\":{id},") };
        let dup = if dup_method { "\"method\":\"ping\"," } else { "" };
        let body = format!(r#"{{"jsonrpc":"2.0",{id}{dup}"method":"{method}","params":{params}}}"#);
        if let Ok(msg) = Message::parse(body.as_bytes()) {
            let last: Value = serde_json::from_str(&body).expect("accepted bodies are JSON");
            prop_assert!(!body.contains("\\ud800"), "a lone surrogate was accepted: {}", body);
            prop_assert_eq!(msg.method.as_deref(), last["method"].as_str());
            if msg.is("tools/call") {
                prop_assert_eq!(msg.tool.as_deref(), last["params"]["name"].as_str());
                prop_assert!(msg.tool.is_some());
                prop_assert!(msg.id.is_some());
            }
            prop_assert!(!last["id"].is_null() || msg.kind == Kind::Notification);
        }
    }
}
