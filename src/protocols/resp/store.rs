//! The key-value store behind [`Resp`](super::Resp), shared by every connection, worker and
//! client thread of a server.
//!
//! It owns the data, its locking and its size, nothing else: no protocol, no replies. Keys
//! are spread over independently locked shards so workers on different cores rarely wait
//! for each other; each shard sits on its own cache line so the locks do not share one.
//!
//! # Size
//!
//! Each key counts its length, plus its value's allocated capacity, plus
//! [`ENTRY_OVERHEAD`] for its slot in the table and the two allocations' headers: the
//! bytes the store holds for it, as redis's `used_memory` counts what its allocator
//! handed out. A value's capacity is its length, except when an overwrite reused a buffer
//! at most twice as large (plus [`REUSE_SLACK`]); a larger buffer is replaced, so memory
//! follows the live data rather than each key's largest value ever. With a bound
//! ([`Store::bounded`], redis's `maxmemory`), a write that would take the size past it is
//! refused; a write that does not grow the store, and every delete, is carried out.
//!
//! Memory freed goes back to the allocator, which keeps it for reuse; glibc's malloc
//! returns little of it to the system by itself (freed blocks between live ones stay
//! resident). Once the store has freed at least [`GIVE_BACK_AFTER`] bytes since the last
//! time, and at least as much as it still holds, a background thread asks glibc to return
//! its free pages (`malloc_trim`), so resident memory follows the data down (a few times
//! as the store shrinks by halves, each a walk of the heap that takes tens of milliseconds
//! for gigabytes, off the server's threads).

mod give_back;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::frame::parse_i64;
use give_back::give_back;

/// Number of shards; a power of two so a shard is picked with a mask.
const SHARDS: usize = 32;

/// Bytes counted per key beyond its key and value, an estimate of what the store spends
/// on it: its slot in the table (two `Vec` headers and a control byte, 49 bytes, in a table
/// between 7/16 and 7/8 full) and the allocator's header and rounding for the key's and
/// the value's allocations. Measured with 16-byte keys and 3-byte values (release build):
/// 103, 120 and 149 resident bytes per key beyond the data at 1.8, 0.7 and 1 million keys,
/// as the tables' fill varies; redis 7 takes 96 for the same keys.
pub const ENTRY_OVERHEAD: u64 = 112;

/// How far a value's old buffer may exceed its new length, beyond twice the length, and
/// still be reused by an overwrite (saving an allocation when a value keeps its size).
pub const REUSE_SLACK: usize = 64;

/// Bytes the store frees, at least, between two requests to give free memory back to
/// the system.
pub const GIVE_BACK_AFTER: u64 = 64 << 20;

/// A value, and when it expires.
#[derive(Debug)]
struct Entry {
    /// The value.
    value: Vec<u8>,
    /// When the key expires, if it does.
    expires: Option<Instant>,
}

/// One shard's keys and values, and the deadlines of its keys that expire.
#[derive(Debug, Default)]
struct Keys {
    /// The data.
    map: HashMap<Vec<u8>, Entry>,
    /// `(deadline, key)` for each expiry set, soonest first. An entry whose key has since
    /// been deleted or given another deadline is stale, and dropped when it comes up; the
    /// heap is rebuilt from the map when stale entries could outnumber the keys.
    deadlines: BinaryHeap<Reverse<(Instant, Vec<u8>)>>,
}

/// How far an expiry may lie ahead: a later one is taken as this (about 100 years), so
/// that no deadline overflows the clock.
pub const LONGEST_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Whether a `SET` depends on the key being there (`NX`, `XX`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Condition {
    /// Set it either way.
    #[default]
    Always,
    /// `NX`: only if the key is absent.
    Absent,
    /// `XX`: only if the key is there.
    Present,
}

/// A `SET`'s options.
#[derive(Debug, Clone, Copy, Default)]
pub struct SetOptions {
    /// When the key expires; `None` for never (or, with `keep_ttl`, as before).
    pub expires: Option<Instant>,
    /// `KEEPTTL`: keep the key's current expiry.
    pub keep_ttl: bool,
    /// `NX` or `XX`.
    pub condition: Condition,
    /// `GET`: the old value is wanted.
    pub get: bool,
}

/// One lock and the keys hashed to it, alone on a cache line.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Shard {
    /// The data.
    keys: Mutex<Keys>,
    /// The size of every key of the shard, as [`size`] counts it. Changed only under the
    /// lock (a plain load and store); read without it.
    size: AtomicU64,
    /// Bytes freed in this shard not yet added to the store's count of bytes freed (kept
    /// here below [`FREED_BATCH`], so that small deletes touch no shared counter).
    freed: AtomicU64,
}

