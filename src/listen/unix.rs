//! Binding a Unix socket path the way a long-running server must: a stale file left by a
//! dead server is replaced, a live server's socket is never taken, the file gets the
//! permissions asked for, and it is removed on a graceful stop — but only if it is still
//! the file this server made.
//!
//! It must not touch a path that is not a socket.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use socket2::{Domain, SockAddr, Socket, Type};

/// A socket file this server made (or took over), removed by [`remove`](SocketFile::remove)
/// when the server stops gracefully.
#[derive(Debug)]
pub(crate) struct SocketFile {
    /// The path.
    path: PathBuf,
    /// Device and inode of the file when it was bound, so that a file some other server
    /// has since put at the same path is left alone.
    identity: Option<(u64, u64)>,
}

impl SocketFile {
    /// The file now at `path` (a socket this server serves).
    pub(crate) fn existing(path: &Path) -> SocketFile {
        SocketFile {
            path: path.to_path_buf(),
            identity: identity(path),
        }
    }

    /// Remove the file if it is still the one this server bound.
    pub(crate) fn remove(&self) {
        if self.identity.is_some()
            && identity(&self.path) == self.identity
            && let Err(err) = fs::remove_file(&self.path)
        {
            log::warn!("could not remove {}: {err}", self.path.display());
        }
    }
}

/// Device and inode of the file at `path`.
fn identity(path: &Path) -> Option<(u64, u64)> {
    fs::symlink_metadata(path)
        .ok()
        .map(|meta| (meta.dev(), meta.ino()))
}

/// Bind and listen on `path`, replacing a stale socket file; set `mode` on the file.
pub(crate) fn bind(
    path: &Path,
    mode: Option<u32>,
    backlog: i32,
) -> io::Result<(UnixListener, SocketFile)> {
    let listener = match listen(path, backlog) {
        Err(err) if err.kind() == io::ErrorKind::AddrInUse => {
            clear_stale(path, err)?;
            listen(path, backlog)?
        }
        other => other?,
    };
    if let Some(bits) = mode {
        fs::set_permissions(path, fs::Permissions::from_mode(bits))?;
    }
    Ok((listener, SocketFile::existing(path)))
}

/// One attempt at bind + listen.
fn listen(path: &Path, backlog: i32) -> io::Result<UnixListener> {
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.bind(&SockAddr::unix(path)?)?;
    socket.listen(backlog)?;
    Ok(UnixListener::from(std::os::fd::OwnedFd::from(socket)))
}

/// `path` exists: remove it if it is a socket nobody accepts on; otherwise return an
/// `AddrInUse` error saying why it stays.
fn clear_stale(path: &Path, in_use: io::Error) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "address in use: {} exists and is not a socket",
                path.display()
            ),
        ));
    }
    let live = |why: &str| {
        Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("address in use: {why} {}", path.display()),
        ))
    };
    // Nonblocking: a blocking connect to a live server whose backlog is full would wait
    // until it accepts, for ever if it never does, deaf to SIGTERM, and start-up with it.
    // A Unix connect has no handshake to wait for, so the answer is immediate and no
    // deadline is needed.
    let probe = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    probe.set_nonblocking(true)?;
    match probe.connect(&SockAddr::unix(path)?) {
        // A server answers there: never steal its address.
        Ok(()) => live("a server is accepting on"),
        // A server listens there but its queue is full (Linux says EAGAIN): busy, not gone.
        Err(err)
            if err.kind() == io::ErrorKind::WouldBlock
                || err.raw_os_error() == Some(libc::EINPROGRESS) =>
        {
            live("a server is listening (its queue is full) on")
        }
        // Nobody listens: the file was left by a server that died.
        Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => {
            log::info!("replacing stale socket file {}", path.display());
            fs::remove_file(path)
        }
        Err(_) => Err(in_use),
    }
}
