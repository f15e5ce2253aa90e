//! The load generator: many client connections playing echo ping-pong against any echo
//! server, verifying every byte and measuring throughput and latency.
//!
//! Each load thread has its own `mio::Poll` and a `Vec` of nonblocking client connections,
//! so a couple of threads hold ten thousand connections. Every message carries a
//! deterministic pseudo-random pattern (per connection and sequence number), so each echoed
//! byte is checked; a wrong or missing byte is counted and reported, never ignored.
//!
//! Before measuring, every connection echoes one warm-up message (verified, not counted):
//! a connect can succeed while the server has not yet accepted it, and timing such a
//! connection would measure the listen queue, not the server.
//!
//! This module speaks raw bytes only: it must not depend on the server side of the crate,
//! so it measures any echo server the same way.
//!
//! - `pattern` — the bytes of each message.
//! - `client` — one connection: send, receive, verify.
//! - `socket` — where to connect (an address or a Unix socket path) and the socket type.
//! - `worker` — one load thread: connect ramp, start barrier, message exchange.
//! - `tally` / [`Report`] — counters and latency histogram, and the final report.
//! - [`idle`] — hold many idle connections open (to measure a server's memory per connection).

mod connection;
pub mod idle;
mod pattern;
mod report;
mod socket;
mod tally;
mod worker;

use std::io::{self, IsTerminal};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use clap::builder::RangedU64ValueParser;

use crate::tools::client::Target;

pub use report::{Errors, Latency, Report};

/// Descriptors kept free beside the connections (poll instances, stdio, a spare).
const SPARE_FDS: u64 = 32;

/// How long a connect may take after the ramp before it counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Extra time allowed after sending stops for the last echoes to come back.
const DRAIN_GRACE: Duration = Duration::from_secs(30);

/// Most bytes a connection may have in flight (`size × pipeline`): each is buffered until
/// the kernel takes it.
const MAX_IN_FLIGHT_BYTES: usize = 64 * 1024 * 1024;

/// Run without `--duration` or `--messages`: send for this long.
const DEFAULT_DURATION: f64 = 10.0;

/// Options of a load run (`tcp-reactor load ...`).
#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// Echo server to load (any echo server: only raw bytes are exchanged): HOST:PORT
    /// (an IP address or a host name) or unix:PATH.
    #[arg(long, default_value = "127.0.0.1:8866")]
    pub addr: Target,
    /// Client connections to open.
    #[arg(long, short = 'c', default_value_t = 10, value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub connections: usize,
    /// Bytes per message.
    #[arg(long, short = 's', default_value_t = 64, value_parser = RangedU64ValueParser::<usize>::new().range(1..=16 * 1024 * 1024))]
    pub size: usize,
    /// Messages in flight per connection.
    #[arg(long, short = 'p', default_value_t = 1, value_parser = RangedU64ValueParser::<usize>::new().range(1..=4096))]
    pub pipeline: usize,
    /// Send for this many seconds once every connection is up (default 10 without
    /// `--messages`).
    #[arg(long, short = 'd')]
    pub duration: Option<f64>,
    /// Send this many messages in total, split evenly over the connections.
    #[arg(long, short = 'n')]
    pub messages: Option<u64>,
    /// Open the connections evenly over this many seconds.
    #[arg(long, default_value_t = 0.0)]
    pub ramp: f64,
    /// Load threads (default: the number of cores, at most 2).
    #[arg(long, short = 't', value_parser = RangedU64ValueParser::<usize>::new().range(1..=64))]
    pub threads: Option<usize>,
    /// Stop everything after this many seconds, whatever is still in flight (default:
    /// ramp + duration + 40).
    #[arg(long)]
    pub timeout: Option<f64>,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Never show the progress bar (it is shown only when stderr is a terminal).
    #[arg(long)]
    pub quiet: bool,
    /// Speak TLS, verifying the server's certificate for the host name given, `localhost`
    /// on a loopback address or a Unix socket, else the address's IP.
    #[cfg(feature = "tls")]
    #[arg(long)]
    pub tls: bool,
    /// Trust the certificates in this PEM file instead of the system's roots.
    #[cfg(feature = "tls")]
    #[arg(long, requires = "tls", value_name = "CA.pem")]
    pub ca: Option<std::path::PathBuf>,
}

impl Default for LoadArgs {
    /// The command line's defaults.
    fn default() -> Self {
        LoadArgs {
            addr: Target::from(SocketAddr::from(([127, 0, 0, 1], 8866))),
            connections: 10,
            size: 64,
            pipeline: 1,
            duration: None,
            messages: None,
            ramp: 0.0,
            threads: None,
            timeout: None,
            json: false,
            quiet: false,
            #[cfg(feature = "tls")]
            tls: false,
            #[cfg(feature = "tls")]
            ca: None,
        }
    }
}

