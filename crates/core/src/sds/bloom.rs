//! The bloom filter of received message ids an SDS message carries (SDS "bloom_filter").
//!
//! Fixed shape, so a receiver can read any member's filter without negotiation: 2048 bits
//! (256 bytes on the wire), 7 probes by double hashing over SHA-256 of the id. Rolled over
//! at [`CAPACITY`] ids, where the false-positive rate is (1 − e^(−7·200/2048))^7 ≈ 0.74 %:
//! the chance that a member that never received a message is counted as having it.

use sha2::{Digest, Sha256};

/// Bits in the filter.
pub const BITS: usize = 2048;
/// Bytes on the wire.
pub const BYTES: usize = BITS / 8;
/// Probes per id.
const PROBES: u64 = 7;
/// Ids a filter holds before it is rebuilt from the newest half of the log.
pub const CAPACITY: usize = 200;

/// A filter of message ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bloom {
    bits: Vec<u8>,
    count: usize,
}

impl Default for Bloom {
    fn default() -> Self {
        Self {
            bits: vec![0; BYTES],
            count: 0,
        }
    }
}

fn probes(id: &[u8; 32]) -> impl Iterator<Item = usize> {
    let h = Sha256::digest(id);
    let h1 = u64::from_be_bytes(h[0..8].try_into().expect("8 bytes"));
    let h2 = u64::from_be_bytes(h[8..16].try_into().expect("8 bytes")) | 1;
    (0..PROBES).map(move |i| (h1.wrapping_add(i.wrapping_mul(h2)) % BITS as u64) as usize)
}

impl Bloom {
    /// Adds an id.
    pub fn insert(&mut self, id: &[u8; 32]) {
        for b in probes(id) {
            self.bits[b / 8] |= 1 << (b % 8);
        }
        self.count += 1;
    }

    /// Ids inserted since the filter was built.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no id was inserted.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The wire form.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.bits.clone()
    }

    /// Whether `bits` (another member's filter, as received) may hold `id`. A filter of
    /// the wrong size holds nothing: it is a claim we cannot read.
    pub fn may_contain(bits: &[u8], id: &[u8; 32]) -> bool {
        bits.len() == BYTES && probes(id).all(|b| bits[b / 8] & (1 << (b % 8)) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(i: u32) -> [u8; 32] {
        Sha256::digest(i.to_be_bytes()).into()
    }

    #[test]
    fn holds_what_was_inserted_and_few_others() {
        let mut b = Bloom::default();
        for i in 0..CAPACITY as u32 {
            b.insert(&id(i));
        }
        let bytes = b.to_bytes();
        assert!((0..CAPACITY as u32).all(|i| Bloom::may_contain(&bytes, &id(i))));
        let false_pos = (10_000..30_000u32)
            .filter(|i| Bloom::may_contain(&bytes, &id(*i)))
            .count();
        // 0.74 % expected: 148 of 20 000; allow the binomial spread.
        assert!(false_pos < 260, "{false_pos} false positives of 20 000");
    }

    #[test]
    fn a_filter_of_the_wrong_size_holds_nothing() {
        assert!(!Bloom::may_contain(&[0xff; BYTES - 1], &id(1)));
        assert!(!Bloom::may_contain(&[], &id(1)));
        assert!(Bloom::may_contain(&[0xff; BYTES], &id(1)));
    }
}
