//! The store's own tests: shards, sizes, the bound, expiry sweeps.

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

/// The capacity of `key`'s value.
fn capacity(store: &Store, key: &[u8]) -> usize {
    store
        .shard(key)
        .0
        .map
        .get(key)
        .map_or(0, |entry| entry.value.capacity())
}

#[test]
fn an_overwrite_gives_back_a_far_larger_buffer() {
    let store = Store::default();
    store.set(b"k", &[7; 512 * 1024]).unwrap();
    assert_eq!(store.used(), 1 + 512 * 1024 + ENTRY_OVERHEAD);
    store.set(b"k", b"x").unwrap();
    assert_eq!(capacity(&store, b"k"), 1);
    assert_eq!(store.used(), 1 + 1 + ENTRY_OVERHEAD);
    store.get(b"k", Instant::now(), |value| {
        assert_eq!(value, Some(&b"x"[..]))
    });
}

#[test]
fn an_overwrite_of_a_similar_size_reuses_the_buffer() {
    let store = Store::default();
    store.set(b"k", &[1; 1000]).unwrap();
    store.set(b"k", &[2; 600]).unwrap();
    assert_eq!(capacity(&store, b"k"), 1000);
    assert_eq!(store.used(), 1 + 1000 + ENTRY_OVERHEAD);
    store.get(b"k", Instant::now(), |value| {
        assert_eq!(value, Some(&[2; 600][..]))
    });
    // Too small for the old buffer to be worth keeping: replaced.
    store.set(b"k", &[3; 400]).unwrap();
    assert_eq!(capacity(&store, b"k"), 400);
}

#[test]
fn the_size_follows_sets_incrs_and_deletes() {
    for store in [Store::default(), Store::bounded(1 << 20)] {
        store.set(b"a", b"hello").unwrap();
        assert_eq!(store.incr(b"n"), Ok(1));
        assert_eq!(store.incr(b"n"), Ok(2));
        assert_eq!(store.incr(b"a"), Err(Incr::NotInteger));
        let n_capacity = capacity(&store, b"n") as u64;
        assert_eq!(store.used(), 1 + 5 + 1 + n_capacity + 2 * ENTRY_OVERHEAD);
        assert!(store.remove(b"a", Instant::now()));
        assert!(!store.remove(b"a", Instant::now()));
        assert!(store.remove(b"n", Instant::now()));
        assert_eq!(store.used(), 0);
        assert_eq!(store.len(), 0);
    }
}

#[test]
fn a_bounded_store_refuses_only_writes_that_would_pass_the_bound() {
    let entry = 1 + 100 + ENTRY_OVERHEAD;
    let store = Store::bounded(3 * entry);
    for key in [b"a", b"b", b"c"] {
        store.set(key, &[0; 100]).unwrap();
    }
    assert_eq!(store.used(), 3 * entry);
    assert_eq!(store.set(b"d", b""), Err(Full));
    assert_eq!(store.set(b"a", &[0; 101]), Err(Full));
    assert_eq!(store.incr(b"n"), Err(Incr::Full));
    // Writes that do not grow it, and deletes, go through.
    store.set(b"a", &[1; 100]).unwrap();
    store.set(b"b", b"small").unwrap();
    assert!(store.remove(b"c", Instant::now()));
    store.set(b"d", b"fits again").unwrap();
    assert!(!store.contains(b"n", Instant::now()));
    assert!(store.used() <= 3 * entry);
}

/// `SetOptions` with a deadline.
fn expiring(at: Instant) -> SetOptions {
    SetOptions {
        expires: Some(at),
        ..SetOptions::default()
    }
}

#[test]
fn a_sweep_removes_due_keys_within_its_budget() {
    let store = Store::default();
    let now = Instant::now();
    for n in 0..500 {
        let key = format!("k{n}");
        store
            .set_with(
                key.as_bytes(),
                b"v",
                now,
                expiring(now + Duration::from_millis(1)),
                |_| (),
            )
            .unwrap();
    }
    store.set(b"stays", b"v").unwrap();
    store
        .set_with(
            b"later",
            b"v",
            now,
            expiring(now + Duration::from_secs(60)),
            |_| (),
        )
        .unwrap();
    let later = now + Duration::from_secs(1);
    let (removed, more) = store.sweep(later, 200);
    assert_eq!((removed, more), (200, true));
    assert_eq!(store.len(), 302);
    let mut runs = 1;
    while store.sweep(later, 200).1 {
        runs += 1;
        assert!(runs < 10, "the sweep never finished");
    }
    assert_eq!(store.len(), 2);
    // The key due in a minute keeps its deadline, so the sweeper's job goes on.
    assert!(store.has_deadlines());
    assert!(store.contains(b"later", later) && store.contains(b"stays", later));
    assert_eq!(used_of(&store), store.used());
}

/// The size the store's keys add up to, counted afresh.
fn used_of(store: &Store) -> u64 {
    store
        .shards
        .iter()
        .map(|shard| {
            lock(shard)
                .map
                .iter()
                .map(|(key, entry)| size(key, &entry.value))
                .sum::<u64>()
        })
        .sum()
}

#[test]
fn stale_deadlines_do_not_pile_up() {
    let store = Store::default();
    let now = Instant::now();
    assert_eq!(store.expire(b"k", now, now, |_| true), None);
    for n in 0..10_000u64 {
        let at = now + Duration::from_secs(1000 + n);
        if n > 0 {
            assert_eq!(store.expire(b"k", now, at, |_| true), Some(true));
        }
        store
            .set_with(b"k", b"v", now, expiring(at), |_| ())
            .unwrap();
    }
    let heap = lock(&store.shards[shard_index(b"k")]).deadlines.len();
    assert!(heap <= 2 + 64 + 1, "{heap} deadlines kept for one key");
    assert_eq!(store.deadlines.load(Ordering::Relaxed), heap as u64);
    assert!(store.persist(b"k", now));
    assert_eq!(store.ttl(b"k", now), Some(None));
}
