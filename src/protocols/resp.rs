//! RESP2: a small in-memory key-value server that `redis-cli` and `redis-benchmark` speak to.
//!
//! This module owns command dispatch and the commands on data. Framing lives in `frame`
//! (check, then parse), the data in `store` (shared by every connection), the commands
//! clients send to look around (`INFO`, `HELLO`, ...) in `introspect`, and reply writers in
//! `reply`. It must not touch sockets.
//!
//! Commands: see docs/protocols.md (strings, counters, expiry, and what clients send at
//! start-up). A store with a bound ([`Resp::with_max_store`],
//! redis's `maxmemory`) refuses a `SET` or `INCR` that would take it past the bound with
//! redis's `-OOM` error; reads and `DEL` always work. Unknown commands and wrong arguments get a RESP error and the
//! client stays; broken framing gets `-ERR Protocol error: ...` and the client is closed.
//! Each `data` call runs one command, so a server model can stop between commands once a
//! connection's unsent output passes its high-water mark (a pipeline of `GET`s of a large
//! value must not turn a few KiB of input into GiB of output). The model calls again at
//! once while input remains, and output accumulates in the connection across those calls,
//! so the replies to a pipelined batch still leave in one write.
//!
//! A connection's session holds the framer, which remembers how far an unfinished command
//! has been scanned; it gives back the room of a large command once it has run, so an
//! idle connection costs a few bytes whatever it once sent.

pub(crate) mod frame;
mod introspect;
mod reply;
mod store;

use crate::{Context, Handler};

use frame::{Check, Framer, parse_i64};
pub use frame::{MAX_ARGS, MAX_BULK, MAX_INLINE};
pub use introspect::REDIS_VERSION;
use introspect::{command_command, hello, unknown_command};
use reply::{no_newlines, write_bulk, write_integer, write_parts};
pub use store::ENTRY_OVERHEAD as STORE_ENTRY_OVERHEAD;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use store::{Condition, Incr, LONGEST_TTL, SetOptions, Store};

/// A RESP2 key-value server; one value serves every connection, and they share its data.
///
/// ```no_run
/// use tcp_reactor::{protocols::Resp, Server};
///
/// // At most 1 GiB of keys and values, as redis's `maxmemory 1gb`.
/// let resp = Resp::default().with_max_store(1 << 30);
/// let running = Server::new(resp).bind("127.0.0.1:6380".parse().unwrap())?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Resp {
    /// The data, shared by all connections, workers and threads.
    store: Store,
    /// The longest bulk string a command may carry.
    max_bulk: usize,
    /// Some connection's timer sweeps expired keys (see [`SWEEP_EVERY`]).
    sweeper: AtomicBool,
    /// When the server was made (`INFO server`'s uptime).
    started: Instant,
}

impl Default for Resp {
    fn default() -> Self {
        Resp {
            store: Store::default(),
            max_bulk: MAX_BULK,
            sweeper: AtomicBool::new(false),
            started: Instant::now(),
        }
    }
}

impl Resp {
    /// A store of at most `bytes`, as redis's `maxmemory` with its default
    /// `noeviction` policy: a `SET` or `INCR` that would take the store past it gets
    /// `-OOM command not allowed when used memory > 'maxmemory'.` and changes nothing;
    /// reads, `DEL`, and writes that do not grow the store go on working. What counts:
    /// each key's length, its value's allocated capacity (its length, or up to twice it
    /// after an overwrite that reused a larger buffer), and [`STORE_ENTRY_OVERHEAD`] bytes
    /// for the key's slot in the table and its allocations' headers. `INFO memory` shows
    /// the count (`used_memory`) and the bound (`maxmemory`). Without this call the store
    /// has no bound, as redis has none by default.
    pub fn with_max_store(mut self, bytes: u64) -> Self {
        self.store = Store::bounded(bytes);
        self
    }

    /// Refuse a bulk string (a command's argument) longer than `bytes` with redis's
    /// `-ERR Protocol error: invalid bulk length`, and close, as redis does past its
    /// `proto-max-bulk-len`; [`MAX_BULK`] (8 MiB) without this call. A command is held whole
    /// in the connection's input until it runs, so the server's `Config::max_input` must
    /// let it in too (the `serve` command raises its default to match), and the server's
    /// budget (`Config::max_buffered`) counts it like any buffered input.
    pub fn with_max_bulk(mut self, bytes: usize) -> Self {
        self.max_bulk = bytes;
        self
    }

