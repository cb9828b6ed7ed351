//! The one strict reading of a client's JSON-RPC message.
//!
//! Every decision the gateway makes about a message (who may send it, which tool it calls, how
//! it is limited and recorded) is made on what this module reads, and the bytes it read are what
//! a backend receives. So the reading must leave a backend no room for another interpretation:
//!
//! * one pass over the whole body with serde_json's parser (no tree is built): every string,
//!   key and value, is unescaped and checked (valid UTF-8, no lone surrogates), nesting is
//!   limited (serde_json's 128 levels);
//! * duplicate object keys at any depth are refused, compared after unescaping (`"name"` and
//!   `"n\u0061me"` are the same key): JSON libraries disagree on which copy wins;
//! * the fields the gateway reads have their types checked (`id` a string or an integer, never
//!   null; `method`, `params.name`, `params.uri` strings; `params`, `arguments`, `_meta`,
//!   `clientInfo` objects; …), wherever they appear in `params`, whatever the method;
//! * methods are MCP's own: a request with an unknown method, or a request method sent without
//!   an id (which some servers would still run), is refused;
//! * the names the gate matches rules against carry no control or invisible characters.
//!
//! Whatever cannot be read this way is refused before any check or backend sees it.

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::mcp::protocol::{META_CAPABILITIES, META_CLIENT_INFO, META_VERSION, code};

/// Longest string id accepted (ids are echoed and used as map keys).
pub const MAX_ID_LEN: usize = 256;
/// Longest tool or prompt name, and longest method.
pub const MAX_NAME_LEN: usize = 256;
/// Longest resource URI.
pub const MAX_URI_LEN: usize = 8192;

/// Methods 2026-07-28 removed: under that revision they are unknown (404 + -32601).
const REMOVED_IN_2026: &[&str] = &[
    "initialize",
    "ping",
    "logging/setLevel",
    "resources/subscribe",
    "resources/unsubscribe",
];

/// Requests a client may send (both protocol eras).
const REQUEST_METHODS: &[&str] = &[
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "completion/complete",
    "logging/setLevel",
    "server/discover",
    "subscriptions/listen",
    "tasks/get",
    "tasks/result",
    "tasks/list",
    "tasks/cancel",
];

/// Notifications MCP defines that a client sends (others under `notifications/` are passed on,
/// but counted as `other` in metrics).
const CLIENT_NOTIFICATIONS: &[&str] = &[
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
    "notifications/elicitation/complete",
    "notifications/tasks/status",
];

/// The method as a metric label: one of MCP's own, or `other` (a client chooses the method, so
/// labels taken from it as is would grow without bound).
pub fn method_label(method: &str) -> &'static str {
    REQUEST_METHODS
        .iter()
        .chain(CLIENT_NOTIFICATIONS)
        .find(|m| **m == method)
        .copied()
        .unwrap_or("other")
}

/// What kind of message a body holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Request,
    Notification,
    Response,
}

/// Why a body was refused: the JSON-RPC code to answer with and a reason for the client (also
/// the `malformed_request` event's detail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed {
    pub code: i64,
    pub reason: &'static str,
}

/// A refused body: why, and the id when it was read before the refusal (errors echo it).
#[derive(Debug, Clone)]
pub struct Unreadable {
    pub malformed: Malformed,
    pub id: Option<String>,
}

impl Malformed {
    const fn new(code: i64, reason: &'static str) -> Malformed {
        Malformed { code, reason }
    }
}

/// A client message as the gateway read it, owned.
#[derive(Debug, Clone)]
pub struct Message {
    pub kind: Kind,
    /// The id as canonical JSON text (a number, or a string in quotes), for echoing in errors
    /// and matching the answer; `None` for notifications.
    pub id: Option<String>,
    /// The method (requests and notifications).
    pub method: Option<String>,
    /// `params.name` (tools/call, prompts/get) or `params.uri` (resources/read, subscribe,
    /// unsubscribe).
    pub name: Option<String>,
    /// `params.name` of a `tools/call`: the tool, always present on a tools/call.
    pub tool: Option<String>,
    /// `initialize`'s `params.protocolVersion`.
    pub init_version: Option<String>,
    /// `params._meta["io.modelcontextprotocol/protocolVersion"]`.
    pub meta_version: Option<String>,
    /// `params._meta["io.modelcontextprotocol/clientCapabilities"]` is present (an object).
    pub meta_capabilities: bool,
    /// The client's name (`initialize`'s clientInfo, or a 2026-07-28 request's `_meta`), for
    /// activity records; at most 100 characters.
    pub client_name: Option<String>,
}

