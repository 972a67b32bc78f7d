//! Tests across the crypto modules: the specification's tunnel vectors (`spec/wire.md` §4.13)
//! and one test per fixed reference quirk (§11), each of which the quirky behaviour fails.

use super::agreement::tests::{ALICE_PUBLIC, ALICE_SECRET, BOB_PUBLIC, BOB_SECRET, TUNNEL_KEY};
use super::*;
use crate::net::{seeded_rng, Rng};
use crate::wire::tunnel::tests::{PILA_NODE1, PILK_NODE2};
use crate::wire::tunnel::{AuthKeyExchange, KeyExchange, Nonce, SealedFrame, TunnelFrame};
use crate::wire::{Flags, Packet};
use hex_literal::hex;

const RFC8032_SEED: [u8; 32] =
    hex!("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");

const PILS_NODE1_V1: [u8; 70] = hex!(
    "50 49 4C 53 00 00 00 01 01 02 03 04 00 00 00 00"
    "00 00 00 01 5E 66 B3 DD A5 79 20 8E 0D F3 D5 8E"
    "46 F1 FB B4 67 42 46 8C 60 15 C3 4C F0 9D 95 F5"
    "77 3A DB AF 47 DA A6 07 52 5A 81 BB E3 1D C5 E3"
    "2D F7 B2 48 16 9A"
);

/// Packet V1 of §3.8: a SYN from node 1 to node 2.
fn packet_v1() -> Vec<u8> {
    crate::wire::header::tests::V1.to_vec()
}

/// A daemon in a test: its node ID and keys.
struct Node {
    id: u32,
    keys: LocalKeys,
}

impl Node {
    fn new(id: u32, seed: &[u8; 32], x25519: [u8; 32]) -> Self {
        Node {
            id,
            keys: LocalKeys::new(
                Identity::from_seed(seed),
                AgreementKeyPair::from_secret(x25519),
            ),
        }
    }

    fn random(id: u32, rng: &mut Rng) -> Self {
        Node {
            id,
            keys: LocalKeys::generate(Identity::generate(rng), rng),
        }
    }

    fn pila(&self) -> AuthKeyExchange {
        self.keys.auth_key_exchange(self.id)
    }

    fn registry_key(&self) -> RegistryKey {
        RegistryKey::Known(self.keys.identity().public_key())
    }
}

/// Node 1 ("Alice", RFC 8032 identity) and node 2 ("Bob") with the RFC 7748 X25519 keys.
fn alice_and_bob() -> (Node, Node) {
    (
        Node::new(1, &RFC8032_SEED, ALICE_SECRET),
        Node::new(2, &[2u8; 32], BOB_SECRET),
    )
}

/// `me`'s state for `peer` after accepting `peer`'s PILA.
fn keyed_with(me: &Node, peer: &Node, rng: &mut Rng) -> PeerCrypto {
    let mut state = PeerCrypto::new(peer.id);
    let change = state
        .accept_auth_key_exchange(&me.keys, &peer.pila(), peer.registry_key(), rng)
        .unwrap();
    assert_eq!(change, KeyChange::New);
    state
}

fn seal(state: &mut PeerCrypto, from: u32, packet: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    state.seal(from, packet, &mut out).unwrap();
    out
}

fn open(state: &mut PeerCrypto, frame: &[u8]) -> Result<Vec<u8>, session::OpenError> {
    let TunnelFrame::Sealed(sealed) = TunnelFrame::decode(frame).unwrap() else {
        panic!("not a PILS frame");
    };
    let mut out = vec![0u8; frame.len()];
    state.open(&sealed, &mut out).map(<[u8]>::to_vec)
}

// --- §4.13 vectors -----------------------------------------------------------------------

#[test]
fn vector_pila_from_node_1() {
    let (alice, _) = alice_and_bob();
    assert_eq!(alice.keys.agreement().public_key(), ALICE_PUBLIC);
    let mut out = Vec::new();
    alice.pila().encode(&mut out);
    assert_eq!(out, PILA_NODE1);
}

