//! Tool-definition pinning: what each tool of a server says it does (name, title, description,
//! input and output schema, annotations) is fingerprinted; a backend that later sends another
//! definition — a "rug pull" — or a new tool is reported (`tool_definition_changed`) and, under
//! `quarantine`, the tool leaves `tools/list` on both endpoints and calls to it are refused
//! until an admin approves the new version.
//!
//! The first list the gateway sees of a server (no pins yet) is pinned as approved ("first
//! seen"). Every `tools/list` answer the gateway relays or fetches is observed here; the table
//! in memory is the gate's view (copy-on-write per server), the database (`tool_pins`) the
//! shared truth, re-read on `Change::Pins` from any replica.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::db::{self, Db};
use crate::detect::clip;
use crate::events::{EventContext, EventType, Severity};
use crate::feed::Change;
use crate::state::AppState;

/// A server's pinning mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pinning {
    Off,
    /// Changed and new definitions are reported; nothing else changes.
    Warn,
    /// Also hidden from lists and refused until approved.
    Quarantine,
}

impl Pinning {
    pub fn parse(mode: &str) -> Pinning {
        match mode {
            "off" => Pinning::Off,
            "warn" => Pinning::Warn,
            // Anything unknown is the strictest.
            _ => Pinning::Quarantine,
        }
    }
}

/// The fields of a tool that are pinned, in a fixed order.
const FIELDS: [&str; 6] = [
    "name",
    "title",
    "description",
    "inputSchema",
    "outputSchema",
    "annotations",
];
/// Tools pinned per server at most; beyond, new names stay unapproved (hidden and refused
/// under quarantine) and are not stored.
pub const MAX_PINS_PER_SERVER: usize = 10_000;
/// Longer names are never pinned (so never approved).
const MAX_NAME: usize = 256;
/// A stored definition longer than this is cut (the fingerprint covers all of it).
const MAX_STORED_DEF: usize = 64 * 1024;
/// Each side of a field in an event's diff.
const MAX_DIFF_SIDE: usize = 2_000;

pub type Fingerprint = [u8; 32];

/// The pinned part of a tool as canonical JSON text (object keys sorted at every depth).
pub fn definition(tool: &Value) -> Value {
    let mut def = Map::new();
    for field in FIELDS {
        if let Some(v) = tool.get(field) {
            def.insert(field.to_string(), v.clone());
        }
    }
    Value::Object(def)
}

fn canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

pub fn canonical_text(value: &Value) -> String {
    let mut out = String::new();
    canonical(value, &mut out);
    out
}

/// The fingerprint of a tool as a backend lists it.
pub fn fingerprint(tool: &Value) -> Fingerprint {
    Sha256::digest(canonical_text(&definition(tool)).as_bytes()).into()
}

pub fn hex(fp: &Fingerprint) -> String {
    crate::auth::identity::hex(fp)
}

fn parse_hex(text: &str) -> Option<Fingerprint> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Approved,
    Pending,
    Rejected,
}

#[derive(Debug, Clone)]
struct Pin {
    approved: Option<Fingerprint>,
    seen: Fingerprint,
    status: Status,
}

impl Pin {
    fn callable(&self) -> bool {
        self.status == Status::Approved && self.approved == Some(self.seen)
    }
}

/// One server's pins (replaced as a whole on change).
#[derive(Debug, Clone, Default)]
struct ServerPins {
    tools: HashMap<String, Pin>,
}

/// What the gate may do with a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Callable,
    /// The gateway has seen no list of this server yet (no baseline).
    Unseen,
    /// New, changed, rejected or never listed: not callable under quarantine.
    Quarantined,
}

enum Write {
    Insert {
        name: String,
        fp: Fingerprint,
        def: Value,
        approved: bool,
    },
    Seen {
        name: String,
        before: Fingerprint,
        fp: Fingerprint,
        def: Value,
    },
}

pub struct Pins {
    db: Db,
    table: RwLock<HashMap<i64, Arc<ServerPins>>>,
    /// What this replica saw and has not stored yet: a reload keeps it (the database would
    /// still say "approved" for a tool just seen changed), and a failed write keeps it.
    outstanding: Mutex<HashMap<(i64, String), Pin>>,
}