impl Message {
    /// Reads one message strictly (see the module documentation).
    pub fn parse(body: &[u8]) -> Result<Message, Unreadable> {
        Message::parse_as(body, false)
    }

    /// Reads a 2026-07-28 message (`MCP-Protocol-Version: 2026-07-28`): the methods that
    /// revision removed are unknown, and requests must carry the request metadata in `_meta`
    /// (protocol version and client capabilities).
    pub fn parse_modern(body: &[u8]) -> Result<Message, Unreadable> {
        Message::parse_as(body, true)
    }

    fn parse_as(body: &[u8], modern: bool) -> Result<Message, Unreadable> {
        let first = body.iter().find(|b| !b.is_ascii_whitespace());
        if first == Some(&b'[') {
            return Err(Unreadable {
                malformed: Malformed::new(
                    code::INVALID_REQUEST,
                    "JSON-RPC batches are not supported; send one message per request",
                ),
                id: None,
            });
        }
        let fail = Fail::default();
        let mut de = serde_json::Deserializer::from_slice(body);
        let read = TopSeed { fail: &fail }
            .deserialize(&mut de)
            .and_then(|top| de.end().map(|()| top));
        let top = match read {
            Ok(top) => top,
            Err(_) => {
                return Err(Unreadable {
                    malformed: fail.malformed.get().unwrap_or(Malformed::new(
                        code::PARSE_ERROR,
                        "the body is not one valid JSON object (malformed JSON, invalid UTF-8, a lone surrogate or nesting too deep)",
                    )),
                    id: fail.id.take(),
                });
            }
        };
        let id = top.id.clone();
        top.into_message(modern)
            .map_err(|malformed| Unreadable { malformed, id })
    }

    pub fn is(&self, method: &str) -> bool {
        self.method.as_deref() == Some(method)
    }
}

/// Fields read from the top level.
#[derive(Default)]
struct Top<'de> {
    jsonrpc: bool,
    id: Option<String>,
    method: Option<Cow<'de, str>>,
    params: Option<Params<'de>>,
    result: bool,
    error: bool,
}

/// Fields read from `params` (the union of what any method's params may carry).
#[derive(Default)]
struct Params<'de> {
    name: Option<Cow<'de, str>>,
    uri: Option<Cow<'de, str>>,
    protocol_version: Option<Cow<'de, str>>,
    client_name: Option<Cow<'de, str>>,
    meta_version: Option<Cow<'de, str>>,
    meta_capabilities: bool,
    meta_client_name: Option<Cow<'de, str>>,
}

