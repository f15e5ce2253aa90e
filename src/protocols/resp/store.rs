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
        self.shards[shard_index(key)]
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
mod tests {
    use super::*;

    #[test]
    fn benchmark_style_keys_spread_over_every_shard() {
        // redis-benchmark's keys differ only in their last digits.
        let mut counts = [0usize; SHARDS];
        for n in 0..32_768 {
            counts[shard_index(format!("key:{n:012}").as_bytes())] += 1;
        }
        let fair = 32_768 / SHARDS;
        for (shard, &count) in counts.iter().enumerate() {
            assert!(
                count > fair / 2 && count < fair * 2,
                "shard {shard} holds {count} of 32768 keys: {counts:?}"
            );
        }
    }
}
