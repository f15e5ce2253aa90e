//! The reactor's connections: the slab they live in, the map from connection id to slab
//! key, and the generation that makes each token unique. This is the one place where a
//! token is made from a slab key and read back.
//!
//! A token holds the slab key in its low 32 bits and a generation above them. Slab keys
//! are reused as soon as a slot is freed, even within one batch of events; the generation
//! makes an event for a connection already gone name no connection rather than its
//! successor. This module must not do I/O or call the handler.

use std::collections::HashMap;
use std::ops::{Index, IndexMut};

use mio::Token;
use slab::Slab;

use super::connection::Connection;
use crate::ConnId;

/// The low bits of a connection token: its slab key.
const KEY_MASK: usize = 0xFFFF_FFFF;

/// Live connections by slab key, with their ids and the token generation.
#[derive(Debug)]
pub(super) struct Connections<S> {
    /// Every connection of this worker, keyed by the low bits of its token.
    slab: Slab<Connection<S>>,
    /// Connection id to slab key, for the calls that name a connection by id.
    ids: HashMap<ConnId, usize>,
    /// Bumped for every token handed out and kept in the token's high bits.
    generation: u32,
}

impl<S> Default for Connections<S> {
    fn default() -> Self {
        Connections {
            slab: Slab::new(),
            ids: HashMap::new(),
            generation: 0,
        }
    }
}

impl<S> Connections<S> {
    /// The token for the connection that [`insert`](Self::insert) will store next: the
    /// free slot's key with a new generation. Register the socket with it, then insert.
    pub(super) fn next_token(&mut self) -> Token {
        self.generation = self.generation.wrapping_add(1);
        Token(self.slab.vacant_key() | ((self.generation as usize) << 32))
    }

    /// Store `conn`, made with the token [`next_token`](Self::next_token) gave; returns
    /// its slab key.
    pub(super) fn insert(&mut self, conn: Connection<S>) -> usize {
        let id = conn.id();
        debug_assert_eq!(conn.token().0 & KEY_MASK, self.slab.vacant_key());
        let key = self.slab.insert(conn);
        self.ids.insert(id, key);
        key
    }

    /// Take connection `key` out, freeing its slot and its id.
    pub(super) fn remove(&mut self, key: usize) -> Connection<S> {
        let conn = self.slab.remove(key);
        self.ids.remove(&conn.id());
        conn
    }

    /// The slab key for `token` if it still names a live connection (not one closed, or
    /// replaced, earlier in the same batch).
    pub(super) fn live_key(&self, token: Token) -> Option<usize> {
        let key = token.0 & KEY_MASK;
        match self.slab.get(key) {
            Some(conn) if conn.token() == token && !conn.phase().is_dead() => Some(key),
            _ => None,
        }
    }

    /// The slab key of connection `id`, whether or not it is still live.
    pub(super) fn key_of(&self, id: ConnId) -> Option<usize> {
        self.ids.get(&id).copied()
    }

    /// The slab key of connection `id` if it is live.
    pub(super) fn live_key_of(&self, id: ConnId) -> Option<usize> {
        let key = self.key_of(id)?;
        self.slab
            .get(key)
            .is_some_and(|conn| !conn.phase().is_dead())
            .then_some(key)
    }

    /// True if slot `key` holds a connection.
    pub(super) fn contains(&self, key: usize) -> bool {
        self.slab.contains(key)
    }

    /// Connection `key`, if its slot is taken.
    pub(super) fn get(&self, key: usize) -> Option<&Connection<S>> {
        self.slab.get(key)
    }

    /// Connection `key`, if its slot is taken.
    pub(super) fn get_mut(&mut self, key: usize) -> Option<&mut Connection<S>> {
        self.slab.get_mut(key)
    }

    /// How many connections are stored (dead ones not yet reaped included).
    pub(super) fn len(&self) -> usize {
        self.slab.len()
    }

    /// True when no connection is stored.
    pub(super) fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }

    /// Every connection with its slab key, to change.
    pub(super) fn iter_mut(&mut self) -> slab::IterMut<'_, Connection<S>> {
        self.slab.iter_mut()
    }

    /// Every slab key in use, collected so the caller may close connections meanwhile.
    pub(super) fn keys(&self) -> Vec<usize> {
        self.slab.iter().map(|(key, _)| key).collect()
    }
}

impl<S> Index<usize> for Connections<S> {
    type Output = Connection<S>;

    fn index(&self, key: usize) -> &Connection<S> {
        &self.slab[key]
    }
}

impl<S> IndexMut<usize> for Connections<S> {
    fn index_mut(&mut self, key: usize) -> &mut Connection<S> {
        &mut self.slab[key]
    }
}
