//! The `tcp-reactor` command line: parses arguments and calls the library.

#![forbid(unsafe_code)]

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use tcp_reactor::{Config, ConfigError, Handler, Model, Server, WritePolicy, client, protocols};

mod observe;

mod deploy;

use deploy::{Deploy, Inherited};

/// A single-threaded, event-driven TCP server core (mio + slab), with a
/// thread-per-client model for comparison.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a server until SIGINT or SIGTERM, then print its stats. SIGUSR2 upgrades it in
    /// place: a new copy of the executable takes over the listening sockets.
    Serve(Box<ServeArgs>),
    /// The tutorial's client: send one message and print the reply.
    Client(ClientArgs),
    /// Load any echo server with many connections; verify every byte, measure latency.
    Load(tcp_reactor::load::LoadArgs),
}

/// Which protocol `serve` speaks.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum ProtocolName {
    /// Every byte back.
    Echo,
    /// The tutorial's server: log each message, reply `hahaha`, close.
    Seed,
    /// Line chat: each line goes to every other client, prefixed with the sender's id.
    Chat,
    /// HTTP/1.1: `Hello, world!` to every request, keep-alive and pipelining.
    Http,
    /// RESP2: an in-memory key-value store for redis-cli and redis-benchmark.
    Resp,
    /// A TCP (layer 4) proxy to the `--upstream` servers, round-robin.
    Proxy,
}