impl<'de> Top<'de> {
    fn into_message(self, modern: bool) -> Result<Message, Malformed> {
        if !self.jsonrpc {
            return Err(Malformed::new(
                code::INVALID_REQUEST,
                "jsonrpc must be \"2.0\"",
            ));
        }
        let kind = match (&self.method, &self.id, self.result, self.error) {
            (Some(_), Some(_), false, false) => Kind::Request,
            (Some(_), None, false, false) => Kind::Notification,
            (None, Some(_), true, false) | (None, Some(_), false, true) => Kind::Response,
            _ => {
                return Err(Malformed::new(
                    code::INVALID_REQUEST,
                    "not a JSON-RPC request, notification or response",
                ));
            }
        };
        if kind == Kind::Response && self.params.is_some() {
            return Err(Malformed::new(
                code::INVALID_REQUEST,
                "a response carries no params",
            ));
        }
        let method = self.method.map(Cow::into_owned);
        match (kind, method.as_deref()) {
            (Kind::Request, Some(m)) if !REQUEST_METHODS.contains(&m) => {
                return Err(Malformed::new(code::METHOD_NOT_FOUND, "method not found"));
            }
            (Kind::Notification, Some(m)) if !m.starts_with("notifications/") => {
                return Err(Malformed::new(
                    code::INVALID_REQUEST,
                    "a request method sent as a notification (without an id)",
                ));
            }
            (Kind::Notification, Some(m)) if !plain_ascii(m) || m.len() > MAX_NAME_LEN => {
                return Err(Malformed::new(
                    code::INVALID_REQUEST,
                    "the method must be visible ASCII of at most 256 characters",
                ));
            }
            (Kind::Request, Some(m)) if modern && REMOVED_IN_2026.contains(&m) => {
                return Err(Malformed::new(
                    code::METHOD_NOT_FOUND,
                    "method not found: MCP 2026-07-28 removed it",
                ));
            }
            _ => {}
        }
        let params = self.params.unwrap_or_default();
        if modern
            && kind == Kind::Request
            && (params.meta_version.is_none() || !params.meta_capabilities)
        {
            return Err(Malformed::new(
                code::INVALID_PARAMS,
                "a 2026-07-28 request carries params._meta with io.modelcontextprotocol/protocolVersion and io.modelcontextprotocol/clientCapabilities",
            ));
        }
        let (name, tool) = match method.as_deref() {
            Some(m @ ("tools/call" | "prompts/get")) if kind == Kind::Request => {
                let Some(name) = params.name.map(Cow::into_owned) else {
                    return Err(Malformed::new(
                        code::INVALID_PARAMS,
                        "params.name is required",
                    ));
                };
                if name.is_empty() || name.len() > MAX_NAME_LEN || !clean(&name) {
                    return Err(Malformed::new(
                        code::INVALID_PARAMS,
                        "params.name must be 1 to 256 characters without control or invisible characters or surrounding spaces",
                    ));
                }
                let tool = (m == "tools/call").then(|| name.clone());
                (Some(name), tool)
            }
            Some("resources/read" | "resources/subscribe" | "resources/unsubscribe")
                if kind == Kind::Request =>
            {
                let Some(uri) = params.uri.map(Cow::into_owned) else {
                    return Err(Malformed::new(
                        code::INVALID_PARAMS,
                        "params.uri is required",
                    ));
                };
                if uri.is_empty() || uri.len() > MAX_URI_LEN || !clean(&uri) {
                    return Err(Malformed::new(
                        code::INVALID_PARAMS,
                        "params.uri must be 1 to 8192 characters without control or invisible characters or surrounding spaces",
                    ));
                }
                (Some(uri), None)
            }
            _ => (None, None),
        };
        let client_name = params
            .client_name
            .or(params.meta_client_name)
            .map(|n| client_label(&n));
        Ok(Message {
            kind,
            id: self.id,
            method,
            name,
            tool,
            init_version: params.protocol_version.map(Cow::into_owned),
            meta_version: params.meta_version.map(Cow::into_owned),
            meta_capabilities: params.meta_capabilities,
            client_name,
        })
    }
}

/// A client's `clientInfo.name` as activity records and the UI show it: at most 100 characters,
/// without control or invisible characters (a NUL would fail the database write of a whole
/// batch of records on Postgres; a direction control would make the name pose as another).
pub fn client_label(name: &str) -> String {
    name.chars()
        .filter(|c| !c.is_control() && !invisible(*c))
        .take(100)
        .collect::<String>()
        .trim()
        .to_string()
}

/// Visible ASCII only.
fn plain_ascii(s: &str) -> bool {
    s.bytes().all(|b| (0x21..0x7f).contains(&b))
}

/// No control or invisible characters (zero-width, bidirectional controls, tag characters,
/// byte-order marks, non-characters) and no surrounding whitespace: a name the gate compares
/// must look to every reader like what it is.
pub fn clean(s: &str) -> bool {
    s.trim() == s && !s.chars().any(|c| c.is_control() || invisible(c))
}

/// Invisible or direction-changing characters (`shared::text::INVISIBLE`, which the OpenAPI
/// patterns are built from too).
pub fn invisible(c: char) -> bool {
    shared::text::invisible(c)
}

/// Shared by every seed: where a refusal with its own code, and the id once read, are left for
/// `Message::parse`.
#[derive(Default)]
struct Fail {
    malformed: Cell<Option<Malformed>>,
    id: Cell<Option<String>>,
}

fn refuse<E: de::Error>(fail: &Fail, code: i64, reason: &'static str) -> E {
    fail.malformed.set(Some(Malformed::new(code, reason)));
    E::custom(reason)
}

