//! What keeps a flood from knocking the ingest over: caches with a bound on their size (device
//! ids known and unknown, stream keys), and a token bucket per source address. All of it is
//! memory of one replica; each bound is a number in [`IngestLimits`].

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The bounds of one replica's ingest.
#[derive(Clone, Debug)]
pub struct IngestLimits {
    /// Devices whose id → (product, serial) is cached.
    pub directory_entries: usize,
    /// Unknown device ids remembered as unknown (so they cost no store read).
    pub unknown_entries: usize,
    /// How long an id stays "unknown" (a device registered on another replica meanwhile is
    /// found after this).
    pub unknown_ttl: Duration,
    /// Stream keys (device, epoch) cached.
    pub key_entries: usize,
    /// How long a device's current epoch, as this replica last saw it, completes v2 records'
    /// epoch bits (another replica may move the device on meanwhile; this is wrong only once it
    /// moved more than `EPOCH_LOOKAHEAD` epochs, and then only until it expires).
    pub epoch_hint_ttl: Duration,
    /// Records per second each source address may send (sustained).
    pub per_source_rate: f64,
    /// Records a source may send in a burst.
    pub per_source_burst: f64,
    /// Source addresses tracked at once.
    pub sources: usize,
    /// Store lookups per second for device ids this replica has not seen (sustained): a flood
    /// of made-up ids from many addresses costs the store at most this.
    pub lookups_per_sec: f64,
    /// Lookups in a burst.
    pub lookup_burst: f64,
    /// Device keys (opened from the registry) kept in memory, so a forged record is refused
    /// by its tag alone, without a store read.
    pub device_key_entries: usize,
}

/// A source's burst, in seconds of its sustained rate.
const BURST_SECONDS: f64 = 2.0;

impl Default for IngestLimits {
    fn default() -> Self {
        let per_source_rate = f64::from(crate::config::DEFAULT_DATA_SOURCE_RATE);
        Self {
            directory_entries: 100_000,
            unknown_entries: 65_536,
            unknown_ttl: Duration::from_secs(10),
            key_entries: 16_384,
            epoch_hint_ttl: Duration::from_secs(60),
            per_source_rate,
            per_source_burst: BURST_SECONDS * per_source_rate,
            sources: 4_096,
            lookups_per_sec: 200.0,
            lookup_burst: 1_000.0,
            device_key_entries: 16_384,
        }
    }
}

impl IngestLimits {
    /// The defaults, but `rate` records/s per source address (a burst of [`BURST_SECONDS`]
    /// of it).
    pub fn with_source_rate(rate: u32) -> Self {
        let rate = f64::from(rate.max(1));
        Self {
            per_source_rate: rate,
            per_source_burst: BURST_SECONDS * rate,
            ..Self::default()
        }
    }
}

/// A map that never holds more than its capacity: when full, expired entries go first, then an
/// arbitrary eighth of the rest (a flood of new keys only churns the cache, never grows it).
pub struct BoundedMap<K, V> {
    map: HashMap<K, (V, Instant)>,
    capacity: usize,
    ttl: Option<Duration>,
}

impl<K: Hash + Eq + Clone, V: Clone> BoundedMap<K, V> {
    /// At most `capacity` entries, each for at most `ttl` (`None`: until evicted).
    pub fn new(capacity: usize, ttl: Option<Duration>) -> Self {
        Self {
            map: HashMap::new(),
            capacity: capacity.max(1),
            ttl,
        }
    }

    /// The live value for `key`.
    pub fn get(&self, key: &K) -> Option<V> {
        let (value, at) = self.map.get(key)?;
        match self.ttl {
            Some(ttl) if at.elapsed() > ttl => None,
            _ => Some(value.clone()),
        }
    }

    /// Stores `value` for `key`, evicting first if full.
    pub fn insert(&mut self, key: K, value: V) {
        if self.map.len() >= self.capacity && !self.map.contains_key(&key) {
            if let Some(ttl) = self.ttl {
                self.map.retain(|_, (_, at)| at.elapsed() <= ttl);
            }
            if self.map.len() >= self.capacity {
                let drop: Vec<K> = self
                    .map
                    .keys()
                    .take((self.capacity / 8).max(1))
                    .cloned()
                    .collect();
                for k in drop {
                    self.map.remove(&k);
                }
            }
        }
        self.map.insert(key, (value, Instant::now()));
    }

    /// Forgets `key`.
    pub fn remove(&mut self, key: &K) {
        self.map.remove(key);
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// One token bucket: `burst` tokens, refilled at `rate` per second.
pub struct TokenBucket {
    tokens: f64,
    last: Instant,
    rate: f64,
    burst: f64,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: f64, burst: f64) -> Self {
        Self {
            tokens: burst,
            last: Instant::now(),
            rate,
            burst,
        }
    }

    /// Takes one token: false when none is left.
    pub fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens
            + now.saturating_duration_since(self.last).as_secs_f64() * self.rate)
            .min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A token bucket per source address.
pub struct RateLimiter {
    buckets: BoundedMap<IpAddr, (f64, Instant)>,
    rate: f64,
    burst: f64,
}

impl RateLimiter {
    /// Buckets of `burst` tokens refilled at `rate` per second, for at most `sources` addresses.
    pub fn new(limits: &IngestLimits) -> Self {
        Self {
            buckets: BoundedMap::new(limits.sources, None),
            rate: limits.per_source_rate,
            burst: limits.per_source_burst,
        }
    }

    /// How many of `n` records from `source` may go on (the rest are dropped unread).
    pub fn admit(&mut self, source: IpAddr, n: usize) -> usize {
        let now = Instant::now();
        let (tokens, last) = self.buckets.get(&source).unwrap_or((self.burst, now));
        let tokens = (tokens + now.saturating_duration_since(last).as_secs_f64() * self.rate)
            .min(self.burst);
        let admitted = (tokens.floor() as usize).min(n);
        self.buckets.insert(source, (tokens - admitted as f64, now));
        admitted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bounded_map_stays_bounded_and_expires() {
        let mut m = BoundedMap::new(100, None);
        for i in 0..10_000u32 {
            m.insert(i, i);
        }
        assert!(m.len() <= 100);
        assert_eq!(m.get(&9_999), Some(9_999), "the newest is kept");
        let mut t = BoundedMap::new(10, Some(Duration::from_millis(0)));
        t.insert(1u8, ());
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(t.get(&1), None);
    }

    #[test]
    fn a_bucket_gives_its_burst_then_its_rate() {
        let mut bucket = TokenBucket::new(10.0, 5.0);
        assert_eq!((0..20).filter(|_| bucket.take()).count(), 5);
        std::thread::sleep(Duration::from_millis(300));
        let refilled = (0..20).filter(|_| bucket.take()).count();
        assert!((1..=5).contains(&refilled), "{refilled}");
    }

    #[test]
    fn a_source_gets_its_burst_then_its_rate() {
        let limits = IngestLimits {
            per_source_rate: 10.0,
            per_source_burst: 100.0,
            ..IngestLimits::default()
        };
        let mut limiter = RateLimiter::new(&limits);
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        assert_eq!(limiter.admit(a, 64), 64);
        assert_eq!(limiter.admit(a, 64), 36);
        assert_eq!(limiter.admit(a, 64), 0);
        assert_eq!(
            limiter.admit(b, 64),
            64,
            "another source has its own bucket"
        );
        std::thread::sleep(Duration::from_millis(300));
        let refilled = limiter.admit(a, 64);
        assert!((1..=5).contains(&refilled), "{refilled}");
    }
}
