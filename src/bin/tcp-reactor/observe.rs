//! `serve`'s observers: the periodic one-line summary (`--stats-interval`) and the
//! Prometheus endpoint (`--metrics`). Both read live snapshots; neither touches a client.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::thread;
use std::time::{Duration, Instant};

use tcp_reactor::Running;
use tcp_reactor::metrics::{self, MetricsServer};

/// What keeps the observers running; dropping it stops the metrics endpoint (the summary
/// thread ends with the server).
#[derive(Debug)]
pub(crate) struct Observers {
    /// The `/metrics` endpoint, if asked for.
    _metrics: Option<MetricsServer>,
    /// A descriptor of the endpoint's listening socket, to hand to a successor.
    metrics_socket: Option<OwnedFd>,
}

impl Observers {
    /// The metrics endpoint's listening socket, if there is one.
    pub(crate) fn metrics_socket(&self) -> Option<BorrowedFd<'_>> {
        self.metrics_socket.as_ref().map(|fd| fd.as_fd())
    }
}

/// Start the observers asked for on `running`. The metrics endpoint serves `inherited`
/// (its socket, handed over by the server this one upgraded) if given, or binds
/// `metrics_addr`.
pub(crate) fn start(
    running: &Running,
    stats_interval: f64,
    metrics_addr: Option<SocketAddr>,
    inherited: Option<OwnedFd>,
) -> io::Result<Observers> {
    let interval = Duration::try_from_secs_f64(stats_interval).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "--stats-interval must be a non-negative number of seconds",
        )
    })?;
    if !interval.is_zero() {
        let live = running.live_stats();
        let stop = running.stop_handle();
        thread::Builder::new()
            .name("tcp-reactor-stats".into())
            .spawn(move || {
                let mut before = live.snapshot();
                let mut then = Instant::now();
                while !stop.is_stopping() {
                    thread::sleep(interval);
                    let now = live.snapshot();
                    let at = Instant::now();
                    log::info!("{}", metrics::summary_line(&before, &now, at - then));
                    (before, then) = (now, at);
                }
            })?;
    }
    let Some(addr) = metrics_addr else {
        return Ok(Observers {
            _metrics: None,
            metrics_socket: None,
        });
    };
    let cannot = |err: io::Error| {
        io::Error::new(err.kind(), format!("cannot serve metrics on {addr}: {err}"))
    };
    let listener = match inherited.map(inherited_listener) {
        Some(Ok(listener)) => {
            log::info!("serving metrics on the socket handed over by the previous server");
            listener
        }
        Some(Err(err)) => {
            log::warn!("ignoring the metrics socket handed over: {err}");
            metrics::bind(addr).map_err(cannot)?
        }
        None => metrics::bind(addr).map_err(cannot)?,
    };
    let metrics_socket = Some(OwnedFd::from(listener.try_clone()?));
    let endpoint = metrics::serve_listener(listener, running.live_stats()).map_err(cannot)?;
    println!("metrics at http://{}/metrics", endpoint.local_addr());
    Ok(Observers {
        _metrics: Some(endpoint),
        metrics_socket,
    })
}

/// The metrics socket a previous server handed over, checked to be a listening TCP socket.
fn inherited_listener(fd: OwnedFd) -> io::Result<TcpListener> {
    let socket = socket2::SockRef::from(&fd);
    let tcp = matches!(
        socket.domain()?,
        socket2::Domain::IPV4 | socket2::Domain::IPV6
    );
    if !tcp || socket.r#type()? != socket2::Type::STREAM || !socket.is_listener()? {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "it is not a listening TCP socket",
        ));
    }
    Ok(TcpListener::from(fd))
}