/// Unstored observations kept at most (beyond, a reload may show the stored state until the
/// write lands).
const MAX_OUTSTANDING: usize = 100_000;
/// The name of the marker row saying a server's first list was seen (even an empty one).
const BASELINE: &str = "";

impl Pins {
    pub async fn load(db: Db) -> anyhow::Result<Pins> {
        let pins = Pins {
            db,
            table: RwLock::default(),
            outstanding: Mutex::default(),
        };
        pins.reload(None).await?;
        Ok(pins)
    }

    /// Re-reads one server's pins (or every server's).
    pub async fn reload(&self, server_id: Option<i64>) -> anyhow::Result<()> {
        let rows = db::tool_pins::states(&self.db.pool, server_id).await?;
        let mut fresh: HashMap<i64, ServerPins> = HashMap::new();
        for row in rows {
            let Some(seen) = parse_hex(&row.seen_fp) else {
                continue;
            };
            let status = match row.status.as_str() {
                "approved" => Status::Approved,
                "rejected" => Status::Rejected,
                _ => Status::Pending,
            };
            fresh.entry(row.server_id).or_default().tools.insert(
                row.name,
                Pin {
                    approved: row.approved_fp.as_deref().and_then(parse_hex),
                    seen,
                    status,
                },
            );
        }
        if let Ok(outstanding) = self.outstanding.lock() {
            for ((sid, name), pin) in outstanding.iter() {
                if server_id.is_none_or(|id| id == *sid) {
                    fresh
                        .entry(*sid)
                        .or_default()
                        .tools
                        .insert(name.clone(), pin.clone());
                }
            }
        }
        if let Ok(mut table) = self.table.write() {
            match server_id {
                Some(id) => match fresh.remove(&id) {
                    Some(p) => {
                        table.insert(id, Arc::new(p));
                    }
                    None => {
                        table.remove(&id);
                    }
                },
                None => *table = fresh.into_iter().map(|(k, v)| (k, Arc::new(v))).collect(),
            }
        }
        Ok(())
    }

    /// Forgets servers that no longer exist, with what was seen of them and not yet stored.
    pub fn retain(&self, ids: &[i64]) {
        if let Ok(mut table) = self.table.write() {
            table.retain(|id, _| ids.contains(id));
        }
        if let Ok(mut outstanding) = self.outstanding.lock() {
            outstanding.retain(|(id, _), _| ids.contains(id));
        }
    }

    fn server(&self, server_id: i64) -> Option<Arc<ServerPins>> {
        self.table.read().ok()?.get(&server_id).cloned()
    }

    /// Whether the gateway has pinned any tool of the server (seen a first list).
    pub fn has_baseline(&self, server_id: i64) -> bool {
        self.server(server_id).is_some_and(|p| !p.tools.is_empty())
    }

    /// Whether a call to `tool` may go to the server (under quarantine).
    pub fn verdict(&self, server_id: i64, tool: &str) -> Verdict {
        match self.server(server_id) {
            None => Verdict::Unseen,
            Some(p) if p.tools.is_empty() => Verdict::Unseen,
            Some(p) => match p.tools.get(tool) {
                Some(pin) if pin.callable() => Verdict::Callable,
                _ => Verdict::Quarantined,
            },
        }
    }

    /// Whether a listed tool with this fingerprint is the approved version.
    pub fn approved(&self, server_id: i64, name: &str, fp: &Fingerprint) -> bool {
        self.server(server_id)
            .and_then(|p| p.tools.get(name).map(|pin| pin.approved == Some(*fp)))
            .unwrap_or(false)
    }