#[test]
fn vector_pils_from_node_1_carrying_v1() {
    let (alice, bob) = alice_and_bob();
    let mut rng = seeded_rng(1);
    let mut alice_to_bob = keyed_with(&alice, &bob, &mut rng);
    alice_to_bob.set_send_nonce([1, 2, 3, 4], 0);
    let v1 = packet_v1();
    assert_eq!(v1.len(), 34);
    assert_eq!(seal(&mut alice_to_bob, 1, &v1), PILS_NODE1_V1);

    // Bob opens it with the key he derives from Alice's PILA (the vector frame itself).
    let TunnelFrame::AuthKeyExchange(pila) = TunnelFrame::decode(&PILA_NODE1).unwrap() else {
        panic!("not PILA");
    };
    let mut bob_from_alice = PeerCrypto::new(1);
    bob_from_alice
        .accept_auth_key_exchange(&bob.keys, &pila, alice.registry_key(), &mut rng)
        .unwrap();
    let plain = open(&mut bob_from_alice, &PILS_NODE1_V1).unwrap();
    assert_eq!(plain, v1);
    let packet = Packet::decode(&plain).unwrap();
    assert_eq!(packet.header.flags, Flags::SYN);
    assert_eq!(packet.header.window, 512);
}

#[test]
fn vector_pils_with_the_bare_tunnel_key() {
    let key = TunnelKey::from_bytes(&TUNNEL_KEY);
    let nonce = Nonce {
        prefix: [1, 2, 3, 4],
        counter: 1,
    };
    let mut frame = Vec::new();
    SealedFrame::encode_prefix(1, &nonce, &mut frame);
    let mut body = packet_v1();
    let tag = key.seal_in_place(&nonce, &mut body).unwrap();
    frame.extend_from_slice(&body);
    frame.extend_from_slice(&tag);
    assert_eq!(frame, PILS_NODE1_V1);
}

#[test]
fn vector_pilk_from_node_2() {
    let (alice, bob) = alice_and_bob();
    let mut pilk = Vec::new();
    KeyExchange {
        sender: 2,
        x25519: bob.keys.agreement().public_key(),
    }
    .encode(&mut pilk);
    assert_eq!(pilk, PILK_NODE2);
    let TunnelFrame::KeyExchange(frame) = TunnelFrame::decode(&PILK_NODE2).unwrap() else {
        panic!("not PILK");
    };
    assert_eq!(frame.x25519, BOB_PUBLIC);
    // Accepted only under the opt-in policy, for a node the registry does not know.
    let mut state = PeerCrypto::new(2);
    let change = state.accept_key_exchange(
        &alice.keys,
        &frame,
        RegistryKey::NotRegistered,
        UnauthenticatedPeers::AcceptUnregistered,
        &mut seeded_rng(1),
    );
    assert_eq!(change, Ok(KeyChange::New));
    assert!(state.is_keyed() && !state.is_authenticated());
}

// --- round trips -------------------------------------------------------------------------

#[test]
fn both_directions_round_trip_in_any_order() {
    let mut rng = seeded_rng(42);
    let (a, b) = (Node::random(10, &mut rng), Node::random(20, &mut rng));
    let mut a_to_b = keyed_with(&a, &b, &mut rng);
    let mut b_from_a = keyed_with(&b, &a, &mut rng);
    assert!(a_to_b.is_authenticated() && b_from_a.is_authenticated());

    let frames: Vec<Vec<u8>> = (0..50u8)
        .map(|i| seal(&mut a_to_b, a.id, &[i; 100]))
        .collect();
    // Deliver in a scrambled order; every frame opens once and only once.
    let order: Vec<usize> = (0..50).map(|i| (i * 17) % 50).collect();
    for &i in &order {
        assert_eq!(open(&mut b_from_a, &frames[i]).unwrap(), vec![i as u8; 100]);
    }
    for &i in &order {
        assert!(matches!(
            open(&mut b_from_a, &frames[i]),
            Err(session::OpenError::Replay(ReplayError::Duplicate(_)))
        ));
    }
    // And back.
    let reply = seal(&mut b_from_a, b.id, b"pong");
    assert_eq!(open(&mut a_to_b, &reply).unwrap(), b"pong");
}