/// Visits that refuse their value: each generated `visit_*` answers `Err(self.refused())`.
macro_rules! refuse_visits {
    ($($kind:ident),*) => { $(refuse_visits!(@ $kind);)* };
    (@ bool) => { fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> { Err(self.refused()) } };
    (@ i64) => { fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> { Err(self.refused()) } };
    (@ u64) => { fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> { Err(self.refused()) } };
    (@ f64) => { fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> { Err(self.refused()) } };
    (@ str) => { fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> { Err(self.refused()) } };
    (@ unit) => { fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> { Err(self.refused()) } };
    (@ seq) => { fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> { Err(self.refused()) } };
    (@ map) => { fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> { Err(self.refused()) } };
}

/// The keys of one object, to refuse duplicates (a short list, a set for large objects).
struct Keys<'de> {
    list: Vec<Cow<'de, str>>,
    set: Option<HashSet<Cow<'de, str>>>,
}

impl<'de> Keys<'de> {
    const LINEAR: usize = 16;

    fn new() -> Keys<'de> {
        Keys {
            list: Vec::new(),
            set: None,
        }
    }

    /// `false` when the key was seen before in this object.
    fn insert(&mut self, key: Cow<'de, str>) -> bool {
        if let Some(set) = &mut self.set {
            return set.insert(key);
        }
        if self.list.contains(&key) {
            return false;
        }
        if self.list.len() < Self::LINEAR {
            self.list.push(key);
        } else {
            let mut set: HashSet<Cow<'de, str>> = self.list.drain(..).collect();
            set.insert(key);
            self.set = Some(set);
        }
        true
    }
}

/// Reads the next key of a map and refuses it if it repeats an earlier one.
fn next_key<'de, A: MapAccess<'de>>(
    map: &mut A,
    keys: &mut Keys<'de>,
    fail: &Fail,
) -> Result<Option<Cow<'de, str>>, A::Error> {
    let Some(key) = map.next_key_seed(KeySeed)? else {
        return Ok(None);
    };
    if key.chars().any(char::is_control) {
        return Err(refuse(
            fail,
            code::INVALID_REQUEST,
            "object keys may not contain control characters",
        ));
    }
    if !keys.insert(key.clone()) {
        return Err(refuse(
            fail,
            code::INVALID_REQUEST,
            "duplicate object key: each key may appear once per object",
        ));
    }
    Ok(Some(key))
}

/// The fields of the objects the gateway reads; a key that only a case-insensitive reader
/// (Go's `encoding/json`, which also folds `ſ` to `s` and the Kelvin sign to `k`) would take for
/// one of them is refused.
const TOP_FIELDS: &[&str] = &["jsonrpc", "id", "method", "params", "result", "error"];
const PARAMS_FIELDS: &[&str] = &[
    "name",
    "uri",
    "protocolVersion",
    "cursor",
    "clientInfo",
    "capabilities",
    "arguments",
    "inputResponses",
    "requestState",
    "_meta",
    "ref",
    "argument",
    "level",
    "requestId",
    "reason",
    "progressToken",
    "progress",
    "total",
    "message",
    "task",
];
const META_FIELDS: &[&str] = &[
    "progressToken",
    META_VERSION,
    META_CAPABILITIES,
    META_CLIENT_INFO,
];
const INFO_FIELDS: &[&str] = &["name", "version", "title"];
const ERROR_FIELDS: &[&str] = &["code", "message", "data"];

/// Refuses an unknown key that folds to a known field's name.
fn lookalike<E: de::Error>(key: &str, known: &[&str], fail: &Fail) -> Result<(), E> {
    fn fold(s: &str) -> impl Iterator<Item = char> + '_ {
        s.chars().flat_map(char::to_lowercase).map(|c| match c {
            '\u{017F}' => 's',
            '\u{212A}' => 'k',
            c => c,
        })
    }
    if known.iter().any(|k| *k != key && fold(k).eq(fold(key))) {
        return Err(refuse(
            fail,
            code::INVALID_REQUEST,
            "a key that differs from a known field only in case or by a look-alike letter",
        ));
    }
    Ok(())
}

/// An object key, borrowed from the body unless it had escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(StrVisitor)
    }
}

struct StrVisitor;

impl<'de> Visitor<'de> for StrVisitor {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

/// The JSON type a known field must have.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Want {
    Any,
    Object,
    /// An object whose every value is an object (`inputResponses`).
    ObjectOfObjects,
}

/// Any value, walked strictly (duplicate keys refused at every depth); `want` constrains its
/// type.
struct AnySeed<'f> {
    fail: &'f Fail,
    want: Want,
    reason: &'static str,
}

