//! `TtlMap`: a small concurrent map whose entries are trusted for a while after they were read
//! from the database, and can be invalidated at once (`feed.rs` carries the invalidations to
//! open connections and other replicas).

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::RwLock;
use std::time::{Duration, Instant};

/// Most entries kept; when full, the map is emptied (entries are only caches of the database).
const MAX_ENTRIES: usize = 50_000;

pub struct TtlMap<K, V> {
    /// Read-mostly: lookups share the lock, only fills and invalidations take it exclusively.
    entries: RwLock<HashMap<K, (V, Instant)>>,
}

impl<K: Eq + Hash, V: Clone> Default for TtlMap<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Eq + Hash, V: Clone> TtlMap<K, V> {
    pub fn new() -> Self {
        Self {
            entries: RwLock::new(HashMap::new()),
        }
    }

    /// The value if it was stored less than `ttl` ago (looked up by a borrowed key, e.g. a
    /// `&str` for a `String` key, so a lookup allocates nothing).
    pub fn get<Q>(&self, key: &Q, ttl: Duration) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        let entries = self.entries.read().ok()?;
        entries
            .get(key)
            .filter(|(_, at)| at.elapsed() < ttl)
            .map(|(v, _)| v.clone())
    }

    pub fn put(&self, key: K, value: V) {
        if let Ok(mut entries) = self.entries.write() {
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
            entries.insert(key, (value, Instant::now()));
        }
    }

    pub fn retain(&self, keep: impl Fn(&K, &V) -> bool) {
        if let Ok(mut entries) = self.entries.write() {
            entries.retain(|k, (v, _)| keep(k, v));
        }
    }

    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.write() {
            entries.clear();
        }
    }
}
