//! Per-peer tunnel crypto, sans-IO (`spec/wire.md` §4.8–§4.12).
//!
//! [`LocalKeys`] is what a daemon holds once: its Ed25519 [`Identity`] and its per-process
//! X25519 pair. [`PeerCrypto`] is what it holds per peer node: the agreed key, its own send
//! nonce state, and the replay windows of what it receives. Neither reads a clock, draws
//! randomness except from the [`Rng`] passed in, or does I/O; the daemon moves frames.
//!
//! Where the reference is unsafe and the fix keeps honest Go peers working, this differs:
//!
//! - a `PILA` is checked against the Ed25519 key the *registry* holds for the node, passed in
//!   by the caller, never against a key taken from an earlier frame (§11, Q1); the caller
//!   fetches it outside the receive loop (Q8);
//! - the replay window moves only after a frame authenticates (Q2);
//! - a key exchange that repeats the key we already use changes nothing: no new prefix, no
//!   counter reset, no window reset, no reply (Q4);
//! - plaintext from a peer is refused once a key is agreed with it (Q5, our side);
//! - a `PILK` is never accepted because the registry could not be asked (Q7), nor when the
//!   registry knows a key for the node, nor over an authenticated state;
//! - an X25519 key the peer has already replaced is refused if it comes back, so a captured
//!   `PILA` from an earlier process of the peer cannot rekey us to a key nobody holds (Q3).

use super::aead::{AeadError, TunnelKey};
use super::agreement::{AgreementKeyPair, LowOrderKey};
use super::identity::{verify, Identity};
use super::replay::{PrefixReplay, ReplayError};
use crate::net::Rng;
use crate::wire::tunnel::{AuthKeyExchange, KeyExchange, Nonce, SealedFrame, SEALED_PREFIX_LEN};
use rand_core::Rng as _;

/// X25519 keys a peer has replaced that are remembered and refused.
pub const RETIRED_PEER_KEYS: usize = 8;

/// This daemon's keys: its Ed25519 identity and its X25519 pair for this process.
#[derive(Clone, Debug)]
pub struct LocalKeys {
    identity: Identity,
    agreement: AgreementKeyPair,
}

impl LocalKeys {
    /// Keys from an identity and an X25519 pair.
    pub fn new(identity: Identity, agreement: AgreementKeyPair) -> Self {
        LocalKeys {
            identity,
            agreement,
        }
    }

    /// `identity` with a fresh X25519 pair drawn from `rng` (one per process, §4.8 step 1).
    pub fn generate(identity: Identity, rng: &mut Rng) -> Self {
        Self::new(identity, AgreementKeyPair::generate(rng))
    }

    /// The Ed25519 identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The X25519 pair.
    pub fn agreement(&self) -> &AgreementKeyPair {
        &self.agreement
    }

    /// Our `PILA` (§4.5) as node `own_node`: our X25519 key signed by our identity.
    pub fn auth_key_exchange(&self, own_node: u32) -> AuthKeyExchange {
        let x25519 = self.agreement.public_key();
        AuthKeyExchange {
            sender: own_node,
            x25519,
            ed25519: self.identity.public_key(),
            signature: self
                .identity
                .sign(&AuthKeyExchange::signed_message(own_node, &x25519)),
        }
    }
}

/// What the registry said about a node's Ed25519 key, as the caller found out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegistryKey {
    /// The registry holds this key for the node.
    Known([u8; 32]),
    /// The registry answered: it has no key for this node.
    NotRegistered,
    /// The registry could not be asked or did not answer.
    Unavailable,
}

/// Whether an unauthenticated `PILK` may ever set up a key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UnauthenticatedPeers {
    /// Never (the default): only `PILA` sets up keys.
    #[default]
    Refuse,
    /// Only for nodes the registry positively does not know, and never over an authenticated
    /// state. Anyone on the path can then read and forge that peer's traffic.
    AcceptUnregistered,
}