impl<'f> AnySeed<'f> {
    fn any(fail: &'f Fail) -> AnySeed<'f> {
        AnySeed {
            fail,
            want: Want::Any,
            reason: "",
        }
    }
    fn object(fail: &'f Fail, reason: &'static str) -> AnySeed<'f> {
        AnySeed {
            fail,
            want: Want::Object,
            reason,
        }
    }
    fn scalar<E: de::Error>(&self) -> Result<(), E> {
        match self.want {
            Want::Any => Ok(()),
            Want::Object | Want::ObjectOfObjects => {
                Err(refuse(self.fail, code::INVALID_PARAMS, self.reason))
            }
        }
    }
}

impl<'de> DeserializeSeed<'de> for AnySeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for AnySeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.scalar()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.scalar()
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.scalar()
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.scalar::<A::Error>()?;
        while seq.next_element_seed(AnySeed::any(self.fail))?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut keys = Keys::new();
        let value = match self.want {
            Want::ObjectOfObjects => AnySeed::object(self.fail, self.reason),
            Want::Any | Want::Object => AnySeed::any(self.fail),
        };
        while next_key(&mut map, &mut keys, self.fail)?.is_some() {
            map.next_value_seed(AnySeed { ..value })?;
        }
        Ok(())
    }
}

/// A field that must be a string.
struct StringSeed<'f> {
    fail: &'f Fail,
    code: i64,
    reason: &'static str,
}

impl StringSeed<'_> {
    fn refused<E: de::Error>(&self) -> E {
        refuse(self.fail, self.code, self.reason)
    }
}

impl<'de> DeserializeSeed<'de> for StringSeed<'_> {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StringSeed<'_> {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    refuse_visits!(bool, i64, u64, f64, unit, seq, map);
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string()))
    }
}

/// A JSON-RPC id (requests and responses; `progressToken` has the same rule): a string of at most
/// `MAX_ID_LEN` bytes or an integer. Null, fractions, booleans and structures are refused.
struct IdSeed<'f> {
    fail: &'f Fail,
    reason: &'static str,
}

impl IdSeed<'_> {
    fn refused<E: de::Error>(&self) -> E {
        refuse(self.fail, code::INVALID_REQUEST, self.reason)
    }
}

impl<'de> DeserializeSeed<'de> for IdSeed<'_> {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for IdSeed<'_> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string or an integer")
    }
    refuse_visits!(bool, f64, unit, seq, map);
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        if v.len() > MAX_ID_LEN {
            return Err(refuse(self.fail, code::INVALID_REQUEST, self.reason));
        }
        serde_json::to_string(v).map_err(E::custom)
    }
}

/// The whole message.
struct TopSeed<'f> {
    fail: &'f Fail,
}

impl<'de> DeserializeSeed<'de> for TopSeed<'_> {
    type Value = Top<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Top<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TopSeed<'_> {
    type Value = Top<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON-RPC message object")
    }
    refuse_visits!(bool, i64, u64, f64, str, unit, seq);
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top<'de>, A::Error> {
        let fail = self.fail;
        let mut keys = Keys::new();
        let mut top = Top::default();
        while let Some(key) = next_key(&mut map, &mut keys, fail)? {
            match &*key {
                "jsonrpc" => {
                    let v = map.next_value_seed(StringSeed {
                        fail,
                        code: code::INVALID_REQUEST,
                        reason: "jsonrpc must be \"2.0\"",
                    })?;
                    if v != "2.0" {
                        return Err(refuse(
                            fail,
                            code::INVALID_REQUEST,
                            "jsonrpc must be \"2.0\"",
                        ));
                    }
                    top.jsonrpc = true;
                }
                "id" => {
                    let id = map.next_value_seed(IdSeed {
                        fail,
                        reason: "id must be a string (at most 256 bytes) or an integer; null is not allowed",
                    })?;
                    fail.id.set(Some(id.clone()));
                    top.id = Some(id);
                }
                "method" => {
                    top.method = Some(map.next_value_seed(StringSeed {
                        fail,
                        code: code::INVALID_REQUEST,
                        reason: "method must be a string",
                    })?);
                }
                "params" => {
                    top.params = Some(map.next_value_seed(ParamsSeed {
                        fail,
                        code: code::INVALID_PARAMS,
                        reason: "params must be an object",
                    })?);
                }
                "result" => {
                    map.next_value_seed(AnySeed::object(fail, "result must be an object"))?;
                    top.result = true;
                }
                "error" => {
                    map.next_value_seed(ErrorSeed {
                        fail,
                        code: code::INVALID_REQUEST,
                        reason: ERROR_REASON,
                    })?;
                    top.error = true;
                }
                other => {
                    lookalike(other, TOP_FIELDS, fail)?;
                    map.next_value_seed(AnySeed::any(fail))?
                }
            }
        }
        Ok(top)
    }
}