/// The handshake of spec §4.10 step 11 between two of our daemons: a PILA that brings a new
/// key is answered, one that repeats the key in use is not. A's PILA makes B reply; B's reply
/// is new to A, so A replies too (it cannot know B already has its key: the frame does not
/// say it is a reply); that third frame changes nothing at B and the exchange stops.
#[test]
fn handshake_converges_without_echo() {
    let mut rng = seeded_rng(21);
    let (a, b) = (Node::random(1, &mut rng), Node::random(2, &mut rng));
    let (mut a_state, mut b_state) = (PeerCrypto::new(b.id), PeerCrypto::new(a.id));
    // In flight: (to_b, frame). A starts.
    let mut in_flight = vec![(true, a.pila())];
    let mut delivered = 0;
    while let Some((to_b, frame)) = in_flight.pop() {
        delivered += 1;
        assert!(delivered <= 10, "key exchanges keep echoing");
        let (state, me, peer) = if to_b {
            (&mut b_state, &b, &a)
        } else {
            (&mut a_state, &a, &b)
        };
        let change = state
            .accept_auth_key_exchange(&me.keys, &frame, peer.registry_key(), &mut rng)
            .unwrap();
        if change.needs_reply() {
            in_flight.push((!to_b, me.pila()));
        }
    }
    assert_eq!(delivered, 3);
    let frame = seal(&mut a_state, a.id, b"after the handshake");
    assert_eq!(open(&mut b_state, &frame).unwrap(), b"after the handshake");
}

#[test]
fn first_frame_carries_counter_1_and_counters_increase() {
    let mut rng = seeded_rng(3);
    let (a, b) = (Node::random(1, &mut rng), Node::random(2, &mut rng));
    let mut state = keyed_with(&a, &b, &mut rng);
    for expected in 1..=3u64 {
        let frame = seal(&mut state, a.id, b"x");
        let TunnelFrame::Sealed(sealed) = TunnelFrame::decode(&frame).unwrap() else {
            panic!("not PILS");
        };
        assert_eq!(sealed.sender, a.id);
        assert_eq!(sealed.nonce.counter, expected);
        assert_eq!(frame.len(), 36 + 1);
    }
}

#[test]
fn seal_appends_without_touching_what_is_there() {
    let mut rng = seeded_rng(4);
    let (a, b) = (Node::random(1, &mut rng), Node::random(2, &mut rng));
    let mut a_to_b = keyed_with(&a, &b, &mut rng);
    let mut b_from_a = keyed_with(&b, &a, &mut rng);
    let mut out = b"relay prefix".to_vec();
    a_to_b.seal(a.id, b"payload", &mut out).unwrap();
    assert_eq!(&out[..12], b"relay prefix");
    assert_eq!(open(&mut b_from_a, &out[12..]).unwrap(), b"payload");
}

#[test]
fn a_peer_restarting_its_counter_under_a_new_prefix_is_tolerated() {
    // A Go peer re-derives on every PILA it accepts: same key, counter back to 1, new prefix,
    // and its frames under both prefixes may arrive interleaved (spec §9 item 3).
    let (alice, bob) = alice_and_bob();
    let mut rng = seeded_rng(5);
    let mut bob_from_alice = keyed_with(&bob, &alice, &mut rng);
    let key = TunnelKey::from_bytes(&TUNNEL_KEY);
    let go_frame = |prefix: [u8; 4], counter: u64| {
        let nonce = Nonce { prefix, counter };
        let mut frame = Vec::new();
        SealedFrame::encode_prefix(1, &nonce, &mut frame);
        let mut body = packet_v1();
        let tag = key.seal_in_place(&nonce, &mut body).unwrap();
        frame.extend_from_slice(&body);
        frame.extend_from_slice(&tag);
        frame
    };
    let (old, new) = ([0xA; 4], [0xB; 4]);
    for (prefix, counter) in [(old, 1), (old, 2), (new, 1), (old, 3), (new, 2), (new, 3)] {
        assert!(open(&mut bob_from_alice, &go_frame(prefix, counter)).is_ok());
    }
    assert!(open(&mut bob_from_alice, &go_frame(old, 2)).is_err());
    assert!(open(&mut bob_from_alice, &go_frame(new, 1)).is_err());
}