    /// A list a backend sent: new and changed definitions are recorded here at once and in the
    /// database in the background, which also raises the events. Returns the tools' fingerprints
    /// in list order (`None` for an item without a usable name). Only a `complete` list (every
    /// page, as the catalog fetches it) can be a server's first, approved one: a page a client
    /// asked for is compared with the pins, and with none yet it pins nothing.
    pub fn observe(
        &self,
        state: &AppState,
        server_id: i64,
        server: &str,
        mode: Pinning,
        tools: &[Value],
        complete: bool,
    ) -> Vec<Option<Fingerprint>> {
        let fps: Vec<Option<Fingerprint>> = tools
            .iter()
            .map(|t| {
                t.get("name")
                    .and_then(Value::as_str)
                    // A name with a control character is none a client may call, nor one the
                    // pins table can store (a NUL): not pinned, and so not listed under pinning.
                    .filter(|n| {
                        !n.is_empty() && n.len() <= MAX_NAME && !n.chars().any(char::is_control)
                    })
                    .map(|_| fingerprint(t))
            })
            .collect();
        if mode == Pinning::Off {
            return fps;
        }
        let writes = match self.table.write() {
            Ok(mut table) => {
                let current = table.get(&server_id).cloned().unwrap_or_default();
                let baseline = current.tools.is_empty();
                if baseline && !complete {
                    return fps;
                }
                let mut next: Option<ServerPins> = None;
                let mut writes = Vec::new();
                // A name listed twice with different definitions counts as its first version
                // that is not the approved one.
                let mut chosen: HashMap<&str, usize> = HashMap::new();
                for (i, (tool, fp)) in tools.iter().zip(&fps).enumerate() {
                    let (Some(fp), Some(name)) = (fp, tool.get("name").and_then(Value::as_str))
                    else {
                        continue;
                    };
                    let approved = current.tools.get(name).and_then(|p| p.approved);
                    match chosen.get(name) {
                        None => {
                            chosen.insert(name, i);
                        }
                        Some(&j) if fps[j] == approved && Some(*fp) != approved => {
                            chosen.insert(name, i);
                        }
                        Some(_) => {}
                    }
                }
                let mut order: Vec<usize> = chosen.into_values().collect();
                order.sort_unstable();
                for i in order {
                    let tool = &tools[i];
                    let (Some(fp), Some(name)) =
                        (&fps[i], tool.get("name").and_then(Value::as_str))
                    else {
                        continue;
                    };
                    let existing = next.as_ref().unwrap_or(&current).tools.get(name).cloned();
                    let next = next.get_or_insert_with(|| (*current).clone());
                    match existing {
                        None => {
                            if next.tools.len() >= MAX_PINS_PER_SERVER {
                                continue;
                            }
                            next.tools.insert(
                                name.to_string(),
                                Pin {
                                    approved: baseline.then_some(*fp),
                                    seen: *fp,
                                    status: if baseline {
                                        Status::Approved
                                    } else {
                                        Status::Pending
                                    },
                                },
                            );
                            writes.push(Write::Insert {
                                name: name.to_string(),
                                fp: *fp,
                                def: definition(tool),
                                approved: baseline,
                            });
                        }
                        Some(pin) if pin.seen == *fp => {}
                        Some(pin) => {
                            let status = if pin.approved == Some(*fp) {
                                Status::Approved
                            } else {
                                Status::Pending
                            };
                            next.tools.insert(
                                name.to_string(),
                                Pin {
                                    approved: pin.approved,
                                    seen: *fp,
                                    status,
                                },
                            );
                            writes.push(Write::Seen {
                                name: name.to_string(),
                                before: pin.seen,
                                fp: *fp,
                                def: definition(tool),
                            });
                        }
                    }
                }
                if baseline {
                    // The first list is pinned even when it is empty: a tool that appears
                    // later is new, not "first seen".
                    let fp = fingerprint(&json!({}));
                    let next = next.get_or_insert_with(|| (*current).clone());
                    next.tools.insert(
                        BASELINE.to_string(),
                        Pin {
                            approved: Some(fp),
                            seen: fp,
                            status: Status::Approved,
                        },
                    );
                    writes.push(Write::Insert {
                        name: BASELINE.to_string(),
                        fp,
                        def: json!({}),
                        approved: true,
                    });
                }
                if let Some(next) = next
                    && !writes.is_empty()
                {
                    if let Ok(mut outstanding) = self.outstanding.lock() {
                        for w in &writes {
                            let name = match w {
                                Write::Insert { name, .. } | Write::Seen { name, .. } => name,
                            };
                            if let Some(pin) = next.tools.get(name)
                                && outstanding.len() < MAX_OUTSTANDING
                            {
                                outstanding.insert((server_id, name.clone()), pin.clone());
                            }
                        }
                    }
                    table.insert(server_id, Arc::new(next));
                }
                writes
            }
            Err(_) => Vec::new(),
        };
        if !writes.is_empty() {
            let state = state.clone();
            let server = server.to_string();
            tokio::spawn(async move {
                persist(&state, server_id, &server, mode, writes).await;
            });
        }
        fps
    }