impl TopSeed<'_> {
    fn refused<E: de::Error>(&self) -> E {
        refuse(
            self.fail,
            code::INVALID_REQUEST,
            "a JSON-RPC message must be a JSON object",
        )
    }
}

/// `params`: an object; the fields the gateway reads are typed wherever they appear.
struct ParamsSeed<'f> {
    fail: &'f Fail,
    code: i64,
    reason: &'static str,
}

impl ParamsSeed<'_> {
    fn refused<E: de::Error>(&self) -> E {
        refuse(self.fail, self.code, self.reason)
    }
}

impl<'de> DeserializeSeed<'de> for ParamsSeed<'_> {
    type Value = Params<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Params<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ParamsSeed<'_> {
    type Value = Params<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }
    refuse_visits!(bool, i64, u64, f64, str, unit, seq);

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Params<'de>, A::Error> {
        let fail = self.fail;
        let mut keys = Keys::new();
        let mut params = Params::default();
        let string = |reason| StringSeed {
            fail,
            code: code::INVALID_PARAMS,
            reason,
        };
        while let Some(key) = next_key(&mut map, &mut keys, fail)? {
            match &*key {
                "name" => {
                    params.name =
                        Some(map.next_value_seed(string("params.name must be a string"))?);
                }
                "uri" => {
                    params.uri = Some(map.next_value_seed(string("params.uri must be a string"))?);
                }
                "protocolVersion" => {
                    params.protocol_version = Some(
                        map.next_value_seed(string("params.protocolVersion must be a string"))?,
                    );
                }
                "cursor" => {
                    map.next_value_seed(string("params.cursor must be a string"))?;
                }
                "clientInfo" => {
                    params.client_name = map.next_value_seed(InfoSeed {
                        fail,
                        code: code::INVALID_PARAMS,
                        reason: "params.clientInfo must be an object with a string name",
                    })?;
                }
                "capabilities" => map.next_value_seed(AnySeed::object(
                    fail,
                    "params.capabilities must be an object",
                ))?,
                "arguments" => map
                    .next_value_seed(AnySeed::object(fail, "params.arguments must be an object"))?,
                "inputResponses" => map.next_value_seed(AnySeed {
                    fail,
                    want: Want::ObjectOfObjects,
                    reason: "params.inputResponses must be an object of response objects",
                })?,
                "_meta" => {
                    let meta = map.next_value_seed(MetaSeed {
                        fail,
                        code: code::INVALID_PARAMS,
                        reason: "params._meta must be an object",
                    })?;
                    params.meta_version = meta.version;
                    params.meta_capabilities = meta.capabilities;
                    params.meta_client_name = meta.client_name;
                }
                other => {
                    lookalike(other, PARAMS_FIELDS, fail)?;
                    map.next_value_seed(AnySeed::any(fail))?
                }
            }
        }
        Ok(params)
    }
}

/// `clientInfo` (`Implementation`): an object whose `name` and `version` are strings; the
/// value is the name.
struct InfoSeed<'f> {
    fail: &'f Fail,
    code: i64,
    reason: &'static str,
}

impl InfoSeed<'_> {
    fn refused<E: de::Error>(&self) -> E {
        refuse(self.fail, self.code, self.reason)
    }
}

impl<'de> DeserializeSeed<'de> for InfoSeed<'_> {
    type Value = Option<Cow<'de, str>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for InfoSeed<'_> {
    type Value = Option<Cow<'de, str>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }
    refuse_visits!(bool, i64, u64, f64, str, unit, seq);

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut keys = Keys::new();
        let mut name = None;
        let string = StringSeed {
            fail: self.fail,
            code: code::INVALID_PARAMS,
            reason: self.reason,
        };
        while let Some(key) = next_key(&mut map, &mut keys, self.fail)? {
            match &*key {
                "name" => {
                    name = Some(map.next_value_seed(StringSeed { ..string })?);
                }
                "version" => {
                    map.next_value_seed(StringSeed { ..string })?;
                }
                other => {
                    lookalike(other, INFO_FIELDS, self.fail)?;
                    map.next_value_seed(AnySeed::any(self.fail))?
                }
            }
        }
        Ok(name)
    }
}

