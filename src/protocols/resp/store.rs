//! The key-value store behind [`Resp`](super::Resp), shared by every connection, worker and
//! client thread of a server.
//!
//! It owns the data and its locking, nothing else: no protocol, no replies. Keys are spread
//! over independently locked shards so workers on different cores rarely wait for each
//! other; each shard sits on its own cache line so the locks do not share one.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Number of shards; a power of two so a shard is picked with a mask.
const SHARDS: usize = 32;

/// One lock and the keys hashed to it, alone on a cache line.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Shard(Mutex<HashMap<Vec<u8>, Vec<u8>>>);

/// Byte-string keys to byte-string values, behind sharded locks.
#[derive(Debug)]
pub struct Store {
    /// The shards; a key lives in `shards[fnv(key) % SHARDS]`.
    shards: Box<[Shard]>,
}

impl Default for Store {
    fn default() -> Self {
        Store {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
        }
    }
}

impl Store {
    /// Lock the shard that holds `key`.
    ///
    /// A poisoned lock (a thread panicked holding it) is taken anyway: every operation
    /// below leaves the map consistent at each step, so the data is still sound.
    pub fn shard(&self, key: &[u8]) -> MutexGuard<'_, HashMap<Vec<u8>, Vec<u8>>> {
        // FNV-1a: cheap for short keys, and only picks a shard (the map hashes again).
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for &byte in key {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
        let index = (hash as usize) & (SHARDS - 1);
        self.shards[index]
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Store `value` under `key`, reusing the old value's memory when the key exists.
    pub fn set(&self, key: &[u8], value: &[u8]) {
        let mut shard = self.shard(key);
        match shard.get_mut(key) {
            Some(old) => {
                old.clear();
                old.extend_from_slice(value);
            }
            None => {
                shard.insert(key.to_vec(), value.to_vec());
            }
        }
    }

    /// Remove `key`; true if it was there.
    pub fn remove(&self, key: &[u8]) -> bool {
        self.shard(key).remove(key).is_some()
    }

    /// True if `key` is there.
    pub fn contains(&self, key: &[u8]) -> bool {
        self.shard(key).contains_key(key)
    }
}
