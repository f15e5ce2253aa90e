//! The budget's decisions over plain numbers, and the charges and runs of foreign output.

use super::*;

#[test]
fn pressure_rises_in_steps() {
    assert_eq!(pressure(0, 1000), Pressure::Calm);
    assert_eq!(pressure(749, 1000), Pressure::Calm);
    assert_eq!(pressure(750, 1000), Pressure::Pause);
    assert_eq!(pressure(999, 1000), Pressure::Pause);
    assert_eq!(pressure(1000, 1000), Pressure::Evict);
}

#[test]
fn a_small_holder_is_read_until_the_budget_is_reached() {
    assert!(may_read(Pressure::Pause, SMALL_HOLDER));
    assert!(!may_read(Pressure::Pause, SMALL_HOLDER + 1));
    assert!(may_read(Pressure::Evict, TINY_HOLDER));
    assert!(!may_read(Pressure::Evict, TINY_HOLDER + 1));
}

#[test]
fn the_largest_are_chosen_until_enough_is_freed_and_the_tiny_never() {
    const K: usize = TINY_HOLDER;
    let mut holders = [(1, K + 10), (2, K + 500), (3, 0), (4, K + 300), (5, K)];
    assert_eq!(victims(&mut holders, 2 * K as u64 + 600), vec![2, 4]);
    assert_eq!(victims(&mut holders, 100 * K as u64), vec![2, 4, 1]);
    assert!(victims(&mut holders, 0).is_empty());
    assert!(victims(&mut holders[..0], 10).is_empty());
}

#[test]
fn each_worker_frees_its_share_down_to_half_the_budget() {
    assert_eq!(share_to_free(1000, 1000, 2), 250);
    assert_eq!(share_to_free(400, 1000, 1), 0);
}

#[test]
fn accounting_touches_the_sum_only_on_change() {
    let budget = Budget::new(1000, 1);
    let mut a = 0;
    let mut b = 0;
    budget.update(&mut a, 300);
    budget.update(&mut b, 200);
    budget.update(&mut a, 100);
    assert_eq!(budget.held(), 300);
    budget.update(&mut a, 0);
    budget.update(&mut b, 0);
    assert_eq!(budget.held(), 0);
}

/// A sender's charge with `bytes` queued on a receiver at position `start` of `into`.
fn queue(sender: &mut Sender, into: &mut Foreign, start: u64, bytes: usize, now: Instant) {
    let charge = sender.charge(0);
    into.push(charge, start, bytes, now);
    charge.add(bytes as u64);
}

#[test]
fn bytes_count_against_their_sender_until_written() {
    let now = Instant::now();
    let (mut a, mut b) = (Sender::default(), Sender::default());
    let mut receiver = Foreign::default();
    // 100 bytes from a, 50 of the receiver's own, then 30 + 20 from b (one run).
    queue(&mut a, &mut receiver, 0, 100, now);
    queue(&mut b, &mut receiver, 150, 30, now);
    queue(&mut b, &mut receiver, 180, 20, now);
    assert_eq!(receiver.runs().count(), 2);
    receiver.settle(60, now);
    assert_eq!(a.get().map(|c| c.queued()), Some(40));
    receiver.settle(160, now);
    assert_eq!(a.get().map(|c| c.queued()), Some(0));
    assert_eq!(b.get().map(|c| c.queued()), Some(40));
    // The receiver closes: what it still held no longer counts against anyone.
    drop(receiver);
    assert_eq!(b.get().map(|c| c.queued()), Some(0));
}

#[test]
fn a_closed_sender_leaves_orphans() {
    let now = Instant::now();
    let mut sender = Sender::default();
    let mut receiver = Foreign::default();
    queue(&mut sender, &mut receiver, 0, 10, now);
    assert!(!receiver.has_orphans());
    drop(sender);
    assert!(receiver.has_orphans());
}

#[test]
fn a_receivers_capacity_is_shared_among_its_senders() {
    let now = Instant::now();
    let (mut local, mut remote) = (Sender::default(), Sender::default());
    let mut receiver = Foreign::default();
    // 400 unsent bytes in a buffer of 800: 200 from a sender of this worker, 100 from
    // one of worker 1, 100 of its own.
    queue(&mut local, &mut receiver, 0, 200, now);
    remote.0 = Some(Arc::new(Charge {
        queued: AtomicU64::new(0),
        gone: AtomicBool::new(false),
        worker: 1,
    }));
    queue(&mut remote, &mut receiver, 200, 100, now);
    let mut blame = Blame::default();
    let own = blame.receiver(1000, &receiver, 800, 400, true, 0);
    assert_eq!(own, 1000 - 400 - 200);
    assert_eq!((blame.leaving, blame.elsewhere), (0, 200));
    let charge = local.get().expect("a charge");
    assert_eq!(blame.sender(charge), 400);
}

#[test]
fn orphans_count_against_a_receiver_only_if_it_takes_nothing() {
    let now = Instant::now();
    let mut sender = Sender::default();
    let mut receiver = Foreign::default();
    queue(&mut sender, &mut receiver, 0, 100, now);
    drop(sender);
    let mut taking = Blame::default();
    assert_eq!(taking.receiver(300, &receiver, 200, 100, true, 0), 100);
    assert_eq!((taking.leaving, taking.elsewhere), (200, 0));
    let mut stuck = Blame::default();
    assert_eq!(stuck.receiver(300, &receiver, 200, 100, false, 0), 300);
    assert_eq!(stuck.leaving, 0);
}

#[test]
fn a_receiver_takes_output_while_its_peer_acknowledges_more() {
    let start = Instant::now();
    let mut sender = Sender::default();
    let mut receiver = Foreign::default();
    queue(&mut sender, &mut receiver, 0, 100, start);
    // Bytes just arrived: within the grace period, nothing is asked.
    assert!(receiver.taken_lately(start, || panic!("asked the kernel")));
    // Then the kernel is asked; a first answer earns another grace period.
    let later = start + GRACE;
    assert!(receiver.taken_lately(later, || Some(1000)));
    assert!(receiver.taken_lately(later + GRACE / 2, || panic!("asked too often")));
    // Progress keeps it taking; none over a grace period ends that, until progress.
    assert!(receiver.taken_lately(later + GRACE, || Some(1500)));
    assert!(!receiver.taken_lately(later + GRACE * 2, || Some(1500)));
    assert!(!receiver.taken_lately(later + GRACE * 2, || panic!("asked too often")));
    assert!(receiver.taken_lately(later + GRACE * 3, || Some(1600)));
    // Foreign bytes leaving the buffer count as taking, whatever the kernel said.
    receiver.settle(50, later + GRACE * 4);
    assert!(receiver.taken_lately(later + GRACE * 4, || panic!("asked the kernel")));
}
