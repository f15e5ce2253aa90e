//! The server-wide budget for buffered bytes: what every connection holds in its buffers
//! (input kept for a partial frame, output not yet sent), summed over all connections of
//! all workers, and the decisions taken as the sum approaches `Config::max_buffered`.
//!
//! Each connection's caps bound it alone; this bounds their sum, so no crowd of clients can
//! make the process run out of memory. Decisions here are over plain numbers (no socket,
//! no `mio`): both models apply them to their own connections.
//!
//! The accounting is one shared atomic, updated only when a connection's buffer
//! *capacity* changes (a buffer grows, or is released once drained), never per byte or per
//! message: a connection whose input is consumed and output sent at once holds nothing and
//! never touches it. Capacity, not length, is counted because capacity is what the
//! allocator handed out.
//!
//! When the budget chooses whom to close, output queued on a connection by another
//! connection's callback (a chat line fanned out to the room) counts against the sender,
//! not the receiver: each sender has a [`Charge`], and each receiver records which runs of
//! its output belong to which charge ([`Foreign`]). Closing a flooder stops the growth at
//! its source, as IRC servers close a client for "Excess Flood"; closing the members its
//! lines wait for would free memory the flooder fills again at once.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// `Config::max_buffered` by default: 256 MiB. With the process's own code, stacks and
/// allocator slack, a default server stays within a few hundred MiB whatever its clients
/// do.
pub(crate) const DEFAULT_MAX_BUFFERED: usize = 256 * 1024 * 1024;

/// A connection holding at most this many bytes is still read while the budget is under
/// pressure: that is a client sending ordinary requests, which must go on being served.
pub(crate) const SMALL_HOLDER: usize = 64 * 1024;

/// A connection holding at most this many bytes is read even at the budget: what an idle
/// connection keeps between requests (buffers are released above it once drained).
pub(crate) const TINY_HOLDER: usize = 16 * 1024;

/// How long pressure may last with reads paused before the connections holding the most
/// are closed: a partial frame that cannot grow will never complete, so waiting longer
/// only keeps its memory from everyone else.
pub(crate) const GRACE: Duration = Duration::from_millis(250);

/// How pressed the budget is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Pressure {
    /// Below three quarters of the budget: nothing to do.
    Calm,
    /// From three quarters of the budget: connections holding more than [`SMALL_HOLDER`]
    /// (under the reactor, counting what they queued on others) are not read (their
    /// buffers stop growing); everyone else is served.
    Pause,
    /// At the budget: only connections holding at most [`TINY_HOLDER`] are read, and each
    /// worker closes
    /// its connections holding the most until the sum falls to half the budget.
    Evict,
}

/// The server-wide sum of buffered bytes and its limit, shared by every worker.
#[derive(Debug)]
pub(crate) struct Budget {
    /// Bytes held in connection buffers right now, all workers together.
    held: AtomicU64,
    /// `Config::max_buffered`.
    limit: u64,
    /// Connections have been closed for the budget since it was last calm (logged once).
    episode: AtomicBool,
    /// Per reactor worker, as of its last look under pressure: bytes it holds that are
    /// leaving anyway (see [`Blame`]), which no worker need close anyone for.
    leaving: Box<[AtomicU64]>,
}

impl Default for Budget {
    fn default() -> Self {
        Budget::new(DEFAULT_MAX_BUFFERED, 1)
    }
}