    /// A write over what `observe` recorded landed (or lost to another writer's): the database
    /// has the truth now.
    fn stored(&self, server_id: i64, name: &str, fp: &Fingerprint) {
        if let Ok(mut outstanding) = self.outstanding.lock() {
            let key = (server_id, name.to_string());
            if outstanding.get(&key).is_some_and(|p| p.seen == *fp) {
                outstanding.remove(&key);
            }
        }
    }

    /// After a write here: this replica re-reads, the others hear of it, and aggregated
    /// clients are told the server's tool list changed.
    pub async fn changed(&self, state: &AppState, server_id: i64) {
        if let Err(e) = self.reload(Some(server_id)).await {
            tracing::warn!(error = format!("{e:#}"), "re-reading tool pins failed");
        }
        state
            .mcp
            .aggregate
            .catalog
            .changed(server_id, "notifications/tools/list_changed");
        state.changes.send(Change::Pins(server_id));
    }
}

/// Writes what `observe` found; whoever's write lands raises the event.
async fn persist(
    state: &AppState,
    server_id: i64,
    server: &str,
    mode: Pinning,
    writes: Vec<Write>,
) {
    let pool = &state.db.pool;
    let now = db::now();
    let mut any = false;
    let mut lost = false;
    for write in writes {
        let result = match &write {
            Write::Insert {
                name,
                fp,
                def,
                approved,
            } => db::tool_pins::insert(
                pool,
                server_id,
                name,
                &hex(fp),
                &stored(def),
                *approved,
                now,
            )
            .await
            .map(|done| (done, None)),
            Write::Seen {
                name,
                before,
                fp,
                def,
            } => {
                let row = db::tool_pins::find(pool, server_id, name).await;
                match row {
                    Ok(row) => db::tool_pins::record_seen(
                        pool,
                        server_id,
                        name,
                        &hex(before),
                        &hex(fp),
                        &stored(def),
                        now,
                    )
                    .await
                    .map(|done| (done, row)),
                    Err(e) => Err(e),
                }
            }
        };
        let (name, fp) = match &write {
            Write::Insert { name, fp, .. } | Write::Seen { name, fp, .. } => (name, fp),
        };
        let (done, before_row) = match result {
            Ok(r) => r,
            Err(e) => {
                // Kept as seen here (quarantined under quarantine) until a write lands.
                tracing::warn!(error = %e, server, "recording a tool definition failed");
                continue;
            }
        };
        state.mcp.pins.stored(server_id, name, fp);
        if !done {
            lost = true;
            continue;
        }
        any = true;
        let (name, fp, def, change) = match &write {
            Write::Insert { approved: true, .. } => continue,
            Write::Insert { name, fp, def, .. } => (name, fp, def, "new"),
            Write::Seen { name, fp, def, .. } => (name, fp, def, "changed"),
        };
        let approved = before_row
            .as_ref()
            .and_then(|r| r.approved_fp.as_deref())
            .and_then(parse_hex);
        if approved == Some(*fp) {
            // Back to the approved version: nothing to report.
            continue;
        }
        let before_def = before_row
            .as_ref()
            .and_then(|r| r.approved_def.as_deref())
            .and_then(|d| serde_json::from_str::<Value>(d).ok());
        let quarantined = mode == Pinning::Quarantine;
        state.events.record(
            EventType::ToolDefinitionChanged,
            if quarantined {
                Severity::High
            } else {
                Severity::Medium
            },
            &EventContext::default(),
            None,
            None,
            json!({
                "server": server,
                "tool": name,
                "change": change,
                "mode": if quarantined { "quarantine" } else { "warn" },
                "quarantined": quarantined,
                "fingerprint": hex(fp),
                "diff": diff(before_def.as_ref(), def),
            }),
        );
    }
    if any || lost {
        // A lost race: the other writer's view is read back.
        state.mcp.pins.changed(state, server_id).await;
    }
}