/// Bytes a shard frees before it adds them to the store's count.
const FREED_BATCH: u64 = 1 << 20;

/// A write refused because it would take the store past its bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// Why [`Store::incr`] did not add one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incr {
    /// The value is not a decimal integer in `i64` range.
    NotInteger,
    /// The sum is out of `i64` range.
    Overflow,
    /// The new value would take the store past its bound.
    Full,
}

/// Byte-string keys to byte-string values, behind sharded locks.
#[derive(Debug)]
pub struct Store {
    /// The shards; a key lives in `shards[fnv(key) % SHARDS]`.
    shards: Box<[Shard]>,
    /// The size of the whole store and its bound, when it has one: the shards' sizes are
    /// enough to report the size, but a bound needs one figure to check and reserve at
    /// once, whatever shard a write goes to.
    bound: Option<Bound>,
    /// Bytes freed since free memory was last given back to the system.
    freed: AtomicU64,
    /// Entries in every shard's `deadlines`: zero when no key expires.
    deadlines: AtomicU64,
    /// The shard the next sweep starts at.
    sweep_from: AtomicU64,
}

/// The size of a bounded store, kept across shards.
#[derive(Debug)]
struct Bound {
    /// Most bytes the store may hold.
    limit: u64,
    /// Bytes it holds: the sum of the shards' sizes.
    used: AtomicU64,
}

impl Default for Store {
    fn default() -> Self {
        Store {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            bound: None,
            freed: AtomicU64::new(0),
            deadlines: AtomicU64::new(0),
            sweep_from: AtomicU64::new(0),
        }
    }
}

/// What a key with this key and value counts for.
fn size(key: &[u8], value: &Vec<u8>) -> u64 {
    key.len() as u64 + value.capacity() as u64 + ENTRY_OVERHEAD
}

impl Store {
    /// A store that refuses writes past `limit` bytes (see the module docs for what is
    /// counted).
    pub fn bounded(limit: u64) -> Self {
        Store {
            bound: Some(Bound {
                limit,
                used: AtomicU64::new(0),
            }),
            ..Store::default()
        }
    }

    /// The bound, if any.
    pub fn limit(&self) -> Option<u64> {
        self.bound.as_ref().map(|bound| bound.limit)
    }

    /// Bytes the store holds, as counted against the bound.
    pub fn used(&self) -> u64 {
        match &self.bound {
            Some(bound) => bound.used.load(Ordering::Relaxed),
            None => self
                .shards
                .iter()
                .map(|shard| shard.size.load(Ordering::Relaxed))
                .sum(),
        }
    }

