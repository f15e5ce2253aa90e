//! The threads model's registry: every live client of a server, by id, so one client
//! thread can write to another (`Context::send_to`), and a stop can reach every client.
//!
//! Shared by all threads-model workers of one server. It owns only the map; writing to a
//! peer is `peer`'s job. It must not be locked while a handler runs or a socket blocks.

use std::collections::HashMap;
use std::net::Shutdown;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use super::peer::Peer;
use crate::ConnId;

/// How many parts the registry's map is split into, each under a lock of its own. Ids are
/// handed out in sequence, so consecutive clients land in different shards: thousands of
/// threads opening, closing and sending at once rarely wait for the same lock.
const SHARDS: usize = 64;

/// Live clients whose ids fall in one shard.
type Shard = RwLock<HashMap<ConnId, Arc<Peer>>>;

/// Every live client of a server's threads-model workers, by id, for `send_to`.
#[derive(Debug)]
pub(crate) struct Registry {
    /// The last id handed out; ids are never reused while the server runs. Shared with
    /// the mints of client threads, which number the connections their handlers dial.
    last_id: Arc<AtomicU64>,
    /// Live clients, sharded by id. A shard is read-locked per message sent to one of its
    /// clients, write-locked only when one of its clients comes or goes.
    shards: Box<[Shard]>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            last_id: Arc::default(),
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
        }
    }
}

impl Registry {
    /// A new id, unique within the server.
    pub(super) fn next_id(&self) -> ConnId {
        ConnId(self.last_id.fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// The counter ids come from, for a mint that numbers dialed connections.
    pub(super) fn id_source(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.last_id)
    }

    /// The shard that holds (or would hold) the client with this id.
    fn shard(&self, id: ConnId) -> &Shard {
        &self.shards[(id.0 % SHARDS as u64) as usize]
    }

    /// Make `peer` reachable by its id.
    pub(super) fn insert(&self, id: ConnId, peer: Arc<Peer>) {
        self.shard(id)
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, peer);
    }

    /// Forget a client; messages to it are dropped from now on.
    pub(super) fn remove(&self, id: ConnId) {
        self.shard(id)
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
    }

    /// The client with this id, if it is still connected.
    pub(super) fn get(&self, id: ConnId) -> Option<Arc<Peer>> {
        let peers = self
            .shard(id)
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        peers.get(&id).cloned()
    }

    /// Call `visit` with each live client, one shard locked (for reading) at a time.
    fn for_each(&self, mut visit: impl FnMut(ConnId, &Arc<Peer>)) {
        for shard in &self.shards {
            let peers = shard.read().unwrap_or_else(PoisonError::into_inner);
            for (&id, peer) in peers.iter() {
                visit(id, peer);
            }
        }
    }

    /// For the live page: each live client's worker, id, peer address and thread name
    /// (accepted clients run on `tcp-client-ID`, dialed ones on `tcp-dialed-ID`).
    pub(super) fn rows(&self) -> Vec<(usize, crate::worker::watch::ConnRow)> {
        use crate::io::stream::BlockingStream;
        let mut rows = Vec::new();
        self.for_each(|id, peer| {
            let addr = match &peer.stream {
                BlockingStream::Tcp(stream) => stream.peer_addr().map(|a| a.to_string()),
                BlockingStream::Unix(stream) => stream.peer_addr().map(|a| format!("unix {a:?}")),
            };
            let kind = if peer.connect_deadline.is_some() {
                "dialed"
            } else {
                "client"
            };
            let row = crate::worker::watch::ConnRow {
                id: id.to_string(),
                peer: addr.unwrap_or_else(|err| format!("({err})")),
                phase: "open".into(),
                thread: format!("tcp-{kind}-{id}"),
                ..Default::default()
            };
            rows.push((peer.worker, row));
        });
        rows
    }

    /// Shut down the read side of every client of `worker`, so each blocked `read`
    /// returns 0 and its thread notices the stop flag.
    pub(super) fn shut_reads(&self, worker: usize) {
        self.for_each(|_, peer| {
            if peer.worker == worker {
                // An error means the socket is already shut or broken: its thread will notice.
                let _ = peer.stream.shutdown(Shutdown::Read);
            }
        });
    }
}