/// Run the load described by `args` and return what it measured.
///
/// Failures of single connections (connect failures, mismatches, early closes) are counted
/// in the [`Report`]; `Err` means the run itself could not happen (bad arguments, not
/// enough descriptors, `poll` failed).
pub fn run(args: &LoadArgs) -> io::Result<Report> {
    run_until(args, &AtomicBool::new(false))
}

/// Like [`run`], but ends early once `interrupt` becomes true (set from a signal handler
/// or another thread): every load thread stops within one poll tick (50 ms), drops its
/// connections without counting the messages still in flight as failures, and the
/// report covers what was measured until then, marked [`interrupted`](Report::interrupted).
pub fn run_until(args: &LoadArgs, interrupt: &AtomicBool) -> io::Result<Report> {
    let plan = plan(args)?;
    ensure_descriptors(plan.connections)?;
    let shared = worker::Shared {
        interrupt,
        ready: AtomicUsize::new(0),
        go: std::sync::OnceLock::new(),
        completed: Default::default(),
        connected: Default::default(),
    };
    let start = Instant::now();
    let progress = Progress::new(args);
    let results = thread::scope(|scope| {
        let handles: Vec<_> = (0..plan.threads)
            .map(|index| {
                let (plan, shared) = (&plan, &shared);
                thread::Builder::new()
                    .name(format!("load-{index}"))
                    .spawn_scoped(scope, move || worker::run(plan, index, start, shared))
            })
            .collect();
        while handles
            .iter()
            .any(|h| h.as_ref().is_ok_and(|h| !h.is_finished()))
        {
            progress.show(&shared);
            thread::sleep(Duration::from_millis(100));
        }
        handles
            .into_iter()
            .map(|h| {
                h?.join()
                    .map_err(|_| io::Error::other("a load thread panicked"))?
            })
            .collect::<Vec<_>>()
    });
    progress.finish();
    let mut total = tally::Tally::new();
    for result in results {
        total.merge(&result?);
    }
    let go = shared.go.get().copied().unwrap_or(start);
    let end = total.last_completion.unwrap_or(go);
    // With a duration that ran to its end, the rate is taken over exactly that window, so
    // the drain of the last messages in flight (up to one latency) does not dilute it.
    let rate = match plan.duration.filter(|d| end >= go + *d) {
        Some(window) => report::Rate {
            messages: total.in_window,
            over: window,
        },
        None => report::Rate {
            messages: total.completed,
            over: end.saturating_duration_since(go),
        },
    };
    let setup = report::Setup {
        addr: shown(&args.addr, &plan.endpoint),
        connections: plan.connections,
        size: plan.size,
        pipeline: plan.pipeline,
        threads: plan.threads,
    };
    let mut report = Report::new(
        setup,
        &total,
        go - start,
        end.saturating_duration_since(go),
        rate,
    );
    report.interrupted = interrupt.load(Ordering::SeqCst);
    Ok(report)
}

/// Run the load and print the report (a table, or JSON with `--json`) on stdout. Exits
/// non-zero, with a one-line reason on stderr, if the run failed or any connection had an
/// error.
///
/// SIGINT (Ctrl-C) or SIGTERM ends the run early: the report of what was measured so
/// far is printed, marked as interrupted, and the exit status is the shell's for that
/// signal (130 for SIGINT, 143 for SIGTERM). A second signal exits at once.
pub fn run_cli(args: LoadArgs) -> ExitCode {
    let interrupt = Arc::new(AtomicBool::new(false));
    let signal = Arc::new(AtomicUsize::new(0));
    if let Err(e) = on_signals(&interrupt, &signal) {
        eprintln!("load: cannot install signal handlers: {e}");
        return ExitCode::FAILURE;
    }
    let report = match run_until(&args, &interrupt) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("load: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("load: cannot write JSON: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("{}", report.table());
    }
    if report.interrupted {
        let number = signal.load(Ordering::SeqCst) as i32;
        let name = match number {
            signal_hook::consts::SIGTERM => "SIGTERM",
            _ => "SIGINT",
        };
        eprintln!(
            "load against {} interrupted by {name} after {:.2} s: the report covers what was measured until then",
            report.addr,
            report.connect_secs + report.elapsed_secs
        );
        // The shell's status for a process ended by that signal.
        return ExitCode::from(128 + number.clamp(1, 127) as u8);
    }
    match report.failure_line() {
        Some(line) => {
            eprintln!("{line}");
            ExitCode::FAILURE
        }
        None => ExitCode::SUCCESS,
    }
}

