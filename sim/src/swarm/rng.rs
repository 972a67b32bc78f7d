//! The generator's randomness: a ChaCha stream per seed, so a seed draws the same scenario on
//! every machine and every run.

use rand_core::Rng as _;

/// Seeded draws.
pub(crate) struct Draw(pilot::net::Rng);

/// Keeps the generator's stream apart from the simulation's, which the same seed also seeds.
const DOMAIN: u64 = 0x5357_4152_4d00_0001;

impl Draw {
    pub(crate) fn new(seed: u64) -> Draw {
        Draw(pilot::net::seeded_rng(seed ^ DOMAIN))
    }

    /// A number in `0..n` (`n` at least 1).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        // Multiply-shift: no modulo bias worth a thought at these sizes, and no loop.
        ((u128::from(self.0.next_u64()) * u128::from(n.max(1))) >> 64) as u64
    }

    /// True with probability `num / den`.
    pub(crate) fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_stay_in_range_and_repeat_per_seed() {
        let mut a = Draw::new(3);
        let mut b = Draw::new(3);
        for n in 1..200 {
            let x = a.below(n);
            assert!(x < n);
            assert_eq!(x, b.below(n));
        }
        let stream = |seed| {
            let mut d = Draw::new(seed);
            (0..8).map(|_| d.below(1000)).collect::<Vec<_>>()
        };
        assert_ne!(stream(3), stream(4));
    }
}