    /// Bytes the store holds, as counted against [`with_max_store`](Resp::with_max_store)
    /// (counted the same way without a bound).
    pub fn store_used(&self) -> u64 {
        self.store.used()
    }
}

/// Every command served: name, and the least and most arguments it takes (its name
/// included). `SET` takes more so that options get "syntax error", as in redis.
const COMMANDS: [(&str, usize, usize); 25] = [
    ("get", 2, 2),
    ("set", 3, usize::MAX),
    ("ping", 1, 2),
    ("incr", 2, 2),
    ("incrby", 3, 3),
    ("decr", 2, 2),
    ("decrby", 3, 3),
    ("flushdb", 1, 2),
    ("flushall", 1, 2),
    ("dbsize", 1, 1),
    ("del", 2, usize::MAX),
    ("exists", 2, usize::MAX),
    ("echo", 2, 2),
    ("select", 2, 2),
    ("command", 1, usize::MAX),
    ("config", 3, usize::MAX),
    ("quit", 1, usize::MAX),
    ("info", 1, usize::MAX),
    ("function", 2, usize::MAX),
    ("hello", 1, usize::MAX),
    ("expire", 3, 4),
    ("pexpire", 3, 4),
    ("ttl", 2, 2),
    ("pttl", 2, 2),
    ("persist", 2, 2),
];

/// Per-connection state: how far the command at the front of the input has been framed.
#[derive(Debug, Default)]
pub struct RespSession {
    /// Resumes the scan of an unfinished command where the previous read left it.
    framer: Framer,
    /// This connection's timer sweeps the store's expired keys.
    sweeps: bool,
}

/// How often the connection that holds the sweeper's job sweeps expired keys (redis's
/// `hz 10`), and how soon again when a sweep left keys due.
pub const SWEEP_EVERY: Duration = Duration::from_millis(100);

/// How soon the sweeper runs again when its last run left keys due.
const SWEEP_AGAIN: Duration = Duration::from_millis(1);

/// Deadlines one sweep looks at, at most: the bound on a timer callback's work.
pub const SWEEP_BUDGET: usize = 200;

/// Whether the client stays after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    /// Read the next command.
    Continue,
    /// `QUIT`: close once the reply is sent.
    Quit,
}

/// The arguments of one command, as slices of its frame.
#[derive(Debug, Clone, Copy)]
pub(super) struct Args<'a> {
    /// The whole command's bytes.
    frame: &'a [u8],
    /// Where each argument lies in `frame`; never empty.
    spans: &'a [(usize, usize)],
}

impl<'a> Args<'a> {
    /// Argument `index` (0 is the command name); empty when out of range.
    pub(super) fn get(&self, index: usize) -> &'a [u8] {
        self.spans
            .get(index)
            .map_or(&[][..], |&(start, end)| &self.frame[start..end])
    }

    /// Number of arguments, the command name included.
    pub(super) fn len(&self) -> usize {
        self.spans.len()
    }

    /// Every argument after the command name.
    pub(super) fn rest(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let frame = self.frame;
        self.spans[1..]
            .iter()
            .map(move |&(start, end)| &frame[start..end])
    }
}

impl Handler for Resp {
    type Session = RespSession;

    fn open(&self, _ctx: &mut Context<'_>) -> RespSession {
        RespSession {
            framer: Framer::with_max_bulk(self.max_bulk),
            sweeps: false,
        }
    }

    /// The sweeper's turn: remove up to [`SWEEP_BUDGET`] expired keys, then re-arm (sooner
    /// if keys are still due), or give the job up once no key has a deadline.
    fn timer(&self, session: &mut RespSession, ctx: &mut Context<'_>) {
        if !session.sweeps {
            return;
        }
        let (_, more) = self.store.sweep(ctx.now(), SWEEP_BUDGET);
        if more {
            ctx.set_timer(SWEEP_AGAIN);
        } else if self.store.has_deadlines() {
            ctx.set_timer(SWEEP_EVERY);
        } else {
            session.sweeps = false;
            self.sweeper.store(false, Ordering::Release);
            // A deadline set meanwhile by a connection that saw the job taken.
            if self.store.has_deadlines() {
                self.take_sweep(session, ctx);
            }
        }
    }

    /// The sweeper's connection is gone: the job is free for the next command to take.
    fn close(&self, session: RespSession, _id: crate::ConnId, _reason: crate::CloseReason) {
        if session.sweeps {
            self.sweeper.store(false, Ordering::Release);
        }
    }

