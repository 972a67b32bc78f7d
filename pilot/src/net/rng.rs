//! Randomness behind a seam: one ChaCha20 generator, injected.
//!
//! Keys, nonce prefixes, initial sequence numbers and jitter all come from an [`Rng`] handed to
//! the component that needs it. Real runs seed it from the operating system; the simulator seeds
//! it from the scenario seed and the host's name, so a run replays bit for bit.

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// The random number generator every component draws from.
pub type Rng = ChaCha20Rng;

/// A generator seeded deterministically from `seed`.
pub fn seeded_rng(seed: u64) -> Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// A generator seeded from the operating system's entropy source; for real runs only.
pub fn os_seeded_rng() -> std::io::Result<Rng> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(ChaCha20Rng::from_seed(seed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::Rng as _;

    #[test]
    fn same_seed_same_stream() {
        let (mut a, mut b) = (seeded_rng(7), seeded_rng(7));
        assert_eq!(a.next_u64(), b.next_u64());
        assert_ne!(seeded_rng(7).next_u64(), seeded_rng(8).next_u64());
    }

    #[test]
    fn os_seeded_generators_differ() {
        let mut a = os_seeded_rng().unwrap();
        let mut b = os_seeded_rng().unwrap();
        assert_ne!(a.next_u64(), b.next_u64());
    }
}