/// On SIGINT or SIGTERM: raise `interrupt` and keep the signal's number in `signal`; on a
/// second one (`interrupt` already raised), exit at once with the shell's status for it.
fn on_signals(interrupt: &Arc<AtomicBool>, signal: &Arc<AtomicUsize>) -> io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    use signal_hook::flag;
    for number in [SIGINT, SIGTERM] {
        // Registered first, so it sees the flag as it was before this signal raised it.
        flag::register_conditional_shutdown(number, 128 + number, Arc::clone(interrupt))?;
        flag::register_usize(number, Arc::clone(signal), number as usize)?;
        flag::register(number, Arc::clone(interrupt))?;
    }
    Ok(())
}

/// Check the arguments and turn them into a plan for the load threads.
fn plan(args: &LoadArgs) -> io::Result<worker::Plan> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_string());
    let secs = |x: f64, what: &str| Duration::try_from_secs_f64(x).map_err(|_| invalid(what));
    if args.connections == 0 || args.size == 0 || args.pipeline == 0 {
        return Err(invalid(
            "--connections, --size and --pipeline must be at least 1",
        ));
    }
    if args.size.saturating_mul(args.pipeline) > MAX_IN_FLIGHT_BYTES {
        return Err(invalid(
            "--size × --pipeline must stay within 64 MiB per connection",
        ));
    }
    let duration = match (args.duration, args.messages) {
        (None, None) => Some(DEFAULT_DURATION),
        (d, _) => d,
    };
    let duration = duration
        .map(|d| secs(d, "--duration must be a non-negative number of seconds"))
        .transpose()?;
    let ramp = secs(args.ramp, "--ramp must be a non-negative number of seconds")?;
    let hard_timeout = match args.timeout {
        Some(t) => secs(t, "--timeout must be a non-negative number of seconds")?,
        None => ramp + CONNECT_TIMEOUT + duration.unwrap_or(Duration::ZERO) + DRAIN_GRACE,
    };
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    let threads = args
        .threads
        .unwrap_or(cores.min(2))
        .clamp(1, args.connections);
    Ok(worker::Plan {
        endpoint: socket::Endpoint::choose(&args.addr)?,
        connections: args.connections,
        threads,
        size: args.size,
        pipeline: args.pipeline,
        messages: args.messages,
        duration,
        ramp,
        connect_timeout: CONNECT_TIMEOUT,
        hard_timeout,
        #[cfg(feature = "tls")]
        tls: tls_target(args)?,
    })
}

/// The TLS client configuration and server name of a `--tls` run.
#[cfg(feature = "tls")]
fn tls_target(args: &LoadArgs) -> io::Result<Option<worker::TlsTarget>> {
    if !args.tls {
        return Ok(None);
    }
    let config = crate::io::tls_config::client_from_pem(args.ca.as_deref())?;
    let name = rustls::pki_types::ServerName::try_from(args.addr.tls_name())
        .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))?;
    Ok(Some(worker::TlsTarget { config, name }))
}

/// The server as the report names it: as given, with the address used when a host name
/// was resolved.
fn shown(target: &Target, endpoint: &socket::Endpoint) -> String {
    match (target, endpoint) {
        (Target::Tcp { host, .. }, socket::Endpoint::Tcp(addr))
            if host.parse::<std::net::IpAddr>().is_err() =>
        {
            format!("{target} ({addr})")
        }
        _ => target.to_string(),
    }
}

/// Raise the soft descriptor limit to the hard limit, and check that `connections` fit.
pub fn ensure_descriptors(connections: usize) -> io::Result<()> {
    // Raising the soft limit up to the hard one needs no privilege.
    let limit = rlimit::increase_nofile_limit(u64::MAX)?;
    let needed = connections as u64 + SPARE_FDS;
    if needed > limit {
        return Err(io::Error::other(format!(
            "{connections} connections need about {needed} file descriptors, but this process may open only {limit}"
        )));
    }
    Ok(())
}

/// A progress line on stderr, only when stderr is a terminal.
struct Progress {
    /// The spinner, if shown.
    bar: Option<indicatif::ProgressBar>,
    /// Connections asked for.
    connections: usize,
}

impl Progress {
    /// A spinner on a terminal, nothing otherwise.
    fn new(args: &LoadArgs) -> Self {
        let bar = (!args.quiet && !args.json && io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            // The template is a constant; if indicatif ever rejected it, keep its default.
            if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {elapsed} {msg}")
            {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        Progress {
            bar,
            connections: args.connections,
        }
    }

    /// Show the counters so far.
    fn show(&self, shared: &worker::Shared<'_>) {
        if let Some(bar) = &self.bar {
            let connected = shared.connected.load(std::sync::atomic::Ordering::Relaxed);
            let done = shared.completed.load(std::sync::atomic::Ordering::Relaxed);
            bar.set_message(format!(
                "{connected}/{} connected, {done} messages echoed",
                self.connections
            ));
        }
    }

    /// Remove the spinner.
    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
