//! Edits of a client message the strict reading (`message.rs`) accepted, made on its text.
//!
//! The gateway rewrites a few members of what it forwards (the id it routes by, an aggregated
//! name back to the backend's, the 2026-07-28 request metadata). Parsing the whole message into
//! a tree for that would cost about sixteen times its size in memory (a long array of small
//! numbers is mostly tree nodes); instead each object on the member's path is walked once with
//! serde_json's parser, values skipped without being built, and the member's value is replaced
//! (or inserted) in place. Everything else is forwarded byte for byte.
//!
//! The strict reading guarantees what makes this unambiguous: valid JSON and UTF-8, and no
//! duplicate keys at any depth (so a member is found once, and an inserted one is new).

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

/// The raw value of member `key` of the JSON object `object`; `None` when absent, or when
/// `object` is not an object.
fn member<'a>(object: &'a str, key: &str) -> Option<&'a RawValue> {
    let mut de = serde_json::Deserializer::from_str(object);
    Find { key }.deserialize(&mut de).ok().flatten()
}

struct Find<'k> {
    key: &'k str,
}

impl<'de> DeserializeSeed<'de> for Find<'_> {
    type Value = Option<&'de RawValue>;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Find<'_> {
    type Value = Option<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(is_key) = map.next_key_seed(KeyIs(self.key))? {
            if is_key && found.is_none() {
                found = Some(map.next_value::<&'de RawValue>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// Whether a key (after unescaping) equals the one looked for; no allocation when the key has
/// no escapes.
struct KeyIs<'k>(&'k str);

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<bool, D::Error> {
        de.deserialize_str(self)
    }
}

impl Visitor<'_> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        Ok(v == self.0)
    }
}

/// Where `inner` (a slice of `outer`) starts in `outer`.
fn offset(outer: &str, inner: &str) -> usize {
    inner.as_ptr() as usize - outer.as_ptr() as usize
}

/// The raw value at `path` (member names from the top) of a message.
pub fn get<'a>(body: &'a str, path: &[&str]) -> Option<&'a RawValue> {
    let (first, rest) = path.split_first()?;
    let mut value = member(body, first)?;
    for key in rest {
        value = member(value.get(), key)?;
    }
    Some(value)
}

/// The string at `path`, if it is one.
pub fn get_str(body: &str, path: &[&str]) -> Option<String> {
    serde_json::from_str(get(body, path)?.get()).ok()
}

/// `body` with the value at `path` set to `value` (JSON text): replaced where the member
/// exists, else inserted as its object's first member, creating the objects missing on the
/// path. `None` when a value on the path is not an object.
pub fn set(body: &str, path: &[&str], value: &str) -> Option<String> {
    let (key, rest) = path.split_first()?;
    match member(body, key) {
        Some(raw) => {
            let start = offset(body, raw.get());
            let end = start + raw.get().len();
            let replaced = if rest.is_empty() {
                value.to_string()
            } else {
                set(raw.get(), rest, value)?
            };
            let mut out = String::with_capacity(body.len() + replaced.len());
            out.push_str(&body[..start]);
            out.push_str(&replaced);
            out.push_str(&body[end..]);
            Some(out)
        }
        None => {
            // Absent (or `body` is not an object: then it does not start with `{`).
            let open = body.len() - body.trim_start().len();
            if !body[open..].starts_with('{') {
                return None;
            }
            let mut nested = value.to_string();
            for k in rest.iter().rev() {
                nested = format!("{{{}:{nested}}}", quoted(k));
            }
            let after = &body[open + 1..];
            let separator = if after.trim_start().starts_with('}') {
                ""
            } else {
                ","
            };
            Some(format!(
                "{}{}:{nested}{separator}{after}",
                &body[..=open],
                quoted(key)
            ))
        }
    }
}

/// A message on its way to a backend: its text, and the ids its answers are routed by (as
/// canonical JSON text, the form `Value::to_string` gives the backend's echo of them).
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub body: bytes::Bytes,
    /// The top-level `id` (requests and responses).
    pub id: Option<String>,
    /// `params._meta.progressToken`.
    pub progress: Option<String>,
}

/// Longest id or progress token read back from a message, as JSON text: the strict reading
/// allows ids of 256 bytes, which escapes (`\u0041`) can spell in up to 6 × 256 + 2 bytes.
pub const MAX_ID_TEXT: usize = 2048;

impl Outgoing {
    /// Reads the routing ids of a message the strict reading accepted (or the gateway built).
    pub fn new(body: bytes::Bytes) -> Outgoing {
        let text = std::str::from_utf8(&body).unwrap_or_default();
        let canonical = |path: &[&str]| {
            let raw = get(text, path)?.get();
            (raw.len() <= MAX_ID_TEXT)
                .then(|| serde_json::from_str::<serde_json::Value>(raw).ok())
                .flatten()
                .filter(|v| !v.is_null())
                .map(|v| v.to_string())
        };
        let id = canonical(&["id"]);
        let progress = canonical(&["params", "_meta", "progressToken"]);
        Outgoing { body, id, progress }
    }

