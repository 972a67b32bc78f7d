//! Observed endpoints: node ID → the UDP address its Discovers come from.
//!
//! Unlike the Go beacon (entries never expire, any datagram overwrites any entry, `spec/wire.md`
//! §6.8, Q15), entries here expire, the table is bounded, and a live entry cannot be moved to
//! another address: an honest daemon refreshes every 30 s from its one tunnel socket, so a claim
//! from a different address while the entry is fresh is either an attacker or a restart that can
//! wait for the old entry to go stale.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Refreshes closer together than this do not reorder the expiry index (relay traffic
/// refreshes on every datagram; the index only needs coarse ages).
const TOUCH_GRANULARITY: Duration = Duration::from_secs(1);

/// One observed endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    endpoint: SocketAddr,
    seen: Instant,
}

/// Whether `a` and `b` are ports of one IP (IPv4-mapped IPv6 counts as IPv4).
pub fn same_ip(a: SocketAddr, b: SocketAddr) -> bool {
    a.ip().to_canonical() == b.ip().to_canonical()
}

/// What a claim did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// A new entry (or one replacing an expired entry).
    Added,
    /// The entry already had this endpoint; refreshed.
    Refreshed,
    /// A stale entry was moved to the new endpoint.
    Moved,
    /// A fresh entry has another endpoint; nothing changed.
    Refused,
    /// Node IDs 0 and 0xFFFFFFFF are never recorded.
    Reserved,
}

/// Node ID → observed endpoint, with expiry and a size cap.
#[derive(Debug)]
pub struct NodeTable {
    entries: HashMap<u32, Entry>,
    /// (last refresh, node): oldest first, for eviction and expiry.
    by_age: BTreeSet<(Instant, u32)>,
    ttl: Duration,
    takeover_after: Duration,
    cap: usize,
}

impl NodeTable {
    /// An empty table.
    pub fn new(ttl: Duration, takeover_after: Duration, cap: usize) -> Self {
        NodeTable {
            entries: HashMap::new(),
            by_age: BTreeSet::new(),
            ttl,
            takeover_after,
            cap: cap.max(1),
        }
    }

    fn is_fresh(&self, entry: &Entry, now: Instant) -> bool {
        now.saturating_duration_since(entry.seen) < self.ttl
    }

    /// Records that `node` was seen at `endpoint`, subject to the takeover rule.
    pub fn claim(&mut self, now: Instant, node: u32, endpoint: SocketAddr) -> Claim {
        if node == 0 || node == u32::MAX {
            return Claim::Reserved;
        }
        let result = match self.entries.get(&node) {
            Some(e) if !self.is_fresh(e, now) => Claim::Added,
            Some(e) if e.endpoint == endpoint => Claim::Refreshed,
            Some(e) if now.saturating_duration_since(e.seen) >= self.takeover_after => Claim::Moved,
            Some(_) => return Claim::Refused,
            None => Claim::Added,
        };
        let seen = match self.entries.remove(&node) {
            Some(old) => {
                self.by_age.remove(&(old.seen, node));
                // An entry's age never runs backwards, even if a caller's clock does.
                old.seen.max(now)
            }
            None => {
                self.make_room(now);
                now
            }
        };
        self.entries.insert(node, Entry { endpoint, seen });
        self.by_age.insert((seen, node));
        result
    }

    /// Moves `node`'s entry to `endpoint` even while fresh, if the entry holds another port of
    /// the same IP (the caller has checked a move proof: the node receives at `endpoint`).
    /// Anything else is an ordinary [`claim`](Self::claim).
    pub fn rebind(&mut self, now: Instant, node: u32, endpoint: SocketAddr) -> Claim {
        let ttl = self.ttl;
        match self.entries.get_mut(&node) {
            Some(e)
                if e.endpoint != endpoint
                    && same_ip(e.endpoint, endpoint)
                    && now.saturating_duration_since(e.seen) < ttl =>
            {
                let old = e.seen;
                e.endpoint = endpoint;
                e.seen = old.max(now);
                let seen = e.seen;
                self.by_age.remove(&(old, node));
                self.by_age.insert((seen, node));
                Claim::Moved
            }
            _ => self.claim(now, node, endpoint),
        }
    }

    /// Refreshes `node` if its endpoint is `endpoint` (used for relay traffic, which proves the
    /// same endpoint is alive). Returns whether it matched.
    pub fn touch(&mut self, now: Instant, node: u32, endpoint: SocketAddr) -> bool {
        let ttl = self.ttl;
        let Some(e) = self.entries.get_mut(&node) else {
            return false;
        };
        if e.endpoint != endpoint || now.saturating_duration_since(e.seen) >= ttl {
            return false;
        }
        if now.saturating_duration_since(e.seen) >= TOUCH_GRANULARITY {
            self.by_age.remove(&(e.seen, node));
            e.seen = now;
            self.by_age.insert((now, node));
        }
        true
    }

    /// The endpoint of `node`, if it has a fresh entry.
    pub fn endpoint(&self, now: Instant, node: u32) -> Option<SocketAddr> {
        self.entries
            .get(&node)
            .filter(|e| self.is_fresh(e, now))
            .map(|e| e.endpoint)
    }