fn stored(def: &Value) -> String {
    let text = canonical_text(def);
    if text.len() <= MAX_STORED_DEF {
        return text;
    }
    // Too long to keep whole: the fields that fit, and a note that the rest was cut.
    let mut cut = Map::new();
    for field in FIELDS {
        if let Some(v) = def.get(field) {
            cut.insert(
                field.to_string(),
                Value::String(clip(&canonical_text(v), 8_000)),
            );
        }
    }
    cut.insert("_truncated".into(), Value::Bool(true));
    canonical_text(&Value::Object(cut))
}

/// What changed, field by field (each side as JSON text, clipped).
pub fn diff(before: Option<&Value>, after: &Value) -> Value {
    let mut out = Vec::new();
    for field in FIELDS {
        let b = before.and_then(|d| d.get(field));
        let a = after.get(field);
        if b != a {
            out.push(json!({
                "field": field,
                "before": b.map(|v| clip(&canonical_text(v), MAX_DIFF_SIDE)),
                "after": a.map(|v| clip(&canonical_text(v), MAX_DIFF_SIDE)),
            }));
        }
    }
    Value::Array(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fingerprints_ignore_key_order_and_unpinned_fields() {
        let a = json!({"name": "t", "description": "d", "inputSchema": {"type": "object", "properties": {"x": {"type": "string"}}}});
        let b = json!({"inputSchema": {"properties": {"x": {"type": "string"}}, "type": "object"}, "description": "d", "name": "t", "_meta": {"x": 1}, "icons": []});
        assert_eq!(fingerprint(&a), fingerprint(&b));
        let c = json!({"name": "t", "description": "d ", "inputSchema": {"type": "object", "properties": {"x": {"type": "string"}}}});
        assert_ne!(fingerprint(&a), fingerprint(&c));
        let d = json!({"name": "t", "description": "d", "annotations": {"destructiveHint": true}, "inputSchema": {"type": "object", "properties": {"x": {"type": "string"}}}});
        assert_ne!(fingerprint(&a), fingerprint(&d));
        // An escaped letter is the same text once read.
        let e: Value = serde_json::from_str(r#"{"name": "t", "description": "\u0064", "inputSchema": {"type": "object", "properties": {"x": {"type": "string"}}}}"#).unwrap();
        assert_eq!(fingerprint(&a), fingerprint(&e));
    }

    #[test]
    fn hex_round_trips_and_refuses_junk() {
        let fp = fingerprint(&json!({"name": "x"}));
        assert_eq!(parse_hex(&hex(&fp)), Some(fp));
        assert_eq!(parse_hex("zz"), None);
        assert_eq!(parse_hex(&"é".repeat(32)), None);
    }

    #[test]
    fn diff_names_only_changed_fields() {
        let before = json!({"name": "t", "description": "old"});
        let after = json!({"name": "t", "description": "new", "annotations": {}});
        let d = diff(Some(&before), &after);
        let fields: Vec<&str> = d
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["field"].as_str().unwrap())
            .collect();
        assert_eq!(fields, ["description", "annotations"]);
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i32>().prop_map(|n| json!(n)),
            "[a-z\u{200b}\"\\\\]{0,6}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-c]{1,2}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        // The canonical text is valid JSON that reads back as the same value, so two equal
        // definitions always have one fingerprint and different ones (almost surely) two.
        #[test]
        fn canonical_text_reads_back_as_the_same_value(v in json_value()) {
            let text = canonical_text(&v);
            let back: Value = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(back, v);
        }

        #[test]
        fn different_descriptions_never_share_a_fingerprint(a in ".{0,40}", b in ".{0,40}") {
            prop_assume!(a != b);
            let ta = json!({"name": "t", "description": a});
            let tb = json!({"name": "t", "description": b});
            prop_assert_ne!(fingerprint(&ta), fingerprint(&tb));
        }
    }
}