    /// Runs the command at the front of `input`, if it is whole; returns its length.
    fn data(&self, session: &mut RespSession, ctx: &mut Context<'_>, input: &[u8]) -> usize {
        let framer = &mut session.framer;
        let len = match framer.check(input) {
            Check::Complete(len) => len,
            Check::Incomplete => return 0,
            Check::Error(err) => {
                framer.finish();
                return protocol_error(ctx, err, input.len());
            }
        };
        // An empty inline line or `*0` has nothing to run, as in redis.
        if !framer.args().is_empty() {
            let args = Args {
                frame: framer.frame(&input[..len]),
                spans: framer.args(),
            };
            if self.run(ctx, args) == After::Quit {
                ctx.close();
            }
        }
        framer.finish();
        if !session.sweeps && self.store.has_deadlines() {
            self.take_sweep(session, ctx);
        }
        len
    }

    /// redis's own words for a full server.
    fn busy_reply(&self) -> &[u8] {
        BUSY
    }
}

/// Sent to a client refused because the server is full, before it is closed.
pub const BUSY: &[u8] = b"-ERR max number of clients reached\r\n";

/// redis's reply to a write refused because the store is at its bound.
pub const OOM: &[u8] = b"-OOM command not allowed when used memory > 'maxmemory'.\r\n";

/// `millis` (positive) after `now`, at most [`LONGEST_TTL`] ahead.
fn deadline(now: Instant, millis: i64) -> Instant {
    let ahead = Duration::from_millis(millis.unsigned_abs()).min(LONGEST_TTL);
    now + ahead
}

/// redis's reply to an argument, or a value, that should be an integer and is not.
const NOT_INTEGER: &[u8] = b"-ERR value is not an integer or out of range\r\n";

/// Reply with a protocol error and close; everything buffered is dropped.
fn protocol_error(ctx: &mut Context<'_>, err: frame::ProtocolError, buffered: usize) -> usize {
    err.write_reply(&mut |bytes| ctx.write(bytes));
    ctx.close();
    buffered
}

impl Resp {
    /// Take the sweeper's job for this connection if no connection holds it.
    fn take_sweep(&self, session: &mut RespSession, ctx: &mut Context<'_>) {
        let free = self
            .sweeper
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok();
        if free {
            session.sweeps = true;
            ctx.set_timer(SWEEP_EVERY);
        }
    }

    /// Run one command and queue its reply.
    fn run(&self, ctx: &mut Context<'_>, args: Args<'_>) -> After {
        let name = args.get(0);
        let Some(&(command, least, most)) = COMMANDS
            .iter()
            .find(|(command, _, _)| name.eq_ignore_ascii_case(command.as_bytes()))
        else {
            unknown_command(ctx, args);
            return After::Continue;
        };
        if !(least..=most).contains(&args.len()) {
            // redis names the command as it declares it: lower case.
            write_parts(
                ctx,
                &[
                    b"-ERR wrong number of arguments for '",
                    command.as_bytes(),
                    b"' command\r\n",
                ],
            );
            return After::Continue;
        }
        self.run_known(ctx, args, command)
    }