    /// Drops every expired entry; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let mut removed = 0;
        while let Some(&(seen, node)) = self.by_age.first() {
            if now.saturating_duration_since(seen) < self.ttl {
                break;
            }
            self.by_age.pop_first();
            self.entries.remove(&node);
            removed += 1;
        }
        removed
    }

    /// Makes space for one more entry: expired ones go first, then the least recently refreshed.
    fn make_room(&mut self, now: Instant) {
        if self.entries.len() < self.cap {
            return;
        }
        self.expire(now);
        while self.entries.len() >= self.cap {
            let Some((_, node)) = self.by_age.pop_first() else {
                break;
            };
            self.entries.remove(&node);
        }
    }

    /// The IDs of all fresh entries, ascending.
    pub fn live_ids(&self, now: Instant) -> Vec<u32> {
        let mut ids: Vec<u32> = self
            .by_age
            .iter()
            .filter(|(seen, _)| now.saturating_duration_since(*seen) < self.ttl)
            .map(|&(_, node)| node)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Number of entries held (fresh or awaiting expiry).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(180);
    const TAKEOVER: Duration = Duration::from_secs(65);

    fn ep(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], port))
    }

    #[test]
    fn claims_add_refresh_refuse_and_move() {
        let t0 = Instant::now();
        let mut t = NodeTable::new(TTL, TAKEOVER, 10);
        assert_eq!(t.claim(t0, 7, ep(1)), Claim::Added);
        assert_eq!(
            t.claim(t0 + Duration::from_secs(30), 7, ep(1)),
            Claim::Refreshed
        );
        // Fresh entry: another address cannot take it.
        let t1 = t0 + Duration::from_secs(60);
        assert_eq!(t.claim(t1, 7, ep(2)), Claim::Refused);
        assert_eq!(t.endpoint(t1, 7), Some(ep(1)));
        // 65 s after the last refresh (at 30 s) it can.
        let t2 = t0 + Duration::from_secs(95);
        assert_eq!(t.claim(t2, 7, ep(2)), Claim::Moved);
        assert_eq!(t.endpoint(t2, 7), Some(ep(2)));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn a_rebind_moves_a_fresh_entry_to_another_port_of_its_ip_only() {
        let t0 = Instant::now();
        let mut t = NodeTable::new(TTL, TAKEOVER, 10);
        t.claim(t0, 7, ep(1));
        let t1 = t0 + Duration::from_secs(5);
        let elsewhere = SocketAddr::from(([203, 0, 113, 5], 2));
        assert_eq!(t.rebind(t1, 7, elsewhere), Claim::Refused, "another IP");
        assert_eq!(t.rebind(t1, 7, ep(2)), Claim::Moved);
        assert_eq!(t.endpoint(t1, 7), Some(ep(2)));
        assert_eq!(t.rebind(t1, 7, ep(2)), Claim::Refreshed);
        assert_eq!(
            t.rebind(t1, 8, ep(3)),
            Claim::Added,
            "no entry: an ordinary claim"
        );
        assert_eq!(t.len(), 2);
        assert_eq!(t.expire(t1 + TTL), 2, "the moved entry ages from its move");
    }

    #[test]
    fn reserved_ids_are_never_recorded() {
        let t0 = Instant::now();
        let mut t = NodeTable::new(TTL, TAKEOVER, 10);
        assert_eq!(t.claim(t0, 0, ep(1)), Claim::Reserved);
        assert_eq!(t.claim(t0, u32::MAX, ep(1)), Claim::Reserved);
        assert!(t.is_empty());
    }

    #[test]
    fn entries_expire() {
        let t0 = Instant::now();
        let mut t = NodeTable::new(TTL, TAKEOVER, 10);
        t.claim(t0, 1, ep(1));
        t.claim(t0 + Duration::from_secs(100), 2, ep(2));
        let t1 = t0 + TTL;
        assert_eq!(t.endpoint(t1, 1), None, "expired entries are not served");
        assert_eq!(t.live_ids(t1), [2]);
        assert_eq!(t.expire(t1), 1);
        assert_eq!(t.len(), 1);
        // An expired entry is free for anyone.
        t.claim(t0, 3, ep(3));
        assert_eq!(t.claim(t1 + TTL, 2, ep(9)), Claim::Added);
    }

    #[test]
    fn table_is_capped_and_evicts_the_oldest() {
        let t0 = Instant::now();
        let mut t = NodeTable::new(TTL, TAKEOVER, 3);
        for n in 1..=3u32 {
            t.claim(t0 + Duration::from_secs(n.into()), n, ep(n as u16));
        }
        t.claim(t0 + Duration::from_secs(10), 1, ep(1)); // 1 is now the newest
        t.claim(t0 + Duration::from_secs(11), 4, ep(4));
        assert_eq!(t.len(), 3);
        assert_eq!(t.live_ids(t0 + Duration::from_secs(11)), [1, 3, 4]);
    }

    #[test]
    fn touch_refreshes_only_the_same_endpoint() {
        let t0 = Instant::now();
        let mut t = NodeTable::new(TTL, TAKEOVER, 10);
        t.claim(t0, 5, ep(5));
        assert!(!t.touch(t0, 5, ep(6)));
        assert!(!t.touch(t0, 6, ep(5)));
        let t1 = t0 + Duration::from_secs(170);
        assert!(t.touch(t1, 5, ep(5)));
        assert_eq!(t.endpoint(t1 + Duration::from_secs(170), 5), Some(ep(5)));
    }
}
