//! The one source of pseudo-randomness: a hash of a caller's seed.
//!
//! The core has no entropy of its own (the caller passes a seed:
//! [`Config::seed`](crate::Config::seed)); it derives reconnect jitter and
//! SNTP nonces from it with [`splitmix64`]. Public so that simulators and
//! tests draw from the same generator ([`SplitMix64`]) rather than each
//! writing their own. Not cryptographic.

/// The splitmix64 finaliser of `x + golden gamma`: a well-mixed hash of a
/// 64-bit value (zero included).
#[must_use]
pub const fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The splitmix64 generator: each draw is [`splitmix64`] of a counter that
/// advances by the golden gamma. Deterministic from its seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let draw = splitmix64(self.0);
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        draw
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_values() {
        // The reference implementation's first outputs for seed 0
        // (Vigna's splitmix64.c): 0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4.
        let mut g = SplitMix64(0);
        assert_eq!(g.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(g.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }
}