    /// Run `command` (a name from [`COMMANDS`]), whose argument count is right.
    fn run_known(&self, ctx: &mut Context<'_>, args: Args<'_>, command: &str) -> After {
        match command {
            "get" => self.store.get(args.get(1), ctx.now(), |value| match value {
                Some(value) => write_bulk(ctx, value),
                None => ctx.write(b"$-1\r\n"),
            }),
            "set" => self.set(ctx, args),
            "expire" | "pexpire" => self.expire(ctx, args, command == "expire"),
            "ttl" | "pttl" => {
                let reply = match self.store.ttl(args.get(1), ctx.now()) {
                    None => -2,
                    Some(None) => -1,
                    // redis rounds a TTL in seconds to the nearest second.
                    Some(Some(left)) if command == "ttl" => {
                        ((left.as_millis() + 500) / 1000) as i64
                    }
                    Some(Some(left)) => left.as_millis() as i64,
                };
                write_integer(ctx, b':', reply);
            }
            "persist" => {
                let done = self.store.persist(args.get(1), ctx.now());
                write_integer(ctx, b':', i64::from(done));
            }
            "ping" if args.len() == 1 => ctx.write(b"+PONG\r\n"),
            "ping" | "echo" => write_bulk(ctx, args.get(1)),
            "incr" => self.incr(ctx, args.get(1), 1),
            "decr" => self.incr(ctx, args.get(1), -1),
            "incrby" | "decrby" => match parse_i64(args.get(2)) {
                None => ctx.write(NOT_INTEGER),
                Some(delta) if command == "incrby" => self.incr(ctx, args.get(1), delta),
                // redis's own words: the negation of i64::MIN does not exist.
                Some(i64::MIN) => ctx.write(b"-ERR decrement would overflow\r\n"),
                Some(delta) => self.incr(ctx, args.get(1), -delta),
            },
            "flushdb" | "flushall" => {
                let mode = args.get(1);
                if args.len() == 2
                    && !mode.eq_ignore_ascii_case(b"sync")
                    && !mode.eq_ignore_ascii_case(b"async")
                {
                    ctx.write(b"-ERR syntax error\r\n");
                } else {
                    self.store.clear();
                    ctx.write(b"+OK\r\n");
                }
            }
            "dbsize" => write_integer(ctx, b':', self.store.len() as i64),
            "del" => {
                let now = ctx.now();
                let removed = args
                    .rest()
                    .filter(|key| self.store.remove(key, now))
                    .count();
                write_integer(ctx, b':', removed as i64);
            }
            "exists" => {
                let now = ctx.now();
                let found = args
                    .rest()
                    .filter(|key| self.store.contains(key, now))
                    .count();
                write_integer(ctx, b':', found as i64);
            }
            // As redis: the index must be an integer in C `int` range; there is one
            // database, 0.
            "select" => match parse_i64(args.get(1)) {
                Some(0) => ctx.write(b"+OK\r\n"),
                Some(index) if i32::try_from(index).is_ok() => {
                    ctx.write(b"-ERR DB index is out of range\r\n");
                }
                _ => ctx.write(NOT_INTEGER),
            },
            // redis-cli asks for command docs at start-up; it copes with having none.
            "command" => command_command(ctx, args),
            "hello" => hello(ctx, args),
            // No functions are ever loaded: FLUSH has nothing to do (redis's test harness
            // sends it before each file).
            "function"
                if args.get(1).eq_ignore_ascii_case(b"flush")
                    && (args.len() == 2
                        || (args.len() == 3
                            && (args.get(2).eq_ignore_ascii_case(b"sync")
                                || args.get(2).eq_ignore_ascii_case(b"async")))) =>
            {
                ctx.write(b"+OK\r\n");
            }
            "function" => write_parts(
                ctx,
                &[
                    b"-ERR unknown subcommand '",
                    &no_newlines(args.get(1).iter().copied().take(128).collect()),
                    b"'. Try FUNCTION HELP.\r\n",
                ],
            ),
            "config" => self.config(ctx, args),
            "info" => self.info(ctx, args),
            // QUIT.
            _ => {
                ctx.write(b"+OK\r\n");
                return After::Quit;
            }
        }
        After::Continue
    }

    /// `INCR`, `DECR`, `INCRBY`, `DECRBY`: add `delta` to an integer value (a missing key
    /// counts as 0).
    fn incr(&self, ctx: &mut Context<'_>, key: &[u8], delta: i64) {
        match self.store.incr_by(key, delta, ctx.now()) {
            Ok(next) => write_integer(ctx, b':', next),
            Err(Incr::NotInteger) => ctx.write(NOT_INTEGER),
            Err(Incr::Overflow) => ctx.write(b"-ERR increment or decrement would overflow\r\n"),
            Err(Incr::Full) => ctx.write(OOM),
        }
    }