#[test]
fn missing_key_wrong_node_and_small_buffer_are_errors() {
    let mut rng = seeded_rng(6);
    let (a, b) = (Node::random(1, &mut rng), Node::random(2, &mut rng));
    let mut none = PeerCrypto::new(b.id);
    assert_eq!(
        none.seal(a.id, b"x", &mut Vec::new()),
        Err(session::SealError::NoKey(2))
    );
    let mut a_to_b = keyed_with(&a, &b, &mut rng);
    let frame = seal(&mut a_to_b, a.id, b"hello");
    assert_eq!(open(&mut none, &frame), Err(session::OpenError::NoKey(2)));

    // Frames claiming another sender are not opened by this state.
    let mut b_from_a = keyed_with(&b, &a, &mut rng);
    let mut wrong = frame.clone();
    wrong[4..8].copy_from_slice(&9u32.to_be_bytes());
    assert_eq!(
        open(&mut b_from_a, &wrong),
        Err(session::OpenError::WrongNode {
            expected: 1,
            got: 9
        })
    );
    let TunnelFrame::Sealed(sealed) = TunnelFrame::decode(&frame).unwrap() else {
        panic!("not PILS");
    };
    let mut small = [0u8; 4];
    assert!(matches!(
        b_from_a.open(&sealed, &mut small),
        Err(session::OpenError::Aead(AeadError::BufferTooSmall {
            need: 5,
            got: 4
        }))
    ));
    // The failed attempt left the window alone: the frame still opens.
    assert_eq!(open(&mut b_from_a, &frame).unwrap(), b"hello");

    // A PILA for another node is not applied to this state.
    let mut state = PeerCrypto::new(7);
    assert_eq!(
        state.accept_auth_key_exchange(&a.keys, &b.pila(), b.registry_key(), &mut rng),
        Err(KeyExchangeError::WrongNode {
            expected: 7,
            got: 2
        })
    );
}

#[test]
fn send_counter_never_wraps() {
    let mut rng = seeded_rng(7);
    let (a, b) = (Node::random(1, &mut rng), Node::random(2, &mut rng));
    let mut state = keyed_with(&a, &b, &mut rng);
    state.set_send_nonce([9; 4], u64::MAX - 1);
    let mut out = Vec::new();
    state.seal(a.id, b"last", &mut out).unwrap();
    let len = out.len();
    assert_eq!(
        state.seal(a.id, b"one too many", &mut out),
        Err(session::SealError::CounterExhausted(2))
    );
    assert_eq!(out.len(), len);
    assert_eq!(state.next_send_nonce(), None);
}

// --- reference quirks (§11) --------------------------------------------------------------

/// Q1: a PILA is checked against the registry's key. An attacker's self-consistent PILA for
/// node 1 (its own Ed25519 key, a valid signature) is refused, and decoding frames into a
/// reused receive buffer cannot change a key already accepted.
#[test]
fn q1_pila_is_checked_against_the_registry_key_and_keys_are_copied() {
    let (alice, bob) = alice_and_bob();
    let mut rng = seeded_rng(8);
    let mut recv_buf = [0u8; 200];

    recv_buf[..136].copy_from_slice(&PILA_NODE1);
    let TunnelFrame::AuthKeyExchange(genuine) = TunnelFrame::decode(&recv_buf[..136]).unwrap()
    else {
        panic!("not PILA");
    };
    let mut bob_from_alice = PeerCrypto::new(1);
    let registry = alice.registry_key();
    assert_eq!(
        bob_from_alice.accept_auth_key_exchange(&bob.keys, &genuine, registry, &mut rng),
        Ok(KeyChange::New)
    );

    // The next datagram lands in the same buffer: a forged PILA claiming node 1.
    let mallory = Node::random(1, &mut rng);
    let mut forged = Vec::new();
    mallory.pila().encode(&mut forged);
    recv_buf[..136].copy_from_slice(&forged);
    assert_eq!(bob_from_alice.peer_x25519(), Some(ALICE_PUBLIC));
    let TunnelFrame::AuthKeyExchange(forged) = TunnelFrame::decode(&recv_buf[..136]).unwrap()
    else {
        panic!("not PILA");
    };
    // Self-consistent: its signature verifies with its own embedded key...
    assert!(verify(
        &forged.ed25519,
        &AuthKeyExchange::signed_message(1, &forged.x25519),
        &forged.signature
    )
    .is_ok());
    // ...but the registry holds Alice's key for node 1.
    assert_eq!(
        bob_from_alice.accept_auth_key_exchange(&bob.keys, &forged, registry, &mut rng),
        Err(KeyExchangeError::IdentityMismatch(1))
    );
    // Claiming Alice's Ed25519 key without her signature fails the signature check.
    let mut claimed = forged;
    claimed.ed25519 = genuine.ed25519;
    assert_eq!(
        bob_from_alice.accept_auth_key_exchange(&bob.keys, &claimed, registry, &mut rng),
        Err(KeyExchangeError::BadSignature(1))
    );
    // And without a registry key nothing is accepted, whatever the frame says.
    assert_eq!(
        bob_from_alice.accept_auth_key_exchange(
            &bob.keys,
            &forged,
            RegistryKey::Unavailable,
            &mut rng
        ),
        Err(KeyExchangeError::NoRegistryKey(1))
    );

    // Bob still talks to the real Alice.
    assert_eq!(bob_from_alice.peer_x25519(), Some(ALICE_PUBLIC));
    assert_eq!(
        open(&mut bob_from_alice, &PILS_NODE1_V1).unwrap(),
        packet_v1()
    );
}

