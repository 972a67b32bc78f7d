//! What the registry said about nodes' Ed25519 keys, and the `PILA`s waiting for an answer.
//!
//! The tunnel never asks the registry itself: it asks the daemon with an event, and the daemon
//! answers later through [`super::Tunnel::on_registry_key`], outside the receive loop (Q8).
//! Answers expire, so an identity the peer rotated is fetched again (Q10); lookups are
//! deduplicated and bounded, so a flood of `PILA`s with random node IDs costs a bounded number
//! of lookups, not a stalled receive loop.

use crate::crypto::RegistryKey;
use crate::wire::AuthKeyExchange;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A `PILA` held until the registry's key for its sender is known.
#[derive(Clone, Copy, Debug)]
pub struct Stashed {
    /// When it arrived.
    pub at: Instant,
    /// The frame.
    pub frame: AuthKeyExchange,
    /// Where it came from (the beacon for a relayed frame).
    pub from: SocketAddr,
    /// Whether it arrived through the relay.
    pub relayed: bool,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    key: RegistryKey,
    expires: Instant,
}

/// Requests to the daemon (registry lookups, resolves) not answered yet: deduplicated and
/// bounded.
#[derive(Debug, Default)]
pub struct Outstanding {
    /// Node → when we last asked.
    asked: BTreeMap<u32, Instant>,
}

impl Outstanding {
    /// Whether to ask about `node` now: not if asked less than `retry` ago, nor if `limit`
    /// requests younger than `retry` are outstanding. Records the request.
    pub fn should_ask(&mut self, now: Instant, node: u32, retry: Duration, limit: usize) -> bool {
        if let Some(asked) = self.asked.get(&node) {
            if now.saturating_duration_since(*asked) < retry {
                return false;
            }
        } else if self.asked.len() >= limit {
            // Make room by forgetting requests that went unanswered.
            self.asked
                .retain(|_, asked| now.saturating_duration_since(*asked) < retry);
            if self.asked.len() >= limit {
                return false;
            }
        }
        self.asked.insert(node, now);
        true
    }

    /// The request about `node` was answered (or is moot).
    pub fn answered(&mut self, node: u32) {
        self.asked.remove(&node);
    }
}

/// Registry keys with expiry, outstanding lookups, and stashed `PILA`s.
#[derive(Debug, Default)]
pub struct KeyCache {
    entries: BTreeMap<u32, Entry>,
    /// Lookups asked and not answered.
    lookups: Outstanding,
    /// Node → the latest `PILA` waiting for its key (one per node: a newer one replaces it).
    stash: BTreeMap<u32, Stashed>,
}

impl KeyCache {
    /// The registry's answer for `node`, if known and not expired.
    pub fn get(&self, now: Instant, node: u32) -> Option<RegistryKey> {
        self.entries
            .get(&node)
            .filter(|e| now < e.expires)
            .map(|e| e.key)
    }

