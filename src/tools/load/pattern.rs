//! The bytes each load message carries: a deterministic pseudo-random pattern per
//! connection and sequence number, so every echoed byte can be checked without keeping a
//! copy of what was sent.
//!
//! This module only makes bytes; it must not touch sockets or clocks.

/// One step of SplitMix64: a fast generator whose every output bit depends on its state.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Fill `out` with the content of message `seq` on connection `conn`.
///
/// Two messages differ in (almost) every 8-byte word, so a reply that is shifted, mixed up
/// with another connection's or another message's, or corrupted is seen at once.
pub(crate) fn fill(conn: u64, seq: u64, out: &mut [u8]) {
    let mut state = conn.wrapping_mul(0xD6E8_FEB8_6659_FD93) ^ seq.rotate_left(32);
    for chunk in out.chunks_mut(8) {
        let word = splitmix(&mut state).to_le_bytes();
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
}

#[cfg(test)]
mod tests {
    use super::fill;

    #[test]
    fn same_inputs_give_same_bytes() {
        let (mut a, mut b) = ([0u8; 37], [0u8; 37]);
        fill(3, 9, &mut a);
        fill(3, 9, &mut b);
        assert_eq!(a, b);
    }

    #[test]
    fn other_connection_or_sequence_gives_other_bytes() {
        let (mut a, mut b, mut c) = ([0u8; 64], [0u8; 64], [0u8; 64]);
        fill(1, 1, &mut a);
        fill(2, 1, &mut b);
        fill(1, 2, &mut c);
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_ne!(b, c);
    }
}