/// Q2: a forged PILS with a huge counter does not move the window; genuine frames still open.
#[test]
fn q2_forged_frame_does_not_move_the_replay_window() {
    let (alice, bob) = alice_and_bob();
    let mut rng = seeded_rng(9);
    let mut bob_from_alice = keyed_with(&bob, &alice, &mut rng);
    for counter in [u64::MAX, 1 << 40, 257] {
        let mut forged = PILS_NODE1_V1;
        forged[12..20].copy_from_slice(&counter.to_be_bytes());
        assert_eq!(
            open(&mut bob_from_alice, &forged),
            Err(session::OpenError::Aead(AeadError::Authentication))
        );
    }
    // The genuine counter-1 frame (prefix 01020304) opens: with the reference's window it
    // would now be "too old".
    assert_eq!(
        open(&mut bob_from_alice, &PILS_NODE1_V1).unwrap(),
        packet_v1()
    );
    assert!(matches!(
        open(&mut bob_from_alice, &PILS_NODE1_V1),
        Err(session::OpenError::Replay(ReplayError::Duplicate(1)))
    ));
}

/// Q4: a repeated PILA with the same X25519 key resets nothing and needs no reply.
#[test]
fn q4_repeated_pila_with_the_same_key_keeps_counters_and_windows() {
    let mut rng = seeded_rng(10);
    let (a, b) = (Node::random(1, &mut rng), Node::random(2, &mut rng));
    let mut a_to_b = keyed_with(&a, &b, &mut rng);
    let mut b_from_a = keyed_with(&b, &a, &mut rng);
    let first = seal(&mut a_to_b, a.id, b"one");
    open(&mut b_from_a, &first).unwrap();
    let nonce_before = a_to_b.next_send_nonce().unwrap();

    for _ in 0..3 {
        let change = a_to_b
            .accept_auth_key_exchange(&a.keys, &b.pila(), b.registry_key(), &mut rng)
            .unwrap();
        assert_eq!(change, KeyChange::Unchanged);
        assert!(!change.needs_reply());
        let change = b_from_a
            .accept_auth_key_exchange(&b.keys, &a.pila(), a.registry_key(), &mut rng)
            .unwrap();
        assert_eq!(change, KeyChange::Unchanged);
    }
    // Same prefix, counter continues at 2 (the reference restarts at 1 under a new prefix).
    assert_eq!(a_to_b.next_send_nonce(), Some(nonce_before));
    assert_eq!(nonce_before.counter, 2);
    // The window survived: the first frame is still a replay.
    assert!(matches!(
        open(&mut b_from_a, &first),
        Err(session::OpenError::Replay(_))
    ));
    let second = seal(&mut a_to_b, a.id, b"two");
    assert_eq!(open(&mut b_from_a, &second).unwrap(), b"two");
}