impl Budget {
    /// A budget of `limit` bytes for `workers` workers, none held.
    pub(crate) fn new(limit: usize, workers: usize) -> Self {
        Budget {
            held: AtomicU64::new(0),
            limit: limit as u64,
            episode: AtomicBool::new(false),
            leaving: (0..workers.max(1)).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Record what `worker` holds that is leaving anyway.
    pub(crate) fn set_leaving(&self, worker: usize, bytes: u64) {
        if let Some(slot) = self.leaving.get(worker) {
            slot.store(bytes, Ordering::Relaxed);
        }
    }

    /// Bytes held that are leaving anyway, all workers together.
    pub(crate) fn leaving(&self) -> u64 {
        self.leaving
            .iter()
            .map(|slot| slot.load(Ordering::Relaxed))
            .sum()
    }

    /// Bytes held right now.
    #[inline]
    pub(crate) fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    /// The limit, `Config::max_buffered`.
    pub(crate) fn limit(&self) -> u64 {
        self.limit
    }

    /// How pressed the budget is right now. Seeing it calm ends an episode of closes.
    #[inline]
    pub(crate) fn pressure(&self) -> Pressure {
        let pressure = pressure(self.held(), self.limit);
        if pressure == Pressure::Calm && self.episode.load(Ordering::Relaxed) {
            self.episode.store(false, Ordering::Relaxed);
        }
        pressure
    }

    /// A connection is being closed for the budget: true if that begins an episode (so it
    /// is the one to log).
    pub(crate) fn starts_episode(&self) -> bool {
        !self.episode.swap(true, Ordering::Relaxed)
    }

    /// Record that one connection now holds `now` bytes, having held `*accounted`: one
    /// atomic operation, and only when the figure changed.
    #[inline]
    pub(crate) fn update(&self, accounted: &mut usize, now: usize) {
        if now == *accounted {
            return;
        }
        if now > *accounted {
            self.held
                .fetch_add((now - *accounted) as u64, Ordering::Relaxed);
        } else {
            self.held
                .fetch_sub((*accounted - now) as u64, Ordering::Relaxed);
        }
        *accounted = now;
    }
}

/// The pressure of `held` bytes against a budget of `limit`.
#[inline]
pub(crate) fn pressure(held: u64, limit: u64) -> Pressure {
    if held >= limit {
        Pressure::Evict
    } else if held >= limit / 4 * 3 {
        Pressure::Pause
    } else {
        Pressure::Calm
    }
}

/// Whether a connection holding `holding` bytes may be read under `pressure`.
#[inline]
pub(crate) fn may_read(pressure: Pressure, holding: usize) -> bool {
    match pressure {
        Pressure::Calm => true,
        Pressure::Pause => holding <= SMALL_HOLDER,
        Pressure::Evict => holding <= TINY_HOLDER,
    }
}

/// Bytes one of `workers` workers must free when the server holds `held` of `limit`: its
/// share of bringing the sum down to half the budget, so that one episode of closes makes
/// room for a while instead of one connection at a time.
pub(crate) fn share_to_free(held: u64, limit: u64, workers: usize) -> u64 {
    held.saturating_sub(limit / 2)
        .div_ceil(workers.max(1) as u64)
}

/// From `holders` (a connection and the bytes it is to blame for), the ones to close to
/// free at least `want` bytes, those to blame for the most first. Connections to blame for
/// at most [`TINY_HOLDER`] (what an idle connection keeps) are never chosen: closing them
/// frees next to nothing, so the memory must lie elsewhere (with another worker's
/// connections, or in output already leaving).
pub(crate) fn victims<K: Copy>(holders: &mut [(K, usize)], want: u64) -> Vec<K> {
    holders.sort_unstable_by_key(|&(_, holding)| std::cmp::Reverse(holding));
    let mut freed = 0u64;
    let mut chosen = Vec::new();
    for &(key, holding) in holders.iter() {
        if freed >= want || holding <= TINY_HOLDER {
            break;
        }
        freed += holding as u64;
        chosen.push(key);
    }
    chosen
}

/// What one connection's callbacks queued on other connections that is not written yet:
/// the bytes that count against it, not against their receivers, when the budget chooses
/// whom to close. Shared by the sender and every receiver holding such bytes, on any worker.
#[derive(Debug)]
pub(crate) struct Charge {
    /// Bytes queued on other connections and not yet written (or dropped).
    queued: AtomicU64,
    /// The sender is gone: closing it can no longer stop what it queued.
    gone: AtomicBool,
    /// The worker that owns the sender (only that worker can close it).
    worker: usize,
}

impl Charge {
    /// Count `bytes` more queued on a receiver.
    #[inline]
    pub(crate) fn add(&self, bytes: u64) {
        if bytes > 0 {
            self.queued.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// Count `bytes` written (or dropped) by a receiver. Saturating, so that no order of
    /// updates between workers can wrap the figure.
    fn credit(&self, bytes: u64) {
        let _ = self
            .queued
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |queued| {
                Some(queued.saturating_sub(bytes))
            });
    }

    /// Bytes queued on receivers and not yet written.
    pub(crate) fn queued(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }

    /// True once the sender is gone.
    pub(crate) fn is_gone(&self) -> bool {
        self.gone.load(Ordering::Relaxed)
    }

    /// The worker that owns the sender.
    pub(crate) fn worker(&self) -> usize {
        self.worker
    }
}

/// A connection's own [`Charge`], made when it first sends to another connection (most
/// connections never do, and never allocate one); dropping it marks the charge gone.
#[derive(Debug, Default)]
pub(crate) struct Sender(Option<Arc<Charge>>);

impl Sender {
    /// The charge, made on first use for a sender owned by `worker`.
    pub(crate) fn charge(&mut self, worker: usize) -> &Arc<Charge> {
        self.0.get_or_insert_with(|| {
            Arc::new(Charge {
                queued: AtomicU64::new(0),
                gone: AtomicBool::new(false),
                worker,
            })
        })
    }

    /// The charge, if this connection ever sent to another.
    pub(crate) fn get(&self) -> Option<&Arc<Charge>> {
        self.0.as_ref()
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        if let Some(charge) = &self.0 {
            charge.gone.store(true, Ordering::Relaxed);
        }
    }
}

/// One run of a receiver's output queued by one sender: output stream positions
/// `start..end` (counted from the connection's first byte of output, so they survive the
/// buffer being compacted), less what has been credited already.
#[derive(Debug)]
struct Run {
    /// The sender's charge.
    charge: Arc<Charge>,
    /// First byte of the run not yet written.
    start: u64,
    /// One past its last byte.
    end: u64,
}

/// The runs of a connection's unsent output that other connections queued, oldest first.
/// Consecutive bytes from one sender form one run, so a flood from one sender is one entry
/// however many messages it holds. Dropping it credits every run (the bytes are gone).
///
/// A connection nobody sends to holds a null pointer here; the rest is allocated with the
/// first foreign bytes and kept for the connection's life (so a chat member does not
/// allocate per line).
#[derive(Debug, Default)]
pub(crate) struct Foreign(Option<Box<Received>>);

/// What [`Foreign`] records once a connection has received from others.
#[derive(Debug)]
struct Received {
    /// Oldest first.
    runs: VecDeque<Run>,
    /// When foreign bytes last left this connection, or arrived while none were queued:
    /// tells a receiver that takes its output from one that does not.
    drained_at: Instant,
    /// The kernel's last word on how much of the output the peer has taken: a socket's
    /// send buffer can hold megabytes, and a peer emptying it raises no event until a third
    /// of it is free, so nothing leaves this buffer meanwhile.
    watch: Option<Watch>,
}

/// One look at what a connection's peer has taken, asked of the kernel.
#[derive(Debug, Clone, Copy)]
struct Watch {
    /// When the kernel was asked.
    at: Instant,
    /// Bytes the peer had taken of everything written.
    taken: u64,
    /// Whether that was more than the look before (or the first look).
    taking: bool,
}

/// Runs kept allocated once every run is written.
const KEEP_RUNS: usize = 64;

impl Foreign {
    /// Record `len` bytes queued by `charge`'s sender at output position `start`.
    #[inline]
    pub(crate) fn push(&mut self, charge: &Arc<Charge>, start: u64, len: usize, now: Instant) {
        let end = start + len as u64;
        let received = self.0.get_or_insert_with(|| {
            Box::new(Received {
                runs: VecDeque::new(),
                drained_at: now,
                watch: None,
            })
        });
        if let Some(last) = received.runs.back_mut()
            && last.end == start
            && Arc::ptr_eq(&last.charge, charge)
        {
            last.end = end;
            return;
        }
        if received.runs.is_empty() {
            received.drained_at = now;
        }
        received.runs.push_back(Run {
            charge: Arc::clone(charge),
            start,
            end,
        });
    }

    /// The output up to position `written` has been written: credit the runs it covers.
    #[inline]
    pub(crate) fn settle(&mut self, written: u64, now: Instant) {
        let Some(received) = self.0.as_deref_mut() else {
            return;
        };
        match received.runs.front() {
            Some(front) if front.start < written => {}
            _ => return,
        }
        received.drained_at = now;
        received.watch = None;
        while let Some(run) = received.runs.front_mut() {
            let upto = run.end.min(written);
            if upto > run.start {
                run.charge.credit(upto - run.start);
                run.start = upto;
            }
            if run.start < run.end {
                break;
            }
            received.runs.pop_front();
        }
        if received.runs.is_empty() && received.runs.capacity() > KEEP_RUNS {
            received.runs = VecDeque::new();
        }
    }

    /// Memory the record itself takes, for the budget.
    #[inline]
    pub(crate) fn memory(&self) -> usize {
        self.0.as_ref().map_or(0, |received| {
            std::mem::size_of::<Received>() + received.runs.capacity() * std::mem::size_of::<Run>()
        })
    }

    /// True if no output is from other connections.
    pub(crate) fn is_empty(&self) -> bool {
        self.0
            .as_ref()
            .is_none_or(|received| received.runs.is_empty())
    }

    /// True if some of the output is from a sender that is gone.
    pub(crate) fn has_orphans(&self) -> bool {
        self.runs().any(|(charge, _)| charge.is_gone())
    }

    /// Whether the connection's peer takes its output: foreign bytes left the buffer
    /// within the grace period, or `taken` (what the peer has taken of everything written,
    /// asked of the kernel at most once per grace period) grew since it was last asked.
    /// The first answer has nothing to compare with: the peer gets the benefit of the
    /// doubt until the next.
    pub(crate) fn taken_lately(
        &mut self,
        now: Instant,
        taken: impl FnOnce() -> Option<u64>,
    ) -> bool {
        let Some(received) = self.0.as_deref_mut() else {
            return true;
        };
        if now < received.drained_at + GRACE {
            return true;
        }
        if let Some(watch) = received.watch
            && now < watch.at + GRACE
        {
            return watch.taking;
        }
        // A socket that cannot say is taken at its word: nothing.
        let taken = taken().unwrap_or(0);
        let taking = received.watch.is_none_or(|before| taken > before.taken);
        received.watch = Some(Watch {
            at: now,
            taken,
            taking,
        });
        taking
    }

    /// Each run's charge and unwritten bytes, oldest first.
    pub(crate) fn runs(&self) -> impl Iterator<Item = (&Arc<Charge>, u64)> {
        self.0
            .iter()
            .flat_map(|received| received.runs.iter())
            .map(|run| (&run.charge, run.end - run.start))
    }
}

impl Drop for Foreign {
    fn drop(&mut self) {
        for (charge, bytes) in self.runs() {
            charge.credit(bytes);
        }
    }
}

/// Whom one worker's connections' holdings count against, for the choice of whom to close.
///
/// A receiver's output capacity is shared among its unsent bytes in proportion: the part
/// holding another connection's bytes counts against that sender while it lives. Once the
/// sender is gone its bytes are leaving anyway while the receiver takes its output, and
/// count against the receiver if it does not.
#[derive(Debug, Default)]
pub(crate) struct Blame {
    /// Per charge of a sender of this worker (by address): the capacity its bytes take on
    /// this worker's receivers, and the bytes themselves.
    local: HashMap<usize, (u64, u64)>,
    /// Bytes leaving anyway: queued by senders that are gone, on receivers that take
    /// their output.
    pub(crate) leaving: u64,
    /// Bytes queued by live senders of other workers (those workers close them).
    pub(crate) elsewhere: u64,
}

impl Blame {
    /// The part of a receiver's `holding` that counts against itself; the rest is filed
    /// under its senders, `leaving` or `elsewhere`. `capacity` and `pending`: its output buffer's
    /// capacity and unsent bytes; `draining`: it has taken output lately.
    pub(crate) fn receiver(
        &mut self,
        holding: usize,
        foreign: &Foreign,
        capacity: usize,
        pending: usize,
        draining: bool,
        worker: usize,
    ) -> u64 {
        let mut others = 0u64;
        for (charge, bytes) in foreign.runs() {
            // The capacity these bytes take: their share of the unsent output.
            let taken = (u128::from(bytes) * capacity as u128 / pending.max(1) as u128) as u64;
            if charge.is_gone() {
                if draining {
                    self.leaving += taken;
                    others += taken;
                }
            } else if charge.worker() == worker {
                let entry = self.local.entry(Arc::as_ptr(charge) as usize).or_default();
                entry.0 += taken;
                entry.1 += bytes;
                others += taken;
            } else {
                self.elsewhere += taken;
                others += taken;
            }
        }
        (holding as u64).saturating_sub(others)
    }

    /// What a sender of this worker is to blame for beyond its own buffers: the capacity
    /// its bytes take on this worker's receivers, plus its bytes on other workers'.
    pub(crate) fn sender(&self, charge: &Arc<Charge>) -> u64 {
        let (taken, bytes) = self
            .local
            .get(&(Arc::as_ptr(charge) as usize))
            .copied()
            .unwrap_or_default();
        taken + charge.queued().saturating_sub(bytes)
    }
}

#[cfg(test)]
mod tests;