    /// Keys in the store, counting those expired but not yet removed (as redis's
    /// `DBSIZE` does).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|shard| lock(shard).map.len()).sum()
    }

    /// Call `read` with `key`'s value (`None` if absent or expired by `now`), under the
    /// key's lock.
    pub fn get<R>(&self, key: &[u8], now: Instant, read: impl FnOnce(Option<&[u8]>) -> R) -> R {
        let (mut keys, shard) = self.shard(key);
        self.expire_if_due(&mut keys, shard, key, now);
        read(keys.map.get(key).map(|entry| entry.value.as_slice()))
    }

    /// Store `value` under `key` with no expiry, unless that would take the store past its
    /// bound.
    #[cfg(test)]
    pub fn set(&self, key: &[u8], value: &[u8]) -> Result<(), Full> {
        let now = Instant::now();
        self.set_with(key, value, now, SetOptions::default(), |_| ())
            .map(drop)
    }

    /// `SET` with its options, at `now`: `old` is called first with the value the key had
    /// (for `GET`); then the value is stored unless the condition fails (false) or the
    /// store would pass its bound.
    pub fn set_with(
        &self,
        key: &[u8],
        value: &[u8],
        now: Instant,
        options: SetOptions,
        old: impl FnOnce(Option<&[u8]>),
    ) -> Result<bool, Full> {
        let (mut keys, shard) = self.shard(key);
        self.expire_if_due(&mut keys, shard, key, now);
        let plain = options.condition == Condition::Always && !options.keep_ttl && !options.get;
        if plain {
            // A plain SET (redis-benchmark's): one lookup, in `put`.
            self.put(&mut keys, shard, key, value)?;
            if options.expires.is_some() || !keys.deadlines.is_empty() {
                self.set_expiry(&mut keys, key, options.expires);
            }
            return Ok(true);
        }
        let current = keys.map.get(key);
        old(current.map(|entry| entry.value.as_slice()));
        let found = current.is_some();
        match options.condition {
            Condition::Absent if found => return Ok(false),
            Condition::Present if !found => return Ok(false),
            _ => {}
        }
        let expires = match options.keep_ttl {
            true => current.and_then(|entry| entry.expires),
            false => options.expires,
        };
        self.put(&mut keys, shard, key, value)?;
        self.set_expiry(&mut keys, key, expires);
        Ok(true)
    }

    /// Add one to `key`'s integer value (a missing key counts as 0); returns the new value.
    #[cfg(test)]
    pub fn incr(&self, key: &[u8]) -> Result<i64, Incr> {
        self.incr_by(key, 1, Instant::now())
    }

    /// Add `delta` to `key`'s integer value (a missing or expired key counts as 0); returns
    /// the new value. The key keeps its expiry, as in redis.
    pub fn incr_by(&self, key: &[u8], delta: i64, now: Instant) -> Result<i64, Incr> {
        let (mut keys, shard) = self.shard(key);
        self.expire_if_due(&mut keys, shard, key, now);
        let current = match keys.map.get(key) {
            None => 0,
            Some(entry) => parse_i64(&entry.value).ok_or(Incr::NotInteger)?,
        };
        let next = current.checked_add(delta).ok_or(Incr::Overflow)?;
        let mut digits = [0; 20];
        let text = super::reply::format_i64(next, &mut digits);
        self.put(&mut keys, shard, key, text)
            .map_err(|Full| Incr::Full)?;
        Ok(next)
    }

    /// Remove `key`; true if it was there (and not expired by `now`).
    pub fn remove(&self, key: &[u8], now: Instant) -> bool {
        let (mut keys, shard) = self.shard(key);
        self.expire_if_due(&mut keys, shard, key, now);
        self.remove_locked(&mut keys, shard, key)
    }

    /// True if `key` is there and not expired by `now`.
    pub fn contains(&self, key: &[u8], now: Instant) -> bool {
        let (mut keys, shard) = self.shard(key);
        self.expire_if_due(&mut keys, shard, key, now);
        keys.map.contains_key(key)
    }

    /// Give `key` a deadline (`EXPIRE`, `PEXPIRE`): `None` if the key is absent; else
    /// whether `allow` (given its current deadline) let it change. A deadline not after
    /// `now` deletes the key, as redis does.
    pub fn expire(
        &self,
        key: &[u8],
        now: Instant,
        deadline: Instant,
        allow: impl FnOnce(Option<Instant>) -> bool,
    ) -> Option<bool> {
        let (mut keys, shard) = self.shard(key);
        self.expire_if_due(&mut keys, shard, key, now);
        let current = keys.map.get(key)?.expires;
        if !allow(current) {
            return Some(false);
        }
        if deadline <= now {
            self.remove_locked(&mut keys, shard, key);
        } else {
            self.set_expiry(&mut keys, key, Some(deadline));
        }
        Some(true)
    }

    /// `key`'s time to live at `now`: `None` if absent, `Some(None)` if it never expires.
    pub fn ttl(&self, key: &[u8], now: Instant) -> Option<Option<Duration>> {
        let (mut keys, shard) = self.shard(key);
        self.expire_if_due(&mut keys, shard, key, now);
        let entry = keys.map.get(key)?;
        Some(entry.expires.map(|at| at.saturating_duration_since(now)))
    }

    /// Remove `key`'s expiry (`PERSIST`); true if it had one.
    pub fn persist(&self, key: &[u8], now: Instant) -> bool {
        let (mut keys, shard) = self.shard(key);
        self.expire_if_due(&mut keys, shard, key, now);
        match keys.map.get_mut(key) {
            Some(entry) if entry.expires.is_some() => {
                // Its deadline in the heap is now stale.
                entry.expires = None;
                true
            }
            _ => false,
        }
    }

    /// True while some key has (or recently had) a deadline: a sweep may find work.
    pub fn has_deadlines(&self) -> bool {
        self.deadlines.load(Ordering::Relaxed) > 0
    }

    /// Remove keys whose deadline passed by `now`, looking at no more than `budget`
    /// deadlines, from the shard after the one the last sweep ended at; returns the keys
    /// removed and whether the budget ran out with deadlines still due.
    pub fn sweep(&self, now: Instant, budget: usize) -> (usize, bool) {
        let mut looked = 0;
        let mut removed = 0;
        let first = self.sweep_from.fetch_add(1, Ordering::Relaxed) as usize;
        for turn in 0..SHARDS {
            let shard = &self.shards[(first + turn) % SHARDS];
            let mut keys = lock(shard);
            while looked < budget {
                let Some(Reverse((at, _))) = keys.deadlines.peek() else {
                    break;
                };
                if *at > now {
                    break;
                }
                let Some(Reverse((at, key))) = keys.deadlines.pop() else {
                    break;
                };
                self.deadlines.fetch_sub(1, Ordering::Relaxed);
                looked += 1;
                let due = keys
                    .map
                    .get(&key)
                    .is_some_and(|entry| entry.expires == Some(at));
                if due {
                    self.remove_locked(&mut keys, shard, &key);
                    removed += 1;
                }
            }
            if looked >= budget {
                let more = keys
                    .deadlines
                    .peek()
                    .is_some_and(|Reverse((at, _))| *at <= now);
                return (removed, more || turn + 1 < SHARDS);
            }
        }
        (removed, false)
    }

    /// Remove every key (`FLUSHDB`, `FLUSHALL`).
    pub fn clear(&self) {
        for shard in self.shards.iter() {
            let mut keys = lock(shard);
            let emptied = std::mem::take(&mut *keys);
            self.deadlines
                .fetch_sub(emptied.deadlines.len() as u64, Ordering::Relaxed);
            let old = shard.size.load(Ordering::Relaxed);
            drop(emptied);
            self.resized(shard, old, 0);
        }
    }

    /// Remove `key` from `keys` (`shard`'s keys, locked) if its deadline passed by `now`.
    fn expire_if_due(&self, keys: &mut Keys, shard: &Shard, key: &[u8], now: Instant) {
        // Every key with a deadline has an entry in the heap: none, no lookup.
        if keys.deadlines.is_empty() {
            return;
        }
        let due = keys
            .map
            .get(key)
            .and_then(|entry| entry.expires)
            .is_some_and(|at| at <= now);
        if due {
            self.remove_locked(keys, shard, key);
        }
    }

    /// Set the expiry of `key` (which is in `keys`, locked) to `expires`.
    fn set_expiry(&self, keys: &mut Keys, key: &[u8], expires: Option<Instant>) {
        let Some(entry) = keys.map.get_mut(key) else {
            return;
        };
        if entry.expires == expires {
            return;
        }
        entry.expires = expires;
        let Some(at) = expires else {
            return;
        };
        keys.deadlines.push(Reverse((at, key.to_vec())));
        self.deadlines.fetch_add(1, Ordering::Relaxed);
        // Stale deadlines could outnumber the keys: rebuild the heap from the map.
        if keys.deadlines.len() > 2 * keys.map.len() + 64 {
            let before = keys.deadlines.len() as u64;
            let rebuilt: BinaryHeap<_> = keys
                .map
                .iter()
                .filter_map(|(key, entry)| entry.expires.map(|at| Reverse((at, key.clone()))))
                .collect();
            self.deadlines
                .fetch_sub(before - rebuilt.len() as u64, Ordering::Relaxed);
            keys.deadlines = rebuilt;
        }
    }

    /// Remove `key` from `keys` (`shard`'s keys, locked); true if it was there.
    fn remove_locked(&self, keys: &mut Keys, shard: &Shard, key: &[u8]) -> bool {
        let Some((key, entry)) = keys.map.remove_entry(key) else {
            return false;
        };
        let freed = size(&key, &entry.value);
        // A table emptied by deletes gives its slots back (growing again later costs a
        // rehash per doubling, as it did the first time).
        if keys.map.capacity() > 64 && keys.map.len() * 4 < keys.map.capacity() {
            let len = keys.map.len();
            keys.map.shrink_to(len * 2);
        }
        drop((key, entry));
        self.resized(shard, freed, 0);
        true
    }

    /// The shard that holds `key`: its keys, locked, and the shard (for its counts).
    fn shard(&self, key: &[u8]) -> (MutexGuard<'_, Keys>, &Shard) {
        let shard = &self.shards[shard_index(key)];
        (lock(shard), shard)
    }

    /// Store `value` under `key` in `keys` (`shard`'s keys, locked), reusing the old
    /// value's buffer when it is not far larger than `value`; refused if that would take
    /// the store past its bound. One lookup for an existing key, as a plain map's `SET`.
    /// The key keeps its expiry.
    fn put(&self, keys: &mut Keys, shard: &Shard, key: &[u8], value: &[u8]) -> Result<(), Full> {
        // What the key will count for when its value is a fresh allocation: `to_vec`
        // allocates exactly the length.
        let fresh = key.len() as u64 + value.len() as u64 + ENTRY_OVERHEAD;
        let (old, new) = match keys.map.get_mut(key) {
            Some(entry) => {
                let stored = &mut entry.value;
                let old = size(key, stored);
                let capacity = stored.capacity();
                if capacity >= value.len() && capacity <= 2 * value.len() + REUSE_SLACK {
                    self.reserve(old, old)?;
                    stored.clear();
                    stored.extend_from_slice(value);
                    (old, old)
                } else {
                    self.reserve(old, fresh)?;
                    *stored = value.to_vec();
                    (old, fresh)
                }
            }
            None => {
                self.reserve(0, fresh)?;
                let entry = Entry {
                    value: value.to_vec(),
                    expires: None,
                };
                keys.map.insert(key.to_vec(), entry);
                (0, fresh)
            }
        };
        self.resized(shard, old, new);
        Ok(())
    }

    /// A key of `shard` (locked) went from `old` to `new` bytes: update the shard's size
    /// and, for bytes freed, the count that decides when to give memory back.
    fn resized(&self, shard: &Shard, old: u64, new: u64) {
        if old == new {
            return;
        }
        let size = shard.size.load(Ordering::Relaxed);
        shard.size.store(size - old + new, Ordering::Relaxed);
        if new > old {
            return;
        }
        if let Some(bound) = &self.bound {
            // `reserve` counted growth at once; a shrink is counted here, once done.
            bound.used.fetch_sub(old - new, Ordering::Relaxed);
        }
        let freed = shard.freed.load(Ordering::Relaxed) + (old - new);
        if freed < FREED_BATCH {
            shard.freed.store(freed, Ordering::Relaxed);
            return;
        }
        shard.freed.store(0, Ordering::Relaxed);
        let total = self.freed.fetch_add(freed, Ordering::Relaxed) + freed;
        // Freed at least a batch, and at least as much as the store still holds: the
        // heap is mostly free memory.
        if total >= GIVE_BACK_AFTER && total >= self.used() && give_back() {
            self.freed.store(0, Ordering::Relaxed);
        }
    }

    /// Count a key going from `old` to `new` bytes against the bound: refused if it grows
    /// and the store would pass the bound. (A shrink is counted by [`Store::resized`].)
    fn reserve(&self, old: u64, new: u64) -> Result<(), Full> {
        let Some(bound) = &self.bound else {
            return Ok(());
        };
        if new <= old {
            return Ok(());
        }
        let grow = new - old;
        bound
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(grow).filter(|&after| after <= bound.limit)
            })
            .map(drop)
            .map_err(|_| Full)
    }
}

/// Lock `shard`'s keys. A poisoned lock (a thread panicked holding it) is taken anyway:
/// every operation above leaves the keys and their size consistent at each step.
fn lock(shard: &Shard) -> MutexGuard<'_, Keys> {
    shard.keys.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The shard that holds `key`.
fn shard_index(key: &[u8]) -> usize {
    // FNV-1a over 8-byte words: cheap, and it only picks a shard (the map hashes the key
    // again, with its own keyed hash). The shard comes from the top bits.
    const PRIME: u64 = 0x0100_0000_01b3;
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325 ^ key.len() as u64;
    let mut words = key.chunks_exact(8);
    for word in &mut words {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(word);
        hash = (hash ^ u64::from_le_bytes(bytes)).wrapping_mul(PRIME);
    }
    for &byte in words.remainder() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(PRIME);
    }
    // splitmix64's finish, so that every byte reaches the top bits.
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (hash >> (u64::BITS - SHARDS.trailing_zeros())) as usize
}

#[cfg(test)]
mod tests;
