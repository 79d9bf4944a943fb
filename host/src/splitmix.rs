//! splitmix64, the node's one small pseudo-random function, for wherever it needs a
//! fixed, reproducible sequence or hash: the seed each entry's apply gets, the raft core's
//! simulation, the bench's values. A fixed algorithm rather than a crate, so that no
//! dependency upgrade can change a seed's stream.

/// What the generator adds to its state per step (2^64 divided by the golden ratio).
pub const INCREMENT: u64 = 0x9E37_79B9_7F4A_7C15;

/// splitmix64's output function: mixes one word into a well-spread one.
pub fn finalize(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A splitmix64 generator.
#[derive(Clone, Debug)]
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(INCREMENT);
        finalize(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference values of splitmix64 seeded with 1234567 (from its author's C code).
    #[test]
    fn matches_the_reference_sequence() {
        let mut r = SplitMix::new(1_234_567);
        let got: Vec<u64> = (0..3).map(|_| r.next_u64()).collect();
        assert_eq!(
            got,
            [
                6_457_827_717_110_365_317,
                3_203_168_211_198_807_973,
                9_817_491_932_198_370_423
            ]
        );
    }
}