    /// `SET key value [NX|XX] [GET] [EX s|PX ms|EXAT unix-s|PXAT unix-ms|KEEPTTL]`, its
    /// options parsed and refused as redis 7.0 parses them.
    fn set(&self, ctx: &mut Context<'_>, args: Args<'_>) {
        let mut options = SetOptions::default();
        let mut get = false;
        // The expiry's argument, whether it is in seconds, and whether it is a Unix time.
        let mut expiry: Option<(&[u8], bool, bool)> = None;
        let mut at = 3;
        while at < args.len() {
            let option = args.get(at);
            let is = |name: &[u8]| option.eq_ignore_ascii_case(name);
            let has_next = at + 1 < args.len();
            if is(b"nx") && options.condition != Condition::Present {
                options.condition = Condition::Absent;
            } else if is(b"xx") && options.condition != Condition::Absent {
                options.condition = Condition::Present;
            } else if is(b"get") {
                get = true;
                options.get = true;
            } else if is(b"keepttl") && expiry.is_none() {
                options.keep_ttl = true;
            } else if let Some(kind) = [
                (&b"ex"[..], true, false),
                (b"px", false, false),
                (b"exat", true, true),
                (b"pxat", false, true),
            ]
            .into_iter()
            .find(|(name, _, _)| is(name))
            .filter(|&(_, seconds, absolute)| {
                // One kind of expiry, maybe repeated (the last counts), as in redis.
                !options.keep_ttl
                    && has_next
                    && expiry.is_none_or(|(_, s, a)| (s, a) == (seconds, absolute))
            }) {
                at += 1;
                expiry = Some((args.get(at), kind.1, kind.2));
            } else {
                ctx.write(b"-ERR syntax error\r\n");
                return;
            }
            at += 1;
        }
        let now = ctx.now();
        if let Some((text, seconds, absolute)) = expiry {
            let Some(amount) = parse_i64(text) else {
                ctx.write(NOT_INTEGER);
                return;
            };
            let millis = match seconds {
                true => amount.checked_mul(1000),
                false => Some(amount),
            };
            match millis {
                Some(millis) if millis > 0 && absolute => {
                    // A Unix time: how far ahead of the wall clock (a past one expires
                    // the key at once).
                    let wall = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |since| since.as_millis() as i64);
                    let ahead = millis.saturating_sub(wall);
                    options.expires = Some(if ahead > 0 { deadline(now, ahead) } else { now });
                }
                Some(millis) if millis > 0 => {
                    options.expires = Some(deadline(now, millis));
                }
                _ => {
                    ctx.write(b"-ERR invalid expire time in 'set' command\r\n");
                    return;
                }
            }
        }
        let mut old_reply = Vec::new();
        let written = self
            .store
            .set_with(args.get(1), args.get(2), now, options, |old| {
                if get {
                    match old {
                        Some(value) => {
                            old_reply.extend_from_slice(format!("${}\r\n", value.len()).as_bytes());
                            old_reply.extend_from_slice(value);
                            old_reply.extend_from_slice(b"\r\n");
                        }
                        None => old_reply.extend_from_slice(b"$-1\r\n"),
                    }
                }
            });
        match written {
            Err(store::Full) => ctx.write(OOM),
            Ok(_) if get => ctx.write(&old_reply),
            Ok(true) => ctx.write(b"+OK\r\n"),
            Ok(false) => ctx.write(b"$-1\r\n"),
        }
    }

    /// `EXPIRE key seconds [NX|XX|GT|LT]`, `PEXPIRE key ms [...]`: 1 if the key's expiry
    /// was set (a time not in the future deletes it), 0 if the key is absent or the
    /// option refused it.
    fn expire(&self, ctx: &mut Context<'_>, args: Args<'_>, seconds: bool) {
        let name = if seconds { "expire" } else { "pexpire" };
        #[derive(PartialEq)]
        enum Only {
            Any,
            Nx,
            Xx,
            Gt,
            Lt,
        }
        let only = match args.get(3) {
            [] => Only::Any,
            flag if flag.eq_ignore_ascii_case(b"nx") => Only::Nx,
            flag if flag.eq_ignore_ascii_case(b"xx") => Only::Xx,
            flag if flag.eq_ignore_ascii_case(b"gt") => Only::Gt,
            flag if flag.eq_ignore_ascii_case(b"lt") => Only::Lt,
            flag => {
                write_parts(
                    ctx,
                    &[
                        b"-ERR Unsupported option ",
                        &no_newlines(flag.to_vec()),
                        b"\r\n",
                    ],
                );
                return;
            }
        };
        let Some(amount) = parse_i64(args.get(2)) else {
            ctx.write(NOT_INTEGER);
            return;
        };
        let Some(millis) = (if seconds {
            amount.checked_mul(1000)
        } else {
            Some(amount)
        }) else {
            write_parts(
                ctx,
                &[
                    b"-ERR invalid expire time in '",
                    name.as_bytes(),
                    b"' command\r\n",
                ],
            );
            return;
        };
        let now = ctx.now();
        let when = if millis <= 0 {
            now
        } else {
            deadline(now, millis)
        };
        let allow = |current: Option<Instant>| match only {
            Only::Any => true,
            Only::Nx => current.is_none(),
            Only::Xx => current.is_some(),
            Only::Gt => current.is_some_and(|at| when > at),
            Only::Lt => current.is_none_or(|at| when < at),
        };
        let done = self.store.expire(args.get(1), now, when, allow);
        write_integer(ctx, b':', i64::from(done == Some(true)));
    }
}

#[cfg(test)]
mod tests;