/// A changed X25519 key (the peer restarted) derives a fresh state and asks for a reply; the
/// replaced key is refused if a captured PILA tries to bring it back (Q3, partly).
#[test]
fn changed_key_rekeys_and_a_replaced_key_cannot_come_back() {
    let mut rng = seeded_rng(11);
    let a = Node::random(1, &mut rng);
    let b_old = Node::random(2, &mut rng);
    // The same node and identity after a restart: new X25519 pair.
    let b_new = Node {
        id: 2,
        keys: LocalKeys::generate(b_old.keys.identity().clone(), &mut rng),
    };
    let mut a_to_b = keyed_with(&a, &b_old, &mut rng);
    let old_frame = seal(&mut keyed_with(&b_old, &a, &mut rng), 2, b"old");
    let _ = seal(&mut a_to_b, a.id, b"x");

    let change = a_to_b
        .accept_auth_key_exchange(&a.keys, &b_new.pila(), b_new.registry_key(), &mut rng)
        .unwrap();
    assert_eq!(change, KeyChange::Changed);
    assert!(change.needs_reply());
    assert_eq!(a_to_b.next_send_nonce().unwrap().counter, 1);
    // Frames under the old key no longer open.
    assert!(open(&mut a_to_b, &old_frame).is_err());
    // A replay of the old process's PILA is refused and changes nothing.
    assert_eq!(
        a_to_b.accept_auth_key_exchange(&a.keys, &b_old.pila(), b_old.registry_key(), &mut rng),
        Err(KeyExchangeError::RetiredKey(2))
    );
    assert_eq!(
        a_to_b.peer_x25519(),
        Some(b_new.keys.agreement().public_key())
    );
    let fresh = seal(&mut keyed_with(&b_new, &a, &mut rng), 2, b"new");
    assert_eq!(open(&mut a_to_b, &fresh).unwrap(), b"new");
}

/// Q5: plaintext is accepted only until a key is agreed.
#[test]
fn q5_plaintext_is_refused_once_keyed() {
    let mut rng = seeded_rng(12);
    let (a, b) = (Node::random(1, &mut rng), Node::random(2, &mut rng));
    let mut state = PeerCrypto::new(b.id);
    assert!(state.accepts_plaintext());
    state
        .accept_auth_key_exchange(&a.keys, &b.pila(), b.registry_key(), &mut rng)
        .unwrap();
    assert!(!state.accepts_plaintext());
}

/// Q7: a PILK is refused when the registry cannot be asked (and when it knows a key, and
/// unless the local policy opts in); refusals ask for our PILA in reply and change nothing.
#[test]
fn q7_pilk_is_never_accepted_for_lack_of_a_registry_answer() {
    let mut rng = seeded_rng(13);
    let (a, b) = (Node::random(1, &mut rng), Node::random(2, &mut rng));
    let pilk = KeyExchange {
        sender: b.id,
        x25519: b.keys.agreement().public_key(),
    };
    let mut state = PeerCrypto::new(b.id);
    for (registry, policy) in [
        (
            RegistryKey::Unavailable,
            UnauthenticatedPeers::AcceptUnregistered,
        ),
        (b.registry_key(), UnauthenticatedPeers::AcceptUnregistered),
        (RegistryKey::NotRegistered, UnauthenticatedPeers::Refuse),
    ] {
        let err = state
            .accept_key_exchange(&a.keys, &pilk, registry, policy, &mut rng)
            .unwrap_err();
        assert!(err.reply_with_pila(), "{err}");
        assert!(!state.is_keyed());
    }
}

/// A PILK never replaces or downgrades an authenticated key, whatever the policy.
#[test]
fn pilk_cannot_override_an_authenticated_key() {
    let mut rng = seeded_rng(14);
    let (a, b) = (Node::random(1, &mut rng), Node::random(2, &mut rng));
    let mut state = keyed_with(&a, &b, &mut rng);
    let mallory = AgreementKeyPair::generate(&mut rng);
    let pilk = KeyExchange {
        sender: b.id,
        x25519: mallory.public_key(),
    };
    assert!(state
        .accept_key_exchange(
            &a.keys,
            &pilk,
            RegistryKey::NotRegistered,
            UnauthenticatedPeers::AcceptUnregistered,
            &mut rng
        )
        .is_err());
    assert!(state.is_authenticated());
    assert_eq!(state.peer_x25519(), Some(b.keys.agreement().public_key()));
}

