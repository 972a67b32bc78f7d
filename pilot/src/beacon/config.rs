//! Tunables of a beacon: expiry, caps, gossip timing and rate limits.
//!
//! The defaults keep every honest Go daemon working (it refreshes its entry with a Discover every
//! 30 s, `spec/wire.md` §7.2) while bounding what one source or one peer beacon can make us hold.

use std::time::Duration;

/// Largest UDP payload over IPv4; nothing larger can arrive or be sent.
pub const MAX_UDP_PAYLOAD: usize = 65_507;

/// Bytes of our Sync extension trailer (see [`crate::beacon::gossip`]).
pub const SYNC_TRAILER_LEN: usize = 8;

/// Most node IDs that fit one Sync datagram together with our trailer: (65507 − 7 − 8) / 4.
pub const MAX_SYNC_NODES_PER_DATAGRAM: usize = (MAX_UDP_PAYLOAD - 7 - SYNC_TRAILER_LEN) / 4;

/// A token-bucket rate: `per_sec` tokens per second, at most `burst` saved up.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    /// Tokens added per second.
    pub per_sec: f64,
    /// Bucket capacity.
    pub burst: f64,
}

impl Rate {
    /// A rate of `per_sec` with a bucket of `burst`.
    pub const fn new(per_sec: f64, burst: f64) -> Self {
        Rate { per_sec, burst }
    }
}

/// Per-source limits. A source is an IPv4 address or an IPv6 /64 (one subscriber's prefix).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimits {
    /// Discover, Punch Request and everything else that is not Sync or Relay (messages).
    pub control: Rate,
    /// Sync datagrams (only known peer beacons get this far).
    pub sync: Rate,
    /// Relay datagrams.
    pub relay_packets: Rate,
    /// Relay bytes (whole datagrams).
    pub relay_bytes: Rate,
    /// Rates and bursts of a known peer beacon are this many times the per-source ones (it
    /// forwards the relays of all its daemons).
    pub peer_scale: f64,
    /// Most sources tracked individually; sources beyond share one overflow budget.
    pub max_sources: usize,
    /// A source unseen for this long is forgotten (its buckets would be full again anyway).
    pub source_idle: Duration,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            // 300 Go daemons behind one NAT, each refreshing every 30 s, fit in 10/s.
            control: Rate::new(20.0, 50.0),
            // A peer sends one Sync (or a few parts) per 10 s tick.
            sync: Rate::new(10.0, 100.0),
            // A relayed stream at a Go daemon's 1 MiB window and a 4175-byte segment is far below.
            relay_packets: Rate::new(5_000.0, 10_000.0),
            relay_bytes: Rate::new(16.0 * 1024.0 * 1024.0, 4.0 * 1024.0 * 1024.0),
            peer_scale: 16.0,
            max_sources: 65_536,
            source_idle: Duration::from_secs(60),
        }
    }
}

/// Everything the sans-IO [`Beacon`](crate::beacon::Beacon) needs to know.
#[derive(Clone, Debug, PartialEq)]
pub struct BeaconConfig {
    /// This beacon's ID, announced in Syncs (and registered with the registry when non-zero).
    pub beacon_id: u32,
    /// A node entry not refreshed for this long is gone (Go: never).
    pub node_ttl: Duration,
    /// An entry refreshed more recently than this cannot be moved to another address.
    pub takeover_after: Duration,
    /// Most node entries; the least recently refreshed is evicted beyond.
    pub max_nodes: usize,
    /// Period of the gossip and housekeeping tick.
    pub gossip_interval: Duration,
    /// Gossip learnt from a peer is forgotten when the peer stops listing it for this long.
    pub gossip_ttl: Duration,
    /// Most peer beacons.
    pub max_peers: usize,
    /// Most node IDs remembered per peer beacon.
    pub max_gossip_per_peer: usize,
    /// Most node IDs per Sync datagram.
    pub max_sync_nodes: usize,
    /// Largest Relay datagram accepted (bytes including the 9-byte prefix).
    pub max_relay_len: usize,
    /// Per-source rate limits.
    pub limits: RateLimits,
}

impl Default for BeaconConfig {
    fn default() -> Self {
        BeaconConfig {
            beacon_id: 0,
            // Six missed 30 s refreshes.
            node_ttl: Duration::from_secs(180),
            // Two refresh periods plus slack: a live Go daemon refreshes within 30 s, and one lost
            // Discover still leaves it inside the window.
            takeover_after: Duration::from_secs(65),
            max_nodes: 262_144,
            gossip_interval: Duration::from_secs(10),
            // Three ticks: one lost Sync does not forget a peer's nodes.
            gossip_ttl: Duration::from_secs(35),
            max_peers: 16,
            max_gossip_per_peer: 65_536,
            max_sync_nodes: MAX_SYNC_NODES_PER_DATAGRAM,
            // A Go daemon may relay any datagram up to the UDP limit (protocol-2 datagrams).
            max_relay_len: MAX_UDP_PAYLOAD,
            limits: RateLimits::default(),
        }
    }
}

impl BeaconConfig {
    /// The configuration with every value clamped into a range the beacon can work with.
    pub fn sanitized(mut self) -> Self {
        self.max_nodes = self.max_nodes.max(1);
        self.max_peers = self.max_peers.max(1);
        self.max_gossip_per_peer = self.max_gossip_per_peer.max(1);
        self.max_sync_nodes = self.max_sync_nodes.clamp(1, MAX_SYNC_NODES_PER_DATAGRAM);
        self.max_relay_len = self.max_relay_len.clamp(9, MAX_UDP_PAYLOAD);
        // Bounded above too: deadlines are `now + gossip_interval`, which must not overflow.
        self.gossip_interval = self
            .gossip_interval
            .clamp(Duration::from_millis(10), Duration::from_secs(86_400));
        let limits = &mut self.limits;
        limits.max_sources = limits.max_sources.max(1);
        if !(limits.peer_scale.is_finite() && limits.peer_scale >= 1.0) {
            limits.peer_scale = 1.0;
        }
        for rate in [
            &mut limits.control,
            &mut limits.sync,
            &mut limits.relay_packets,
            &mut limits.relay_bytes,
        ] {
            if !(rate.per_sec.is_finite() && rate.per_sec >= 0.0) {
                rate.per_sec = 0.0;
            }
            if !(rate.burst.is_finite() && rate.burst >= 1.0) {
                rate.burst = 1.0;
            }
        }
        // A relay the size limit allows must be able to pass the byte bucket.
        limits.relay_bytes.burst = limits.relay_bytes.burst.max(self.max_relay_len as f64);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitized_clamps_nonsense() {
        let c = BeaconConfig {
            max_nodes: 0,
            max_sync_nodes: usize::MAX,
            max_relay_len: 0,
            gossip_interval: Duration::MAX,
            limits: RateLimits {
                control: Rate::new(f64::NAN, -1.0),
                peer_scale: 0.0,
                ..RateLimits::default()
            },
            ..BeaconConfig::default()
        }
        .sanitized();
        assert_eq!(c.max_nodes, 1);
        assert_eq!(c.max_sync_nodes, MAX_SYNC_NODES_PER_DATAGRAM);
        assert_eq!(c.max_relay_len, 9);
        assert_eq!(c.gossip_interval, Duration::from_secs(86_400));
        assert_eq!(c.limits.control, Rate::new(0.0, 1.0));
        assert_eq!(c.limits.peer_scale, 1.0);
        assert_eq!(BeaconConfig::default().sanitized(), BeaconConfig::default());
    }
}
