//! A bounded, expiring cache whose misses are filled once however many callers ask at the
//! same time (single flight): a hundred pods naming one new image cause one registry fetch
//! and one verification.
//!
//! Policy is never cached: callers cache facts (digests, verified attestations) and
//! evaluate the current policy over them on every request.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OnceCell;
use tokio::time::Instant;

/// Hit, miss and coalesced counts, for the metrics.
#[derive(Debug, Default)]
pub struct CacheStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    /// Misses that joined a fill already under way instead of starting their own.
    pub coalesced: AtomicU64,
}

struct Entry<V> {
    value: V,
    expires: Instant,
    last_used: u64,
}

struct Inner<K, V> {
    entries: HashMap<K, Entry<V>>,
    in_flight: HashMap<K, Arc<OnceCell<V>>>,
    clock: u64,
}

/// See the module documentation. `V` is cloned out; make it cheap (`Arc`).
pub struct SingleFlightCache<K, V> {
    inner: Mutex<Inner<K, V>>,
    capacity: usize,
    stats: CacheStats,
}

impl<K, V> SingleFlightCache<K, V>
where
    K: Eq + Hash + Clone,
    V: Clone,
{
    /// A cache holding at most `capacity` entries (at least one).
    pub fn new(capacity: usize) -> Self {
        SingleFlightCache {
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                in_flight: HashMap::new(),
                clock: 0,
            }),
            capacity: capacity.max(1),
            stats: CacheStats::default(),
        }
    }

    pub fn stats(&self) -> &CacheStats {
        &self.stats
    }

    /// The fresh cached value for `key`, or the value `fill` produces, kept for the time
    /// `ttl_of` gives it (zero: not kept). Concurrent callers for one key share one `fill`.
    pub async fn get_or_fill<F, Fut>(&self, key: &K, ttl_of: impl Fn(&V) -> Duration, fill: F) -> V
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V>,
    {
        let cell = {
            let mut inner = self.lock();
            let now = Instant::now();
            inner.clock += 1;
            let tick = inner.clock;
            if let Some(entry) = inner.entries.get_mut(key) {
                if entry.expires > now {
                    entry.last_used = tick;
                    self.stats.hits.fetch_add(1, Ordering::Relaxed);
                    return entry.value.clone();
                }
            }
            inner.entries.remove(key);
            self.stats.misses.fetch_add(1, Ordering::Relaxed);
            match inner.in_flight.get(key) {
                Some(cell) => {
                    self.stats.coalesced.fetch_add(1, Ordering::Relaxed);
                    Arc::clone(cell)
                }
                None => {
                    let cell = Arc::new(OnceCell::new());
                    inner.in_flight.insert(key.clone(), Arc::clone(&cell));
                    cell
                }
            }
        };
        // If the caller filling the cell is cancelled (its deadline passed), one of the
        // waiting callers runs its own fill instead; nobody waits forever.
        let value = cell.get_or_init(fill).await.clone();
        let mut inner = self.lock();
        if inner
            .in_flight
            .get(key)
            .is_some_and(|current| Arc::ptr_eq(current, &cell))
        {
            inner.in_flight.remove(key);
            let ttl = ttl_of(&value);
            if !ttl.is_zero() {
                inner.clock += 1;
                let entry = Entry {
                    value: value.clone(),
                    expires: Instant::now() + ttl,
                    last_used: inner.clock,
                };
                inner.entries.insert(key.clone(), entry);
                self.evict_over_capacity(&mut inner);
            }
        }
        value
    }

    /// Whether `key` holds a fresh value (not counted as a hit or a miss).
    pub fn contains_fresh(&self, key: &K) -> bool {
        self.lock()
            .entries
            .get(key)
            .is_some_and(|entry| entry.expires > Instant::now())
    }

    /// Forgets every entry (for tests and a trust-root change).
    pub fn clear(&self) {
        self.lock().entries.clear();
    }

    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn evict_over_capacity(&self, inner: &mut Inner<K, V>) {
        let now = Instant::now();
        if inner.entries.len() > self.capacity {
            inner.entries.retain(|_, entry| entry.expires > now);
        }
        while inner.entries.len() > self.capacity {
            let Some(oldest) = inner
                .entries
                .iter()
                .min_by_key(|(_, entry)| entry.last_used)
                .map(|(key, _)| key.clone())
            else {
                break;
            };
            inner.entries.remove(&oldest);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<K, V>> {
        // A panic while holding the lock cannot leave the maps inconsistent (every update
        // is a single insert or remove), so a poisoned lock is still usable.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    const MINUTE: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn concurrent_misses_share_one_fill() {
        let cache = Arc::new(SingleFlightCache::<String, u32>::new(16));
        let fills = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let cache = Arc::clone(&cache);
                let fills = Arc::clone(&fills);
                tokio::spawn(async move {
                    cache
                        .get_or_fill(
                            &"sha256:abc".to_owned(),
                            |_| MINUTE,
                            || async move {
                                fills.fetch_add(1, Ordering::SeqCst);
                                tokio::time::sleep(Duration::from_millis(50)).await;
                                7
                            },
                        )
                        .await
                })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap(), 7);
        }
        assert_eq!(fills.load(Ordering::SeqCst), 1);
        assert_eq!(cache.stats().misses.load(Ordering::SeqCst), 100);
        assert_eq!(cache.stats().coalesced.load(Ordering::SeqCst), 99);
    }

    #[tokio::test(start_paused = true)]
    async fn entries_expire_after_their_own_ttl() {
        let cache = SingleFlightCache::<u8, &'static str>::new(16);
        let ttl = |value: &&str| {
            if *value == "ok" {
                MINUTE
            } else {
                Duration::from_secs(5)
            }
        };
        assert_eq!(cache.get_or_fill(&1, ttl, || async { "ok" }).await, "ok");
        assert_eq!(
            cache.get_or_fill(&2, ttl, || async { "failed" }).await,
            "failed"
        );
        tokio::time::advance(Duration::from_secs(6)).await;
        // The failure expired and is filled again; the success is still cached.
        assert_eq!(
            cache.get_or_fill(&1, ttl, || async { "refilled" }).await,
            "ok"
        );
        assert_eq!(
            cache.get_or_fill(&2, ttl, || async { "retried" }).await,
            "retried"
        );
        tokio::time::advance(MINUTE).await;
        assert_eq!(
            cache.get_or_fill(&1, ttl, || async { "refilled" }).await,
            "refilled"
        );
    }

    #[tokio::test]
    async fn a_zero_ttl_is_not_kept() {
        let cache = SingleFlightCache::<u8, u8>::new(4);
        cache
            .get_or_fill(&1, |_| Duration::ZERO, || async { 1 })
            .await;
        assert!(cache.is_empty());
        assert_eq!(
            cache
                .get_or_fill(&1, |_| Duration::ZERO, || async { 2 })
                .await,
            2
        );
    }

    #[tokio::test]
    async fn the_least_recently_used_entry_is_evicted_at_capacity() {
        let cache = SingleFlightCache::<u8, u8>::new(2);
        cache.get_or_fill(&1, |_| MINUTE, || async { 1 }).await;
        cache.get_or_fill(&2, |_| MINUTE, || async { 2 }).await;
        cache.get_or_fill(&1, |_| MINUTE, || async { 0 }).await; // touch 1
        cache.get_or_fill(&3, |_| MINUTE, || async { 3 }).await; // evicts 2
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get_or_fill(&1, |_| MINUTE, || async { 9 }).await, 1);
        assert_eq!(cache.get_or_fill(&2, |_| MINUTE, || async { 9 }).await, 9);
    }

    #[tokio::test]
    async fn a_cancelled_fill_lets_a_waiter_fill_instead() {
        let cache = Arc::new(SingleFlightCache::<u8, u8>::new(4));
        let stalled = {
            let cache = Arc::clone(&cache);
            tokio::spawn(async move {
                cache
                    .get_or_fill(&1, |_| MINUTE, std::future::pending::<u8>)
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        stalled.abort();
        let value = tokio::time::timeout(
            Duration::from_secs(2),
            cache.get_or_fill(&1, |_| MINUTE, || async { 5 }),
        )
        .await
        .expect("no caller waits forever on an abandoned fill");
        assert_eq!(value, 5);
    }
}
