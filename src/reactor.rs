//! The event loop. (Being written.)

use std::io;

use crate::Handler;
use crate::server::{Prepared, WorkerSetup};

/// Per-worker mailboxes for messages between reactors.
#[derive(Debug, Default)]
pub(crate) struct Mailboxes;

impl Mailboxes {
    pub(crate) fn new(_workers: usize) -> Self {
        Mailboxes
    }
}

/// Build a reactor worker.
pub(crate) fn prepare<H: Handler>(_setup: WorkerSetup<H>) -> io::Result<Prepared> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "reactor not built yet"))
}