/// How an accepted key exchange changed the peer's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyChange {
    /// There was no key; now there is.
    New,
    /// The peer's X25519 key changed (it restarted): a fresh state was derived.
    Changed,
    /// The peer repeated the key in use: nothing was reset.
    Unchanged,
}

impl KeyChange {
    /// Whether to answer with our own `PILA` (§4.10 step 11): only when the key is new or
    /// changed, so two daemons never echo key exchanges back and forth.
    pub fn needs_reply(self) -> bool {
        matches!(self, KeyChange::New | KeyChange::Changed)
    }
}

/// Why a key exchange was not accepted. The peer's state is unchanged in every case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyExchangeError {
    /// The frame is for another node than this state's.
    #[error("key exchange from node {got} handed to the state of node {expected}")]
    WrongNode {
        /// The node this state belongs to.
        expected: u32,
        /// The node the frame claims.
        got: u32,
    },
    /// The registry holds no key to check a `PILA` against.
    #[error("no registry key to authenticate node {0}")]
    NoRegistryKey(u32),
    /// The frame's Ed25519 key is not the one the registry holds for the node.
    #[error("node {0} presented an Ed25519 key the registry does not hold for it")]
    IdentityMismatch(u32),
    /// The signature does not verify with the registry's key.
    #[error("bad key-exchange signature for node {0}")]
    BadSignature(u32),
    /// The X25519 key yields the all-zero secret.
    #[error("node {0}: {1}")]
    LowOrder(u32, LowOrderKey),
    /// The peer replaced this X25519 key earlier; it can only be a replayed frame.
    #[error("node {0} offered an X25519 key it has already replaced")]
    RetiredKey(u32),
    /// A `PILK` was refused by policy; answer it with our `PILA` so the peer can authenticate.
    #[error("unauthenticated key exchange from node {node} refused: {why}")]
    Unauthenticated {
        /// The node that sent it.
        node: u32,
        /// Which rule refused it.
        why: &'static str,
    },
}

impl KeyExchangeError {
    /// Whether the daemon should answer with our `PILA` (§4.10 `PILK` step 2): only for a
    /// refused `PILK`, which an honest peer without our key may have sent.
    pub fn reply_with_pila(&self) -> bool {
        matches!(self, KeyExchangeError::Unauthenticated { .. })
    }
}

/// Why a packet could not be sealed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// No key is agreed with this peer yet.
    #[error("no key agreed with node {0}")]
    NoKey(u32),
    /// The send counter is used up; a new key exchange is needed (never wrap: that reuses nonces).
    #[error("send counter for node {0} exhausted; a new key exchange is needed")]
    CounterExhausted(u32),
    /// The packet is beyond what AES-GCM can seal.
    #[error(transparent)]
    Aead(#[from] AeadError),
}

