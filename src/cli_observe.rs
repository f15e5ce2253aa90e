//! `serve`'s observers: the periodic one-line summary (`--stats-interval`) and the
//! Prometheus endpoint (`--metrics`). Both read live snapshots; neither touches a client.

use std::io;
use std::net::SocketAddr;
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
}

/// Start the observers asked for on `running`.
pub(crate) fn start(
    running: &Running,
    stats_interval: f64,
    metrics_addr: Option<SocketAddr>,
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
    let endpoint = match metrics_addr {
        Some(addr) => {
            let endpoint = metrics::serve(addr, running.live_stats()).map_err(|err| {
                io::Error::new(err.kind(), format!("cannot serve metrics on {addr}: {err}"))
            })?;
            println!("metrics at http://{}/metrics", endpoint.local_addr());
            Some(endpoint)
        }
        None => None,
    };
    Ok(Observers { _metrics: endpoint })
}