    /// A message the gateway built as a tree.
    pub fn of(message: &serde_json::Value) -> Outgoing {
        Outgoing {
            body: bytes::Bytes::from(message.to_string()),
            id: message
                .get("id")
                .filter(|v| !v.is_null())
                .map(|v| v.to_string()),
            progress: message
                .get("params")
                .and_then(|p| p.get("_meta"))
                .and_then(|m| m.get("progressToken"))
                .filter(|v| !v.is_null())
                .map(|v| v.to_string()),
        }
    }
}

/// A string as JSON text.
pub fn quoted(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn parsed(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn replaces_only_the_member_on_the_path() {
        let body = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"arguments":{"name":"inner","params":{"name":"deeper"}},"name":"alpha__echo"}}"#;
        let out = set(body, &["params", "name"], &quoted("echo")).unwrap();
        let v = parsed(&out);
        assert_eq!(v["params"]["name"], "echo");
        assert_eq!(
            v["params"]["arguments"]["name"], "inner",
            "a nested `name` is untouched"
        );
        assert_eq!(v["params"]["arguments"]["params"]["name"], "deeper");
        let out = set(&out, &["id"], &quoted("amg-1")).unwrap();
        assert_eq!(parsed(&out)["id"], "amg-1");
        assert_eq!(get_str(&out, &["params", "name"]).as_deref(), Some("echo"));
    }

    #[test]
    fn escaped_keys_are_found_and_bytes_elsewhere_kept() {
        let body =
            "{ \"par\\u0061ms\" : { \"n\\u0061me\" : \"a\\u0000b\" , \"x\": [1, 2.50, 1e3] } }";
        let out = set(body, &["params", "name"], &quoted("new")).unwrap();
        assert!(
            out.contains("[1, 2.50, 1e3]"),
            "untouched bytes stay: {out}"
        );
        assert_eq!(parsed(&out)["params"]["name"], "new");
    }

    #[test]
    fn inserts_what_is_missing() {
        let meta = ["params", "_meta", "io.modelcontextprotocol/protocolVersion"];
        let cases = [
            (r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#, None),
            (r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{}}"#, None),
            (r#"{"id":1,"params":{"a":1}}"#, Some(json!(1))),
            (r#"{"id":1,"params":{"_meta":{"progressToken":"p"}}}"#, None),
            (
                r#"{"id":1,"params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"old"}}}"#,
                None,
            ),
        ];
        for (body, a) in cases {
            let out = set(body, &meta, &quoted("2026-07-28")).unwrap();
            let v = parsed(&out);
            assert_eq!(
                v["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"], "2026-07-28",
                "{body} -> {out}"
            );
            if let Some(a) = a {
                assert_eq!(v["params"]["a"], a);
            }
            if body.contains("progressToken") {
                assert_eq!(v["params"]["_meta"]["progressToken"], "p");
            }
        }
    }

    #[test]
    fn non_objects_on_the_path_are_refused() {
        assert!(set(r#"{"params":[1]}"#, &["params", "name"], "1").is_none());
        assert!(set(r#"{"params":"{\"name\":1}"}"#, &["params", "name"], "1").is_none());
        assert!(set("[1]", &["id"], "1").is_none());
        assert!(get(r#"{"params":[1]}"#, &["params", "name"]).is_none());
    }

    fn value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i32>().prop_map(Value::from),
            "[a-z\"\\\\\u{e9}]{0,6}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 40, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map("(name|id|params|_meta|x|n\"a)", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// The same edit on a tree: objects on the path created, anything else refused.
    fn tree_set(value: &mut Value, path: &[&str]) -> bool {
        let Some((key, rest)) = path.split_first() else {
            *value = json!("new");
            return true;
        };
        let Some(obj) = value.as_object_mut() else {
            return false;
        };
        let next = obj.entry(key.to_string()).or_insert_with(|| json!({}));
        if rest.is_empty() {
            *next = json!("new");
            return true;
        }
        tree_set(next, rest)
    }

    proptest::proptest! {
        /// Editing the text gives what editing a tree gives, on any message and path, compact
        /// or pretty-printed.
        #[test]
        fn text_edits_agree_with_tree_edits(
            message in value(),
            path in proptest::collection::vec("(name|id|params|_meta|x|n\"a)", 1..4),
            pretty in proptest::bool::ANY,
        ) {
            let text = if pretty {
                serde_json::to_string_pretty(&message).unwrap()
            } else {
                message.to_string()
            };
            let path: Vec<&str> = path.iter().map(String::as_str).collect();
            let edited = set(&text, &path, "\"new\"");
            let mut tree = message.clone();
            if tree_set(&mut tree, &path) {
                let edited = edited.expect("an edit where the tree allows one");
                proptest::prop_assert_eq!(parsed(&edited), tree);
                let read = get_str(&edited, &path);
                proptest::prop_assert_eq!(read.as_deref(), Some("new"));
            } else {
                proptest::prop_assert!(edited.is_none());
            }
        }
    }
}