/// A PILA confirming the key a PILK set up upgrades the state without resetting it.
#[test]
fn pila_upgrades_a_pilk_state_with_the_same_key() {
    let mut rng = seeded_rng(15);
    let (a, b) = (Node::random(1, &mut rng), Node::random(2, &mut rng));
    let mut state = PeerCrypto::new(b.id);
    let pilk = KeyExchange {
        sender: b.id,
        x25519: b.keys.agreement().public_key(),
    };
    state
        .accept_key_exchange(
            &a.keys,
            &pilk,
            RegistryKey::NotRegistered,
            UnauthenticatedPeers::AcceptUnregistered,
            &mut rng,
        )
        .unwrap();
    let nonce = state.next_send_nonce();
    assert_eq!(
        state.accept_auth_key_exchange(&a.keys, &b.pila(), b.registry_key(), &mut rng),
        Ok(KeyChange::Unchanged)
    );
    assert!(state.is_authenticated());
    assert_eq!(state.next_send_nonce(), nonce);
}

#[test]
fn low_order_peer_key_is_refused() {
    let mut rng = seeded_rng(16);
    let a = Node::random(1, &mut rng);
    let pilk = KeyExchange {
        sender: 2,
        x25519: [0; 32],
    };
    let mut state = PeerCrypto::new(2);
    assert!(matches!(
        state.accept_key_exchange(
            &a.keys,
            &pilk,
            RegistryKey::NotRegistered,
            UnauthenticatedPeers::AcceptUnregistered,
            &mut rng
        ),
        Err(KeyExchangeError::LowOrder(2, _))
    ));
    assert!(!state.is_keyed());
}

#[test]
fn same_seed_same_keys_and_frames() {
    let run = |seed| {
        let mut rng = seeded_rng(seed);
        let (a, b) = (Node::random(1, &mut rng), Node::random(2, &mut rng));
        let mut state = keyed_with(&a, &b, &mut rng);
        seal(&mut state, 1, b"deterministic")
    };
    assert_eq!(run(77), run(77));
    assert_ne!(run(77), run(78));
}

proptest::proptest! {
    /// Arbitrary datagrams never panic and never open or rekey anything.
    #[test]
    fn arbitrary_frames_are_refused_without_panicking(
        body in proptest::collection::vec(proptest::num::u8::ANY, 0..200),
        magic in proptest::sample::select(vec![*b"PILS", *b"PILA", *b"PILK"]),
        node in proptest::sample::select(vec![1u32, 2]),
    ) {
        let (alice, bob) = alice_and_bob();
        let mut rng = seeded_rng(1);
        let mut state = keyed_with(&bob, &alice, &mut rng);
        let mut datagram = magic.to_vec();
        datagram.extend_from_slice(&node.to_be_bytes());
        datagram.extend_from_slice(&body);
        let mut out = [0u8; 256];
        match TunnelFrame::decode(&datagram) {
            Ok(TunnelFrame::Sealed(frame)) => {
                proptest::prop_assert!(state.open(&frame, &mut out).is_err());
            }
            Ok(TunnelFrame::AuthKeyExchange(frame)) => {
                let r = state.accept_auth_key_exchange(&bob.keys, &frame, alice.registry_key(), &mut rng);
                proptest::prop_assert!(r.is_err());
            }
            Ok(TunnelFrame::KeyExchange(frame)) => {
                let r = state.accept_key_exchange(&bob.keys, &frame, RegistryKey::Unavailable, UnauthenticatedPeers::AcceptUnregistered, &mut rng);
                proptest::prop_assert!(r.is_err());
            }
            _ => {}
        }
        proptest::prop_assert_eq!(state.peer_x25519(), Some(ALICE_PUBLIC));
        proptest::prop_assert_eq!(open(&mut state, &PILS_NODE1_V1).unwrap(), packet_v1());
    }
}