/// Which concurrency model `serve` uses.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum ModelName {
    /// One thread, one mio Poll, a slab of connections (per worker).
    Reactor,
    /// One blocking OS thread per client.
    Threads,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Protocol to serve.
    #[arg(long, value_enum, default_value = "echo")]
    protocol: ProtocolName,
    /// Concurrency model.
    #[arg(long, value_enum, default_value = "reactor")]
    model: ModelName,
    /// Address to listen on (IPv4 or IPv6, e.g. [::1]:8866), or unix:PATH for a Unix
    /// socket; repeat for several. Ignored when LISTEN_FDS/LISTEN_PID hand this process
    /// its listening sockets (systemd socket activation, or a binary upgrade).
    #[arg(long, default_value = "127.0.0.1:8866")]
    addr: Vec<String>,
    /// Permissions of Unix socket files, in octal (e.g. 660).
    #[arg(long, value_parser = deploy::parse_mode)]
    unix_mode: Option<u32>,
    /// Write the server's pid here (atomically); a process started by SIGUSR2 rewrites it.
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// After an upgrade, seconds the old process keeps serving its connections before it
    /// closes the rest gracefully.
    #[arg(long, default_value_t = 10.0)]
    drain_timeout: f64,
    /// On SIGINT or SIGTERM, first drain for up to this many seconds: /healthz answers
    /// 503 and the server keeps serving (http closes each keep-alive connection after
    /// its next reply) until no connection is open; then it stops. A second signal stops
    /// at once. 0 (the default) stops at once.
    #[arg(long, default_value_t = 0.0)]
    stop_drain: f64,
    /// Independent workers, one thread each; on a TCP address each accepts from a
    /// `SO_REUSEPORT` socket of its own.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Most clients served at once; more are refused.
    #[arg(long, default_value_t = Config::default().max_connections)]
    max_connections: usize,
    /// Close clients that make no progress for this many seconds (0: never). Default: 75
    /// for http (a keep-alive connection waiting for its next request, as nginx); 0 for
    /// resp and chat, whose clients idle by design (pooled connections, listening members)
    /// and whose memory the buffer budget bounds; 0 for echo and seed.
    #[arg(long)]
    idle_timeout: Option<f64>,
    /// http: seconds a request head may take once its first byte arrived (then 408 and
    /// close; 0: no limit).
    #[arg(long, default_value_t = protocols::HTTP_HEADER_TIMEOUT.as_secs_f64())]
    header_timeout: f64,
    /// Most bytes all clients together may hold in buffers (partial input, unsent
    /// output). Near it reads pause, then the clients holding the most are closed.
    #[arg(long, default_value_t = Config::default().max_buffered)]
    max_buffered: usize,
    /// resp: most bytes the store may hold, as redis's maxmemory (each key's length, its
    /// value's allocated size, and a fixed overhead per key; INFO memory shows the count).
    /// A SET or INCR that would pass it gets redis's -OOM error; reads, DEL and writes that
    /// do not grow the store go on working. Default: none, as redis (0 also means none).
    #[arg(long, value_name = "BYTES")]
    max_store: Option<u64>,
    /// resp: longest bulk string (command argument) accepted, as redis's
    /// proto-max-bulk-len; a longer one gets redis's protocol error and the client is
    /// closed.
    #[arg(long, value_name = "BYTES", default_value_t = protocols::RESP_MAX_BULK)]
    max_bulk: usize,
    /// Log a one-line summary every this many seconds (0: never).
    #[arg(long, default_value_t = 0.0)]
    stats_interval: f64,
    /// Serve Prometheus metrics at http://ADDR/metrics and the live page of the loop at
    /// http://ADDR/ (its own listener and thread).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// Start the loop paused: each POST to /step on the --metrics listener (the live
    /// page's "Next turn") runs one turn; /run and /pause. Reactor model only.
    #[arg(long, requires = "metrics")]
    step: bool,
    /// Seconds a closing client may take to receive its last output.
    #[arg(long, default_value_t = Config::default().linger.as_secs_f64())]
    linger: f64,
    /// Cap on a client's unconsumed input, in bytes [default: 1048576; resp: max-bulk
    /// plus 64 KiB, so that a command carrying the longest bulk fits].
    #[arg(long)]
    max_input: Option<usize>,
    /// Cap on a client's unsent output, in bytes.
    #[arg(long, default_value_t = Config::default().max_output)]
    max_output: usize,
    /// Stop reading from a client above this much unsent output, in bytes.
    #[arg(long, default_value_t = Config::default().high_water)]
    high_water: usize,
    /// Resume reading once unsent output drops to this, in bytes.
    #[arg(long, default_value_t = Config::default().low_water)]
    low_water: usize,
    /// Most bytes read from one client per turn of the loop.
    #[arg(long, default_value_t = Config::default().read_budget)]
    read_budget: usize,
    /// Most clients accepted per turn of the loop.
    #[arg(long, default_value_t = Config::default().accept_budget)]
    accept_budget: usize,
    /// Where `--protocol proxy` forwards clients (repeatable: round-robin).
    #[arg(long)]
    upstream: Vec<SocketAddr>,
    /// How long `--protocol proxy` skips an upstream that failed to connect, in seconds.
    #[arg(long, default_value_t = protocols::PROXY_DEFAULT_RETRY.as_secs_f64())]
    upstream_retry: f64,
    /// How long a connect to an upstream may take, in seconds.
    #[arg(long, default_value_t = Config::default().connect_timeout.as_secs_f64())]
    connect_timeout: f64,
    /// Seconds a TLS client may take to complete its handshake, and a trusted balancer
    /// to send its PROXY header.
    #[arg(long, default_value_t = Config::default().handshake_timeout.as_secs_f64())]
    handshake_timeout: f64,
    /// Trust this address block (a.b.c.d/n, x::y/n, or one address) to begin each
    /// connection with a PROXY protocol header (v1 or v2), whose client address then
    /// replaces the peer's; repeatable. Other sources are not parsed.
    #[arg(long, value_name = "CIDR")]
    proxy_protocol_from: Vec<tcp_reactor::proxy_header::Cidr>,
    /// proxy: begin each upstream connection with a PROXY protocol header naming the
    /// client, as HAProxy's `send-proxy` (v1) and `send-proxy-v2` (v2) do.
    #[arg(long, value_enum, value_name = "VERSION")]
    send_proxy: Option<tcp_reactor::proxy_header::SendProxy>,
    /// Most connections at once from one client address (after PROXY); more are refused
    /// as by a full server.
    #[arg(long, value_name = "N")]
    max_per_address: Option<usize>,
    /// IPv6 clients count for --max-per-address by this many leading bits.
    #[arg(long, default_value_t = Config::default().per_address_v6_prefix, value_parser = clap::value_parser!(u8).range(0..=128))]
    per_address_v6_prefix: u8,
    /// Serve TLS with this PEM certificate chain (leaf first); needs --tls-key.
    #[cfg(feature = "tls")]
    #[arg(long, requires = "tls_key", value_name = "CERT.pem")]
    tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key (PKCS#8, SEC1 or RSA) of --tls-cert.
    #[cfg(feature = "tls")]
    #[arg(long, requires = "tls_cert", value_name = "KEY.pem")]
    tls_key: Option<std::path::PathBuf>,
    /// When the reactor writes replies [default: as Config::default()].
    #[arg(long, value_enum)]
    write_policy: Option<WritePolicyName>,
    /// With --write-policy adaptive: fewest readiness events in a turn for its replies to
    /// wait for the end of the turn.
    #[arg(long, default_value_t = 2)]
    defer_min_events: usize,
}