/// Why a `PILS` frame was not opened. The replay windows are unchanged in every case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// No key is agreed with this peer; the frame is dropped (§4.10 `PILS` step 2).
    #[error("no key agreed with node {0}")]
    NoKey(u32),
    /// The frame claims another sender than this state's node.
    #[error("frame from node {got} handed to the state of node {expected}")]
    WrongNode {
        /// The node this state belongs to.
        expected: u32,
        /// The node the frame claims.
        got: u32,
    },
    /// The nonce was seen before or is outside the window.
    #[error(transparent)]
    Replay(#[from] ReplayError),
    /// Decryption failed, or the output buffer is too small.
    #[error(transparent)]
    Aead(#[from] AeadError),
}

/// The agreed state with a peer.
#[derive(Debug)]
struct Keyed {
    peer_x25519: [u8; 32],
    key: TunnelKey,
    authenticated: bool,
    send_prefix: [u8; 4],
    /// Last counter sent; the next frame carries one more.
    send_counter: u64,
    replay: PrefixReplay,
}

/// The tunnel crypto state for one peer node.
///
/// Deliberately not `Clone`: two copies would send under the same nonces.
#[derive(Debug)]
pub struct PeerCrypto {
    node: u32,
    keyed: Option<Keyed>,
    /// X25519 keys this peer has replaced, most recent last.
    retired_keys: Vec<[u8; 32]>,
}

impl PeerCrypto {
    /// No key yet with `node`.
    pub fn new(node: u32) -> Self {
        PeerCrypto {
            node,
            keyed: None,
            retired_keys: Vec::new(),
        }
    }

    /// The peer's node ID.
    pub fn node(&self) -> u32 {
        self.node
    }

    /// Whether a key is agreed, so packets to this peer can be sealed.
    pub fn is_keyed(&self) -> bool {
        self.keyed.is_some()
    }

    /// Whether the agreed key came from a verified `PILA`.
    pub fn is_authenticated(&self) -> bool {
        self.keyed.as_ref().is_some_and(|k| k.authenticated)
    }

    /// The peer's X25519 key in use, if any.
    pub fn peer_x25519(&self) -> Option<[u8; 32]> {
        self.keyed.as_ref().map(|k| k.peer_x25519)
    }

    /// Whether a plaintext `PILT` from this peer may be accepted: only until a key is agreed.
    /// Afterwards plaintext can only be a downgrade or an injection (§11, Q5).
    pub fn accepts_plaintext(&self) -> bool {
        self.keyed.is_none()
    }

    /// Handles a received `PILA`.
    ///
    /// `registry` is what the registry says about the node's Ed25519 key; the caller obtains
    /// it before calling (asynchronously, outside the receive loop) and may cache it, but must
    /// never take it from a received frame. The frame's key must equal it, and the signature
    /// must verify with it. On success, reply with our `PILA` if [`KeyChange::needs_reply`].
    pub fn accept_auth_key_exchange(
        &mut self,
        local: &LocalKeys,
        frame: &AuthKeyExchange,
        registry: RegistryKey,
        rng: &mut Rng,
    ) -> Result<KeyChange, KeyExchangeError> {
        let node = self.check_node(frame.sender)?;
        let RegistryKey::Known(expected) = registry else {
            return Err(KeyExchangeError::NoRegistryKey(node));
        };
        if frame.ed25519 != expected {
            return Err(KeyExchangeError::IdentityMismatch(node));
        }
        let message = AuthKeyExchange::signed_message(frame.sender, &frame.x25519);
        verify(&expected, &message, &frame.signature)
            .map_err(|_| KeyExchangeError::BadSignature(node))?;
        self.install(local, &frame.x25519, true, rng)
    }

    /// Handles a received `PILK`.
    ///
    /// Refused unless `policy` allows unauthenticated peers, the registry positively has no
    /// key for the node, and the current state (if any) is not authenticated. A refusal
    /// answers [`KeyExchangeError::reply_with_pila`].
    pub fn accept_key_exchange(
        &mut self,
        local: &LocalKeys,
        frame: &KeyExchange,
        registry: RegistryKey,
        policy: UnauthenticatedPeers,
        rng: &mut Rng,
    ) -> Result<KeyChange, KeyExchangeError> {
        let node = self.check_node(frame.sender)?;
        let refuse = |why| Err(KeyExchangeError::Unauthenticated { node, why });
        match registry {
            RegistryKey::Known(_) => return refuse("the registry holds a key for the node"),
            RegistryKey::Unavailable => return refuse("the registry could not be asked"),
            RegistryKey::NotRegistered => {}
        }
        if policy == UnauthenticatedPeers::Refuse {
            return refuse("unauthenticated key exchange is disabled");
        }
        if self.is_authenticated() {
            return refuse("an authenticated key is already agreed");
        }
        self.install(local, &frame.x25519, false, rng)
    }

    fn check_node(&self, sender: u32) -> Result<u32, KeyExchangeError> {
        if sender == self.node {
            Ok(sender)
        } else {
            Err(KeyExchangeError::WrongNode {
                expected: self.node,
                got: sender,
            })
        }
    }

    /// Installs the peer's X25519 key after the frame carrying it passed the policy checks.
    fn install(
        &mut self,
        local: &LocalKeys,
        peer_x25519: &[u8; 32],
        authenticated: bool,
        rng: &mut Rng,
    ) -> Result<KeyChange, KeyExchangeError> {
        let node = self.node;
        if let Some(keyed) = self.keyed.as_mut() {
            if keyed.peer_x25519 == *peer_x25519 {
                // Same key: keep prefix, counters and windows (Q4). A PILA confirming a key
                // first agreed through PILK upgrades it.
                keyed.authenticated |= authenticated;
                return Ok(KeyChange::Unchanged);
            }
        }
        if self.retired_keys.contains(peer_x25519) {
            return Err(KeyExchangeError::RetiredKey(node));
        }
        let key = TunnelKey::derive(local.agreement(), peer_x25519)
            .map_err(|e| KeyExchangeError::LowOrder(node, e))?;
        let mut send_prefix = [0u8; 4];
        rng.fill_bytes(&mut send_prefix);
        let previous = self.keyed.replace(Keyed {
            peer_x25519: *peer_x25519,
            key,
            authenticated,
            send_prefix,
            send_counter: 0,
            replay: PrefixReplay::new(),
        });
        Ok(match previous {
            None => KeyChange::New,
            Some(old) => {
                if self.retired_keys.len() == RETIRED_PEER_KEYS {
                    self.retired_keys.remove(0);
                }
                self.retired_keys.push(old.peer_x25519);
                KeyChange::Changed
            }
        })
    }

    /// Appends a `PILS` frame from `own_node` carrying `packet` (an encoded Pilot packet) to
    /// `out`. Nothing is allocated when `out` has the capacity.
    pub fn seal(
        &mut self,
        own_node: u32,
        packet: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), SealError> {
        let keyed = self.keyed.as_mut().ok_or(SealError::NoKey(self.node))?;
        let counter = keyed
            .send_counter
            .checked_add(1)
            .ok_or(SealError::CounterExhausted(self.node))?;
        let nonce = Nonce {
            prefix: keyed.send_prefix,
            counter,
        };
        let start = out.len();
        SealedFrame::encode_prefix(own_node, &nonce, out);
        out.extend_from_slice(packet);
        match keyed
            .key
            .seal_in_place(&nonce, &mut out[start + SEALED_PREFIX_LEN..])
        {
            Ok(tag) => out.extend_from_slice(&tag),
            Err(e) => {
                out.truncate(start);
                return Err(e.into());
            }
        }
        // Counted only once used, so a failed seal never burns or reuses a nonce.
        keyed.send_counter = counter;
        Ok(())
    }

    /// Opens a received `PILS` frame into `out` and returns the plaintext (the encoded Pilot
    /// packet, still to be decoded). The frame is authenticated before its nonce is recorded,
    /// so a forged frame cannot move the replay window.
    pub fn open<'o>(
        &mut self,
        frame: &SealedFrame<'_>,
        out: &'o mut [u8],
    ) -> Result<&'o [u8], OpenError> {
        let node = self.node;
        let keyed = self.keyed.as_mut().ok_or(OpenError::NoKey(node))?;
        if frame.sender != node {
            return Err(OpenError::WrongNode {
                expected: node,
                got: frame.sender,
            });
        }
        let Nonce { prefix, counter } = frame.nonce;
        keyed.replay.check(prefix, counter)?;
        let plain = keyed.key.open_into(&frame.nonce, frame.ciphertext, out)?;
        keyed.replay.commit(prefix, counter);
        Ok(plain)
    }

    /// The nonce the next sealed frame will carry; `None` if not keyed or the counter is
    /// used up. For traces and tests.
    pub fn next_send_nonce(&self) -> Option<Nonce> {
        let keyed = self.keyed.as_ref()?;
        Some(Nonce {
            prefix: keyed.send_prefix,
            counter: keyed.send_counter.checked_add(1)?,
        })
    }

    /// Sets the send nonce state, to reproduce the specification's test vectors.
    #[cfg(test)]
    pub(crate) fn set_send_nonce(&mut self, prefix: [u8; 4], last_counter: u64) {
        if let Some(k) = self.keyed.as_mut() {
            k.send_prefix = prefix;
            k.send_counter = last_counter;
        }
    }
}