    /// Records the registry's answer for `node`, valid for `ttl`. Evicts the entry closest to
    /// expiry when `limit` entries are held.
    pub fn insert(
        &mut self,
        now: Instant,
        node: u32,
        key: RegistryKey,
        ttl: Duration,
        limit: usize,
    ) {
        self.lookups.answered(node);
        if limit == 0 {
            return;
        }
        if !self.entries.contains_key(&node) && self.entries.len() >= limit {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.expires)
                .map(|(n, _)| *n);
            if let Some(oldest) = oldest {
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(
            node,
            Entry {
                key,
                expires: now + ttl,
            },
        );
    }

    /// Forgets the answer for `node` (its identity may have been rotated).
    pub fn invalidate(&mut self, node: u32) {
        self.entries.remove(&node);
    }

    /// Whether to ask the daemon for `node`'s key now (see [`Outstanding::should_ask`]).
    pub fn should_ask(&mut self, now: Instant, node: u32, retry: Duration, limit: usize) -> bool {
        self.lookups.should_ask(now, node, retry, limit)
    }

    /// Holds `stashed` until `node`'s key is known. Frames older than `max_age` make room;
    /// returns `false` (frame dropped) when `limit` other nodes still have frames waiting.
    pub fn stash(&mut self, node: u32, stashed: Stashed, limit: usize, max_age: Duration) -> bool {
        if !self.stash.contains_key(&node) && self.stash.len() >= limit {
            let now = stashed.at;
            self.stash
                .retain(|_, s| now.saturating_duration_since(s.at) < max_age);
            if self.stash.len() >= limit {
                return false;
            }
        }
        self.stash.insert(node, stashed);
        true
    }

    /// Takes the frame waiting for `node`'s key.
    pub fn take_stashed(&mut self, node: u32) -> Option<Stashed> {
        self.stash.remove(&node)
    }

    /// Forgets everything about `node`.
    pub fn remove(&mut self, node: u32) {
        self.entries.remove(&node);
        self.lookups.answered(node);
        self.stash.remove(&node);
    }

    /// Whether a `PILA` from `node` waits for its key.
    pub fn is_stashed(&self, node: u32) -> bool {
        self.stash.contains_key(&node)
    }

    /// Number of stashed frames.
    pub fn stashed(&self) -> usize {
        self.stash.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_expire() {
        let t0 = Instant::now();
        let mut cache = KeyCache::default();
        let ttl = Duration::from_secs(10);
        cache.insert(t0, 7, RegistryKey::Known([1; 32]), ttl, 4);
        assert_eq!(cache.get(t0, 7), Some(RegistryKey::Known([1; 32])));
        assert_eq!(cache.get(t0 + ttl, 7), None);
    }

    #[test]
    fn bounded_by_evicting_the_soonest_to_expire() {
        let t0 = Instant::now();
        let mut cache = KeyCache::default();
        for node in 0..3u32 {
            let ttl = Duration::from_secs(10 + u64::from(node));
            cache.insert(t0, node, RegistryKey::NotRegistered, ttl, 2);
        }
        assert_eq!(cache.get(t0, 0), None);
        assert!(cache.get(t0, 1).is_some() && cache.get(t0, 2).is_some());
    }

    #[test]
    fn stash_is_bounded_and_old_frames_make_room() {
        let t0 = Instant::now();
        let age = Duration::from_secs(10);
        let mut rng = crate::net::seeded_rng(1);
        let keys = crate::crypto::LocalKeys::generate(
            crate::crypto::Identity::generate(&mut rng),
            &mut rng,
        );
        let stashed = |at| Stashed {
            at,
            frame: keys.auth_key_exchange(1),
            from: "192.0.2.1:1".parse().unwrap(),
            relayed: false,
        };
        let mut cache = KeyCache::default();
        assert!(cache.stash(1, stashed(t0), 2, age));
        assert!(cache.stash(2, stashed(t0), 2, age));
        assert!(!cache.stash(3, stashed(t0), 2, age), "full");
        assert!(
            cache.stash(1, stashed(t0), 2, age),
            "a node replaces its own frame"
        );
        assert!(
            cache.stash(3, stashed(t0 + age), 2, age),
            "old frames expired"
        );
        assert_eq!(cache.stashed(), 1);
        assert!(cache.is_stashed(3) && !cache.is_stashed(1));
    }

    #[test]
    fn lookups_are_deduplicated_and_bounded() {
        let t0 = Instant::now();
        let retry = Duration::from_secs(5);
        let mut cache = KeyCache::default();
        assert!(cache.should_ask(t0, 1, retry, 2));
        assert!(!cache.should_ask(t0, 1, retry, 2), "asked already");
        assert!(cache.should_ask(t0, 2, retry, 2));
        assert!(!cache.should_ask(t0, 3, retry, 2), "two outstanding");
        assert!(
            cache.should_ask(t0 + retry, 3, retry, 2),
            "old ones forgotten"
        );
        assert!(
            cache.should_ask(t0 + retry, 1, retry, 2),
            "asked again after retry"
        );
    }
}