/// When the reactor writes replies (`--write-policy`).
#[derive(Debug, Clone, Copy, ValueEnum)]
enum WritePolicyName {
    /// As soon as each callback returns.
    Eager,
    /// Once the turn's readiness events are handled, before the next poll.
    EndOfTurn,
    /// End of turn when the poll returned at least --defer-min-events events, else eager.
    Adaptive,
}

#[derive(Debug, Args)]
struct ClientArgs {
    /// Server: HOST:PORT (an IP address or a host name, e.g. localhost:8866) or
    /// unix:PATH; asked for on stdin when missing.
    #[arg(long)]
    addr: Option<client::Target>,
    /// Message to send; asked for on stdin when missing. An empty message sends nothing:
    /// the client shuts down its sending side (the server reads EOF) and prints what the
    /// server sends before it closes.
    #[arg(long)]
    message: Option<String>,
    /// Speak TLS, verifying the server's certificate (for the host name given, `localhost`
    /// on a loopback address or a Unix socket, else the address's IP).
    #[cfg(feature = "tls")]
    #[arg(long)]
    tls: bool,
    /// Trust the certificates in this PEM file instead of the system's roots.
    #[cfg(feature = "tls")]
    #[arg(long, requires = "tls", value_name = "CA.pem")]
    ca: Option<std::path::PathBuf>,
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|err| err.exit());
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let result = match cli.command {
        Command::Serve(args) => {
            let given = |id: &str| given(matches.subcommand_matches("serve"), id);
            // First thing `serve` does, while the process has a single thread.
            match Inherited::take() {
                Ok(inherited) => check_scope(&args, given).and_then(|()| serve(&args, inherited)),
                Err(err) => Err(err),
            }
        }
        Command::Client(args) => run_client(args),
        Command::Load(args) => return tcp_reactor::load::run_cli(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("tcp-reactor: error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// True if the flag `id` was given on the command line (not taken from its default).
fn given(matches: Option<&ArgMatches>, id: &str) -> bool {
    matches.and_then(|m| m.value_source(id)) == Some(ValueSource::CommandLine)
}

/// Refuse a flag given with a protocol, model or other flag that does not use it: it
/// would be silently ignored. `given(id)` tells whether the flag `id` was given.
fn check_scope(args: &ServeArgs, given: impl Fn(&str) -> bool) -> io::Result<()> {
    let proxy = matches!(args.protocol, ProtocolName::Proxy);
    let http = matches!(args.protocol, ProtocolName::Http);
    let resp = matches!(args.protocol, ProtocolName::Resp);
    let reactor = matches!(args.model, ModelName::Reactor);
    let adaptive = matches!(args.write_policy, Some(WritePolicyName::Adaptive));
    #[cfg(feature = "tls")]
    let tls = args.tls_cert.is_some();
    #[cfg(not(feature = "tls"))]
    let tls = false;
    let unix = args.addr.iter().any(|addr| addr.starts_with("unix:"));
    let protocol = value_name(args.protocol);
    let rules: [(&str, &str, bool, String); 13] = [
        (
            "send_proxy",
            "--send-proxy",
            proxy,
            format!("--protocol proxy (not {protocol})"),
        ),
        (
            "upstream",
            "--upstream",
            proxy,
            format!("--protocol proxy (not {protocol})"),
        ),
        (
            "upstream_retry",
            "--upstream-retry",
            proxy,
            format!("--protocol proxy (not {protocol})"),
        ),
        (
            "connect_timeout",
            "--connect-timeout",
            proxy,
            format!("--protocol proxy, the one that connects out (not {protocol})"),
        ),
        (
            "header_timeout",
            "--header-timeout",
            http,
            format!("--protocol http (not {protocol})"),
        ),
        (
            "max_store",
            "--max-store",
            resp,
            format!("--protocol resp (not {protocol})"),
        ),
        (
            "max_bulk",
            "--max-bulk",
            resp,
            format!("--protocol resp (not {protocol})"),
        ),
        (
            "write_policy",
            "--write-policy",
            reactor,
            "--model reactor (the threads model writes each reply at once)".into(),
        ),
        (
            "defer_min_events",
            "--defer-min-events",
            reactor && adaptive,
            "--model reactor and --write-policy adaptive".into(),
        ),
        (
            "accept_budget",
            "--accept-budget",
            reactor,
            "--model reactor (the threads model accepts on a thread of its own)".into(),
        ),
        (
            "handshake_timeout",
            "--handshake-timeout",
            tls,
            "--tls-cert and --tls-key".into(),
        ),
        (
            "step",
            "--step",
            reactor,
            "--model reactor (the threads model has no turns to step)".into(),
        ),
        (
            "unix_mode",
            "--unix-mode",
            unix,
            "an --addr unix:PATH".into(),
        ),
    ];
    for (id, flag, used, by) in rules {
        if given(id) && !used {
            return Err(invalid(format!("{flag} is only used with {by}")));
        }
    }
    Ok(())
}

/// `serve`: pick the protocol, then run it.
fn serve(args: &ServeArgs, inherited: Inherited) -> io::Result<()> {
    let config = config_from(args)?;
    // Set as a stop or an upgrade begins: /healthz answers 503, http closes keep-alives.
    let draining = tcp_reactor::Draining::new();
    let i = inherited;
    match args.protocol {
        ProtocolName::Echo => serve_with(protocols::Echo, config, args, i, &draining),
        ProtocolName::Seed => serve_with(protocols::Seed, config, args, i, &draining),
        ProtocolName::Chat => serve_with(protocols::Chat::new(), config, args, i, &draining),
        ProtocolName::Http => {
            let header = Duration::try_from_secs_f64(args.header_timeout)
                .map_err(|_| invalid("--header-timeout must be a non-negative number".into()))?;
            let http = protocols::Http::default()
                .with_header_timeout((!header.is_zero()).then_some(header))
                .with_draining(draining.clone());
            serve_with(http, config, args, i, &draining)
        }
        ProtocolName::Resp => {
            let resp = protocols::Resp::default().with_max_bulk(args.max_bulk);
            let resp = match args.max_store {
                None | Some(0) => resp,
                Some(bytes) => resp.with_max_store(bytes),
            };
            serve_with(resp, config, args, i, &draining)
        }
        ProtocolName::Proxy => {
            if args.upstream.is_empty() {
                return Err(invalid(
                    "--protocol proxy needs at least one --upstream".into(),
                ));
            }
            let retry = Duration::try_from_secs_f64(args.upstream_retry)
                .map_err(|_| invalid("--upstream-retry must be a number of seconds".into()))?;
            let mut proxy = protocols::Proxy::new(args.upstream.clone(), retry);
            if let Some(version) = args.send_proxy {
                // The destination the header names: the address clients connect to.
                let local = args
                    .addr
                    .iter()
                    .find_map(|addr| addr.parse::<std::net::SocketAddr>().ok())
                    .unwrap_or_else(|| std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
                proxy = proxy.with_send_proxy(version, local);
            }
            serve_with(proxy, config, args, i, &draining)
        }
    }
}

/// The deployment flags, checked.
fn deploy_from(args: &ServeArgs) -> io::Result<Deploy> {
    let drain_timeout = Duration::try_from_secs_f64(args.drain_timeout)
        .map_err(|_| invalid("--drain-timeout must be a non-negative number of seconds".into()))?;
    let stop_drain = Duration::try_from_secs_f64(args.stop_drain)
        .map_err(|_| invalid("--stop-drain must be a non-negative number of seconds".into()))?;
    Ok(Deploy {
        addrs: args.addr.clone(),
        unix_mode: args.unix_mode,
        pid_file: args.pid_file.clone(),
        drain_timeout,
        stop_drain,
    })
}

/// Turn the limit flags into a [`Config`]; the library judges whether it makes sense
/// ([`Config::validate`], called by `bind`).
fn config_from(args: &ServeArgs) -> io::Result<Config> {
    let seconds = |value: f64, flag: &str| {
        Duration::try_from_secs_f64(value)
            .map_err(|_| invalid(format!("--{flag} must be a non-negative number of seconds")))
    };
    let idle_default = match args.protocol {
        ProtocolName::Http => protocols::HTTP_KEEPALIVE_TIMEOUT.as_secs_f64(),
        ProtocolName::Echo
        | ProtocolName::Seed
        | ProtocolName::Chat
        | ProtocolName::Resp
        | ProtocolName::Proxy => 0.0,
    };
    let idle = seconds(args.idle_timeout.unwrap_or(idle_default), "idle-timeout")?;
    Ok(Config::default()
        .with_max_connections(args.max_connections)
        .with_accept_budget(args.accept_budget)
        .with_read_budget(args.read_budget)
        .with_high_water(args.high_water)
        .with_low_water(args.low_water)
        .with_max_input(args.max_input.unwrap_or(match args.protocol {
            ProtocolName::Resp => args.max_bulk.saturating_add(64 * 1024),
            _ => Config::default().max_input,
        }))
        .with_max_output(args.max_output)
        // On the command line 0 means "never", the library's `None`.
        .with_idle_timeout((!idle.is_zero()).then_some(idle))
        .with_linger(seconds(args.linger, "linger")?)
        .with_connect_timeout(seconds(args.connect_timeout, "connect-timeout")?)
        .with_handshake_timeout(seconds(args.handshake_timeout, "handshake-timeout")?)
        .with_write_policy(match args.write_policy {
            None => Config::default().write_policy,
            Some(WritePolicyName::Eager) => WritePolicy::Eager,
            Some(WritePolicyName::EndOfTurn) => WritePolicy::EndOfTurn,
            Some(WritePolicyName::Adaptive) => WritePolicy::Adaptive {
                min_events: args.defer_min_events,
            },
        })
        .with_max_buffered(args.max_buffered)
        .with_proxy_protocol_from(args.proxy_protocol_from.iter().copied())
        .with_max_per_address(args.max_per_address)
        .with_per_address_v6_prefix(args.per_address_v6_prefix))
}

/// Install the signal handlers, bind, serve until stopped, print the stats.
fn serve_with<H: Handler>(
    handler: H,
    config: Config,
    args: &ServeArgs,
    mut inherited: Inherited,
    draining: &tcp_reactor::Draining,
) -> io::Result<()> {
    let model = match args.model {
        ModelName::Reactor => Model::Reactor,
        ModelName::Threads => Model::Threads,
    };
    let deploy = deploy_from(args)?;
    let signals = deploy::signals()
        .map_err(|err| io::Error::other(format!("cannot install signal handlers: {err}")))?;
    let listeners = deploy::listeners(&deploy, &mut inherited)?;
    let server = Server::new(handler)
        .config(config)
        .model(model)
        .workers(args.workers)
        .draining(draining.clone());
    let server = if args.step { server.step() } else { server };
    #[cfg(feature = "tls")]
    let server = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            // HTTP clients choose the protocol by ALPN; the others speak their own.
            let alpn: &[&[u8]] = match args.protocol {
                ProtocolName::Http => &[b"http/1.1"],
                _ => &[],
            };
            server.tls(tcp_reactor::tls_config::server_from_pem(cert, key, alpn)?)
        }
        _ => server,
    };
    let running = server
        .listen(listeners)
        .map_err(|err| match ConfigError::of(&err) {
            // Printed as it is: it names the field (`low_water` is `--low-water`).
            Some(_) => err,
            None => {
                let addrs = args.addr.join(", ");
                io::Error::new(err.kind(), format!("cannot listen on {addrs}: {err}"))
            }
        })?;
    let addrs: Vec<String> = running
        .listen_addrs()
        .iter()
        .map(|a| a.to_string())
        .collect();
    inherited.log_upgrade_path();
    println!(
        "tcp-reactor listening on {} (protocol {}, model {}, {} worker{})",
        addrs.join(" "),
        value_name(args.protocol),
        value_name(args.model),
        args.workers,
        if args.workers == 1 { "" } else { "s" }
    );
    let observers = observe::start(
        &running,
        args.stats_interval,
        args.metrics,
        inherited.metrics.take(),
    )?;
    let stats = deploy::run(
        running,
        signals,
        &deploy,
        inherited,
        observers.metrics_socket(),
    )?;
    drop(observers);
    println!("tcp-reactor stopped\n{stats}");
    Ok(())
}

/// `client`: prompt for what is missing, exchange one message, print the reply.
fn run_client(args: ClientArgs) -> io::Result<()> {
    let stdin = io::stdin();
    let mut input = stdin.lock();
    let mut output = io::stdout();
    let target = match args.addr {
        Some(target) => target,
        None => client::prompt_addr(&mut input, &mut output)?,
    };
    let message = match args.message {
        Some(message) => message,
        None => client::prompt_message(&mut input, &mut output)?,
    };
    #[cfg(feature = "tls")]
    let reply = if args.tls {
        let config = tcp_reactor::tls_config::client_from_pem(args.ca.as_deref())?;
        client::exchange_tls(&target, &target.tls_name(), config, message.as_bytes())?
    } else {
        client::exchange(&target, message.as_bytes())?
    };
    #[cfg(not(feature = "tls"))]
    let reply = client::exchange(&target, message.as_bytes())?;
    if reply.is_empty() {
        eprintln!("tcp-reactor: {target} closed the connection without a reply");
    }
    println!("{}", String::from_utf8_lossy(&reply));
    Ok(())
}

/// The command-line spelling of a value (`echo`, `reactor`).
fn value_name(value: impl ValueEnum) -> String {
    value
        .to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default()
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}
