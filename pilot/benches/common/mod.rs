//! Set-up shared by benchmarks.

use pilot::crypto::{Identity, LocalKeys, PeerCrypto, RegistryKey};
use pilot::net::seeded_rng;

/// Crypto states of two nodes that exchanged genuine PILAs: (1's state for 2, 2's state for 1).
pub fn keyed_crypto_pair() -> (PeerCrypto, PeerCrypto) {
    let mut rng = seeded_rng(2026);
    let a = LocalKeys::generate(Identity::generate(&mut rng), &mut rng);
    let b = LocalKeys::generate(Identity::generate(&mut rng), &mut rng);
    let key_of = |k: &LocalKeys| RegistryKey::Known(k.identity().public_key());
    let mut a_to_b = PeerCrypto::new(2);
    a_to_b
        .accept_auth_key_exchange(&a, &b.auth_key_exchange(2), key_of(&b), &mut rng)
        .expect("b's PILA is genuine");
    let mut b_from_a = PeerCrypto::new(1);
    b_from_a
        .accept_auth_key_exchange(&b, &a.auth_key_exchange(1), key_of(&a), &mut rng)
        .expect("a's PILA is genuine");
    (a_to_b, b_from_a)
}
