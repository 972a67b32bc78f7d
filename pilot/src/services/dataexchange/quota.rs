//! How much one peer may store: a byte bucket per peer node that refills over time, so a
//! peer cannot fill the disk however fast it sends, while the free-space reserve of the
//! mailbox protects against many peers at once.

use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

/// Bytes a peer may store at once, and per [`QuotaConfig::period`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotaConfig {
    /// Bucket size, bytes.
    pub bytes: u64,
    /// Time to refill an empty bucket.
    pub period: Duration,
}

impl Default for QuotaConfig {
    /// 8 GiB per hour.
    fn default() -> Self {
        QuotaConfig {
            bytes: 8 << 30,
            period: Duration::from_secs(3600),
        }
    }
}

/// Peers tracked before the fullest buckets are forgotten (a forgotten peer is full again,
/// which only ever helps that peer; the mailbox reserve still holds).
const MAX_PEERS: usize = 4096;

/// The buckets.
#[derive(Debug)]
pub struct PeerQuota {
    config: QuotaConfig,
    /// Node -> (bytes left, when last refilled).
    buckets: BTreeMap<u32, (u64, Instant)>,
}

impl PeerQuota {
    /// Full buckets for everyone.
    pub fn new(config: QuotaConfig) -> Self {
        PeerQuota {
            config,
            buckets: BTreeMap::new(),
        }
    }

    fn refill(&self, left: u64, since: Instant, now: Instant) -> u64 {
        let period = self.config.period.as_nanos().max(1);
        let elapsed = now.saturating_duration_since(since).as_nanos();
        let gained = (u128::from(self.config.bytes) * elapsed / period).min(u128::from(u64::MAX));
        left.saturating_add(gained as u64).min(self.config.bytes)
    }

    /// Takes `bytes` from `peer`'s bucket, or says how many it has left.
    pub fn charge(&mut self, peer: u32, bytes: u64, now: Instant) -> Result<(), u64> {
        let left = match self.buckets.get(&peer) {
            Some(&(left, since)) => self.refill(left, since, now),
            None => self.config.bytes,
        };
        if bytes > left {
            return Err(left);
        }
        if self.buckets.len() >= MAX_PEERS && !self.buckets.contains_key(&peer) {
            let fullest = self
                .buckets
                .iter()
                .max_by_key(|(_, &(left, _))| left)
                .map(|(&node, _)| node);
            if let Some(node) = fullest {
                self.buckets.remove(&node);
            }
        }
        self.buckets.insert(peer, (left - bytes, now));
        Ok(())
    }

    /// Gives back bytes charged for something that was not stored after all.
    pub fn refund(&mut self, peer: u32, bytes: u64) {
        if let Some(entry) = self.buckets.get_mut(&peer) {
            entry.0 = entry.0.saturating_add(bytes).min(self.config.bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_held_to_its_bucket_which_refills() {
        let mut quota = PeerQuota::new(QuotaConfig {
            bytes: 100,
            period: Duration::from_secs(100),
        });
        let t0 = Instant::now();
        quota.charge(1, 80, t0).unwrap();
        assert_eq!(quota.charge(1, 30, t0), Err(20));
        // Another peer has its own bucket.
        quota.charge(2, 100, t0).unwrap();
        // Ten seconds give ten bytes back.
        quota.charge(1, 30, t0 + Duration::from_secs(10)).unwrap();
        quota.refund(1, 30);
        assert_eq!(quota.charge(1, 31, t0 + Duration::from_secs(10)), Err(30));
        // Never more than the bucket.
        assert_eq!(
            quota.charge(1, 101, t0 + Duration::from_secs(10_000)),
            Err(100)
        );
    }
}
