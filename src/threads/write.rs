//! Writing to a threads-model socket: the [`Gate`] that makes the writers of one socket
//! take turns, and the blocking write loop with its [`Patience`].
//!
//! Owns every `write` of the threads model and the classification of its results. It must
//! not read from a socket or call a handler.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::io::stream::BlockingStream;
use crate::rules::is_timeout;

/// A turn-taking lock for writers of one socket, with a deadline for waiting.
///
/// (`std::sync::Mutex` cannot time out; a sender must not wait forever on a receiver
/// whose own thread is stuck writing to a client that does not read.)
#[derive(Debug, Default)]
pub(super) struct Gate {
    /// Who holds and who waits for the turn.
    state: Mutex<GateState>,
    /// Signalled when a writer leaves and another waits.
    freed: Condvar,
}

/// The state behind a [`Gate`].
#[derive(Debug, Default)]
struct GateState {
    /// True while some thread is writing.
    busy: bool,
    /// Threads waiting for their turn. Without any, leaving skips the wake-up, which is a
    /// system call even when nobody waits: the owner's writes stay one syscall each.
    waiting: u32,
}

/// A turn at writing; the next writer may enter when it is dropped.
#[derive(Debug)]
pub(super) struct Turn<'a>(&'a Gate);

impl Gate {
    /// The state. Nothing can panic while it is locked, so a poisoned lock is still sound.
    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keep writers out until [`open`](Gate::open): a connect is under way.
    pub(super) fn close(&self) {
        self.lock().busy = true;
    }

    /// Let writers in after a connect (see `Peer::connecting`).
    pub(super) fn open(&self) {
        self.lock().busy = false;
        self.freed.notify_all();
    }

    /// Wait for the turn to write, until `deadline` if given.
    pub(super) fn enter(&self, deadline: Option<Instant>) -> Option<Turn<'_>> {
        let mut state = self.lock();
        while state.busy {
            let left = match deadline {
                None => None,
                Some(deadline) => Some(deadline.checked_duration_since(Instant::now())?),
            };
            state.waiting += 1;
            state = match left {
                None => self
                    .freed
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(left) => {
                    let waited = self.freed.wait_timeout(state, left);
                    waited.unwrap_or_else(PoisonError::into_inner).0
                }
            };
            state.waiting -= 1;
        }
        state.busy = true;
        Some(Turn(self))
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.busy = false;
        if state.waiting > 0 {
            self.0.freed.notify_one();
        }
    }
}

/// A send timeout may end this much early (the kernel counts it in clock ticks): a stall
/// this close to a bound has reached it.
const STALL_SLACK: Duration = Duration::from_millis(10);

/// How long a writer keeps trying while the peer takes nothing. Each `write` blocks at
/// most the socket's send timeout (`linger`, or the idle timeout if shorter); the bounds
/// are checked each time it passes.
#[derive(Debug, Clone, Copy)]
pub(super) enum Patience<'a> {
    /// The owner of an open connection (see [`Open`]).
    WhileRunning(Open<'a>),
    /// A connection that is closing: until it goes this long without progress (`linger`,
    /// as in the reactor; zero gives up at the first send timeout).
    NoStall(Duration),
    /// A sender of a message: until this instant.
    Until(Instant),
}

/// How long the owner of an open connection keeps writing while its peer takes nothing:
/// as long as the server runs (this is backpressure: the client thread reads nothing more
/// until its client takes the reply, as the reactor stops reading above its high-water
/// mark), but not past the idle timeout counted from the connection's last progress (a
/// client that takes nothing is idle, as in the reactor), nor, once the peer has finished
/// sending, past `linger` without progress (the linger bound of a half-closed connection).
#[derive(Debug, Clone, Copy)]
pub(super) struct Open<'a> {
    /// Raised when the server stops.
    pub(super) stop: &'a AtomicBool,
    /// `Config::idle_timeout`.
    pub(super) idle: Option<Duration>,
    /// `Config::linger`.
    pub(super) linger: Duration,
    /// The connection's last progress before this write.
    pub(super) since: Instant,
}

impl Patience<'_> {
    /// Why to give up, if the writer must, after a send timeout with nothing written; the
    /// peer last took bytes at `progress` (unknown for a patience that does not need it).
    fn gives_up(&self, stream: &BlockingStream, progress: Option<Instant>) -> Option<WriteError> {
        let now = Instant::now();
        let stalled = |bound: Duration| {
            let since = progress.unwrap_or(now);
            now.saturating_duration_since(since) + STALL_SLACK >= bound
        };
        let give_up = match *self {
            Patience::WhileRunning(open) => {
                if open.idle.is_some_and(stalled) {
                    return Some(WriteError::Idle);
                }
                open.stop.load(Ordering::Relaxed)
                    || (stalled(open.linger) && peer_finished_sending(stream))
            }
            Patience::NoStall(bound) => stalled(bound),
            Patience::Until(deadline) => now >= deadline,
        };
        give_up.then_some(WriteError::Stalled)
    }
}

/// Why a write did not complete.
#[derive(Debug)]
pub(super) enum WriteError {
    /// The peer took nothing for longer than the writer's patience.
    Stalled,
    /// The owner's peer took nothing for the idle timeout.
    Idle,
    /// More output would wait for the peer than `Config::max_output` (before its TLS
    /// handshake completes; never without TLS).
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    OverCap,
    /// The connection failed.
    Failed(io::Error),
}

/// Write all of `data`, counting written bytes into `written`. Every write result is
/// classified here.
pub(super) fn write_all(
    stream: &BlockingStream,
    mut data: &[u8],
    patience: Patience<'_>,
    written: &mut u64,
) -> Result<(), WriteError> {
    // When the peer last took bytes, where a patience counts stalls. The clock is read
    // again only after a write the socket did not take whole: never on the common path.
    let mut progress = match patience {
        Patience::WhileRunning(open) => Some(open.since),
        Patience::NoStall(_) => Some(Instant::now()),
        Patience::Until(_) => None,
    };
    while !data.is_empty() {
        match (&*stream).write(data) {
            // The socket accepts no more bytes: the connection is unusable.
            Ok(0) => return Err(WriteError::Failed(io::ErrorKind::WriteZero.into())),
            Ok(n) => {
                *written += n as u64;
                data = &data[n..];
                if !data.is_empty() && progress.is_some() {
                    progress = Some(Instant::now());
                }
            }
            // A signal interrupted the call before anything was written: try again.
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            // The send timeout passed with nothing written: the peer is not reading.
            Err(err) if is_timeout(&err) => {
                if let Some(give_up) = patience.gives_up(stream, progress) {
                    return Err(give_up);
                }
            }
            Err(err) => return Err(WriteError::Failed(err)),
        }
    }
    Ok(())
}

/// True if the peer has shut down its sending side (or the connection is gone), without
/// reading: `poll` for `POLLRDHUP` with a zero timeout. Unread input before the EOF does
/// not hide it, as a read would.
fn peer_finished_sending(stream: &BlockingStream) -> bool {
    use std::os::fd::AsRawFd;
    let found = crate::io::sys::poll_one(stream.as_raw_fd(), libc::POLLRDHUP, 0);
    matches!(found, Ok(revents) if revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0)
}
