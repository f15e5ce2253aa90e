//! The reactor's byte buffers that belong to no one connection: the read buffer every
//! read lands in first, the scratch buffer output is written from, and spare output
//! buffers shared by the connections of one worker.
//!
//! Output that waits for the end of the turn lives in the connection's own buffer. Once it
//! is written, the buffer comes back here instead of staying with the connection, so an
//! idle connection owns no output memory, and a busy one takes a warm buffer without
//! calling the allocator. The pool keeps at most [`SPARE_BYTES`] of capacity; anything
//! beyond is freed.

/// The buffers a worker's connections share.
#[derive(Debug)]
pub(super) struct Buffers {
    /// Every read lands here first, so idle connections own no input buffer.
    pub(super) read: Vec<u8>,
    /// Output of a connection with nothing pending is written here first and sent at once;
    /// only what the kernel refuses is copied into the connection's own buffer.
    pub(super) scratch_out: Vec<u8>,
    /// Output buffers of connections with nothing left to write, for the next to need one.
    pub(super) spare: SpareBuffers,
}

impl Buffers {
    /// Buffers for a worker that reads at most `read_chunk` bytes at a time.
    pub(super) fn new(read_chunk: usize) -> Self {
        Buffers {
            read: vec![0; read_chunk.max(1)],
            scratch_out: Vec::new(),
            spare: SpareBuffers::default(),
        }
    }
}

/// Most bytes of capacity kept in the pool.
pub(crate) const SPARE_BYTES: usize = 1024 * 1024;

/// A buffer larger than this is freed rather than kept: one large reply must not pin a
/// large allocation.
const LARGEST_KEPT: usize = 16 * 1024;

/// Empty buffers with capacity, most recently returned first.
#[derive(Debug, Default)]
pub(crate) struct SpareBuffers {
    /// The buffers, each empty.
    buffers: Vec<Vec<u8>>,
    /// Their total capacity.
    bytes: usize,
}

impl SpareBuffers {
    /// An empty buffer: a spare one when there is one (warm in cache), else a new one.
    pub(crate) fn take(&mut self) -> Vec<u8> {
        match self.buffers.pop() {
            Some(buffer) => {
                self.bytes -= buffer.capacity();
                buffer
            }
            None => Vec::new(),
        }
    }

    /// Return `buffer` (its contents are discarded); kept while the pool has room.
    pub(crate) fn give(&mut self, mut buffer: Vec<u8>) {
        let capacity = buffer.capacity();
        if capacity == 0 || capacity > LARGEST_KEPT || self.bytes + capacity > SPARE_BYTES {
            return;
        }
        buffer.clear();
        self.bytes += capacity;
        self.buffers.push(buffer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_returned_buffer_is_handed_out_again_empty() {
        let mut spare = SpareBuffers::default();
        let mut buffer = Vec::with_capacity(100);
        buffer.extend_from_slice(b"old output");
        let address = buffer.as_ptr();
        spare.give(buffer);
        let again = spare.take();
        assert_eq!(again.as_ptr(), address);
        assert!(again.is_empty());
        assert_eq!(spare.take().capacity(), 0, "the pool is empty again");
    }

    #[test]
    fn the_pool_keeps_no_more_than_its_byte_bound() {
        let mut spare = SpareBuffers::default();
        for _ in 0..2 * SPARE_BYTES / LARGEST_KEPT {
            spare.give(Vec::with_capacity(LARGEST_KEPT));
        }
        assert!(spare.bytes <= SPARE_BYTES);
        assert_eq!(spare.buffers.len(), SPARE_BYTES / LARGEST_KEPT);
        spare.give(Vec::with_capacity(LARGEST_KEPT + 1));
        assert_eq!(spare.buffers.len(), SPARE_BYTES / LARGEST_KEPT);
    }
}
