//! A listening socket that breaks under a running server: the error is the listener's, not
//! a client's, so both models stop that worker as a graceful stop would (its clients get
//! EOF, not a reset) and report the error from `Running::wait`, instead of retrying an
//! accept that can never succeed.

use std::net::SocketAddr;
use std::os::fd::BorrowedFd;
use std::time::Duration;

use fixtures::client::{connect, expect_eof, expect_reply, send};
use fixtures::for_each_model;
use fixtures::server::serve;
use socket2::SockRef;
use tcp_reactor::protocols::Echo;
use tcp_reactor::{Config, Model};

for_each_model!(a_broken_listener_stops_its_worker_and_reports_the_error);

/// Shut down the listening socket bound to `addr` in this process, as an outside failure
/// would break it: `accept` on it then fails with `EINVAL`. Returns false if none was found.
fn break_listener(addr: SocketAddr) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return false;
    };
    for entry in entries.flatten() {
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        // SAFETY: the descriptor was open when listed and is only borrowed for the calls
        // below; at worst another thread closes it meanwhile and a call fails with EBADF.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let socket = SockRef::from(&fd);
        let bound = socket.local_addr().ok().and_then(|a| a.as_socket());
        if bound == Some(addr) && socket.is_listener().unwrap_or(false) {
            return socket.shutdown(std::net::Shutdown::Both).is_ok();
        }
    }
    false
}

fn a_broken_listener_stops_its_worker_and_reports_the_error(model: Model) {
    let config = Config::default().with_linger(Duration::from_millis(500));
    let running = serve(Echo, config, model);
    let addr = running.local_addr();
    let mut client = connect(addr);
    send(&mut client, b"before\n");
    expect_reply(&mut client, b"before\n");
    assert!(
        break_listener(addr),
        "{model:?}: the listener was not found"
    );
    // The worker closes its client as a stop does: EOF, no reset.
    expect_eof(&mut client);
    let outcome = running.wait();
    let err = outcome.expect_err("the worker reports the broken listener");
    assert_eq!(err.raw_os_error(), Some(libc::EINVAL), "{model:?}: {err}");
}
