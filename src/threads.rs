//! The thread-per-client model: std::net, one blocking OS thread per client, running the
//! same handlers as the reactor. (Being written.)

use std::io;

use crate::Handler;
use crate::server::{Prepared, WorkerSetup};

/// Messages between client threads (chat): filled in with the model.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    _placeholder: (),
}

/// Build a threads-model worker.
pub(crate) fn prepare<H: Handler>(_setup: WorkerSetup<H>) -> io::Result<Prepared> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "threads model not built yet",
    ))
}
