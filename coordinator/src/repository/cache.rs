//! A bounded in-memory map this replica keeps of records it read or wrote, so a hot path can
//! skip the read. Only two kinds of records go in one: records that never change once written
//! (orders, products, opened authority keys), and records every use of which is guarded on the
//! cached revision in the transaction that relies on it (a station, a quota, a lease): a stale
//! copy then fails its guard, and the refusal reads the fresh one back in the same round trip
//! (`super::Db::transact`). Nothing is ever decided from a cached copy alone.
//!
//! Past its bound the map is emptied (the next uses read again), so memory stays bounded
//! whatever ids callers name.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

/// Records by key, at most `bound` of them.
pub struct Cache<K, V> {
    map: Mutex<HashMap<K, V>>,
    bound: usize,
}

impl<K: Eq + Hash, V: Clone> Cache<K, V> {
    /// An empty cache holding at most `bound` entries.
    pub fn new(bound: usize) -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            bound,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, V>> {
        // A panic while holding the lock leaves a map of whole entries: still usable.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of the entry under `key`, if cached.
    pub fn get(&self, key: &K) -> Option<V> {
        self.lock().get(key).cloned()
    }

    /// Caches `value` under `key`, replacing what was there.
    pub fn put(&self, key: K, value: V) {
        let mut map = self.lock();
        if map.len() >= self.bound && !map.contains_key(&key) {
            map.clear();
        }
        map.insert(key, value);
    }

    /// Forgets the entry under `key`.
    pub fn remove(&self, key: &K) {
        self.lock().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_within_its_bound() {
        let cache = Cache::new(2);
        cache.put(1, "a");
        cache.put(2, "b");
        cache.put(2, "c");
        assert_eq!(cache.get(&2), Some("c"));
        cache.put(3, "d");
        assert_eq!((cache.get(&1), cache.get(&3)), (None, Some("d")));
        cache.remove(&3);
        assert_eq!(cache.get(&3), None);
    }
}
