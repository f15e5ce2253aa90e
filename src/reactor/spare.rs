//! Spare output buffers, shared by the connections of one reactor worker.
//!
//! Output that waits for the end of the turn lives in the connection's own buffer. Once it
//! is written, the buffer comes back here instead of staying with the connection, so an
//! idle connection owns no output memory, and a busy one takes a warm buffer without
//! calling the allocator. The pool keeps at most [`SPARE_BYTES`] of capacity; anything
//! beyond is freed.

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