/// `params._meta`: an object; its progress token is an id, its protocol version a string, its
/// client capabilities and client info objects.
struct MetaSeed<'f> {
    fail: &'f Fail,
    code: i64,
    reason: &'static str,
}

#[derive(Default)]
struct MetaRead<'de> {
    version: Option<Cow<'de, str>>,
    capabilities: bool,
    client_name: Option<Cow<'de, str>>,
}

impl MetaSeed<'_> {
    fn refused<E: de::Error>(&self) -> E {
        refuse(self.fail, self.code, self.reason)
    }
}

impl<'de> DeserializeSeed<'de> for MetaSeed<'_> {
    type Value = MetaRead<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for MetaSeed<'_> {
    type Value = MetaRead<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }
    refuse_visits!(bool, i64, u64, f64, str, unit, seq);

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let fail = self.fail;
        let mut keys = Keys::new();
        let mut read = MetaRead::default();
        while let Some(key) = next_key(&mut map, &mut keys, fail)? {
            match &*key {
                "progressToken" => {
                    map.next_value_seed(IdSeed {
                        fail,
                        reason: "params._meta.progressToken must be a string or an integer",
                    })?;
                }
                META_VERSION => {
                    read.version = Some(map.next_value_seed(StringSeed {
                        fail,
                        code: code::INVALID_PARAMS,
                        reason: "the _meta protocol version must be a string",
                    })?);
                }
                META_CAPABILITIES => {
                    map.next_value_seed(AnySeed::object(
                        fail,
                        "the _meta client capabilities must be an object",
                    ))?;
                    read.capabilities = true;
                }
                META_CLIENT_INFO => {
                    read.client_name = map.next_value_seed(InfoSeed {
                        fail,
                        code: code::INVALID_PARAMS,
                        reason: "the _meta client info must be an object with a string name",
                    })?;
                }
                other => {
                    lookalike(other, META_FIELDS, fail)?;
                    map.next_value_seed(AnySeed::any(fail))?
                }
            }
        }
        Ok(read)
    }
}

/// A response's `error`: an object with an integer `code` and a string `message`.
struct ErrorSeed<'f> {
    fail: &'f Fail,
    code: i64,
    reason: &'static str,
}

const ERROR_REASON: &str = "error must be an object with an integer code and a string message";

impl ErrorSeed<'_> {
    fn refused<E: de::Error>(&self) -> E {
        refuse(self.fail, self.code, self.reason)
    }
}

impl<'de> DeserializeSeed<'de> for ErrorSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ErrorSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an error object")
    }
    refuse_visits!(bool, i64, u64, f64, str, unit, seq);

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        const REASON: &str = ERROR_REASON;
        let fail = self.fail;
        let mut keys = Keys::new();
        let (mut has_code, mut has_message) = (false, false);
        while let Some(key) = next_key(&mut map, &mut keys, fail)? {
            match &*key {
                "code" => {
                    map.next_value_seed(IntSeed {
                        fail,
                        code: code::INVALID_REQUEST,
                        reason: REASON,
                    })?;
                    has_code = true;
                }
                "message" => {
                    map.next_value_seed(StringSeed {
                        fail,
                        code: code::INVALID_REQUEST,
                        reason: REASON,
                    })?;
                    has_message = true;
                }
                other => {
                    lookalike(other, ERROR_FIELDS, fail)?;
                    map.next_value_seed(AnySeed::any(fail))?
                }
            }
        }
        if has_code && has_message {
            Ok(())
        } else {
            Err(refuse(fail, code::INVALID_REQUEST, REASON))
        }
    }
}

struct IntSeed<'f> {
    fail: &'f Fail,
    code: i64,
    reason: &'static str,
}

impl IntSeed<'_> {
    fn refused<E: de::Error>(&self) -> E {
        refuse(self.fail, self.code, self.reason)
    }
}

impl<'de> DeserializeSeed<'de> for IntSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for IntSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an integer")
    }
    refuse_visits!(bool, f64, str, unit, seq, map);
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
