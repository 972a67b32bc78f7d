//! A seeded model of an internet path, for benchmarks and tests of the transport (and of
//! anything else that sends packets): propagation delay with jitter, random or bursty
//! (Gilbert-Elliott) loss, and a bottleneck of fixed rate in front of a bounded drop-tail queue.
//!
//! Sans-IO like the transport: packets go in with [`LinkModel::send`] at a given `now`, come out
//! with [`LinkModel::pop_due`], and [`LinkModel::next_delivery`] says when the next one is due.
//! Each direction draws from its own generator and draws the same number of values for every
//! packet, so the n-th packet in a direction meets the same fate (lost or not, how much jitter)
//! whichever protocol is being driven: two transports compared over one seed see the same
//! loss schedule.

use crate::net::{seeded_rng, Rng};
use rand_core::Rng as _;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Which way a packet travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dir {
    /// From the first host to the second.
    AtoB,
    /// From the second host to the first.
    BtoA,
}

impl Dir {
    fn index(self) -> usize {
        match self {
            Dir::AtoB => 0,
            Dir::BtoA => 1,
        }
    }
}

/// How packets are lost on the path (before the bottleneck queue, which drops on its own).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Loss {
    /// Nothing lost.
    None,
    /// Each packet lost independently with this probability.
    Random(f64),
    /// Bursts: a two-state Markov chain (Gilbert-Elliott).
    Bursty(GilbertElliott),
}

/// The Gilbert-Elliott loss model: a good and a bad state with their own loss rates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GilbertElliott {
    /// Chance per packet of moving from good to bad.
    pub good_to_bad: f64,
    /// Chance per packet of moving from bad back to good.
    pub bad_to_good: f64,
    /// Loss rate in the good state.
    pub loss_good: f64,
    /// Loss rate in the bad state.
    pub loss_bad: f64,
}

impl GilbertElliott {
    /// Bursts with mean length `burst` packets, every packet of a burst lost, and `mean` loss
    /// overall: the bad state's share of time is `mean`.
    pub fn with_mean(mean: f64, burst: f64) -> Self {
        let bad_to_good = 1.0 / burst.max(1.0);
        let mean = mean.clamp(0.0, 0.99);
        GilbertElliott {
            good_to_bad: mean * bad_to_good / (1.0 - mean),
            bad_to_good,
            loss_good: 0.0,
            loss_bad: 1.0,
        }
    }
}

/// One path, the same both ways.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkConfig {
    /// Round-trip propagation delay (half each way), without queueing or jitter.
    pub rtt: Duration,
    /// Extra one-way delay, uniform in `[0, jitter]`; packets stay in order (like a real
    /// queue, jitter never lets one overtake another).
    pub jitter: Duration,
    /// Loss on the path.
    pub loss: Loss,
    /// Bottleneck rate in bytes per second; 0 for none.
    pub rate: u64,
    /// Bytes the bottleneck queue holds; a packet that does not fit is dropped.
    pub queue: usize,
}

impl LinkConfig {
    /// A path of round trip `rtt` with no jitter, loss or bottleneck.
    pub fn ideal(rtt: Duration) -> Self {
        LinkConfig {
            rtt,
            jitter: Duration::ZERO,
            loss: Loss::None,
            rate: 0,
            queue: usize::MAX,
        }
    }

    /// The bandwidth-delay product in bytes (the bottleneck rate times the round trip).
    pub fn bdp(&self) -> usize {
        (self.rate as u128 * self.rtt.as_nanos() / 1_000_000_000) as usize
    }
}

/// What happened to the packets sent so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Packets handed to the link.
    pub sent: u64,
    /// Packets lost on the path (the loss model).
    pub lost: u64,
    /// Packets dropped because the bottleneck queue was full.
    pub queue_drops: u64,
    /// Packets delivered.
    pub delivered: u64,
}

#[derive(Debug)]
struct Lane {
    rng: Rng,
    bad: bool,
    /// When the last packet was handed to this lane.
    last_send: Option<Instant>,
    /// When the bottleneck finishes serialising what it has queued.
    busy_until: Option<Instant>,
    /// When the last packet queued on this lane is delivered (deliveries stay in order).
    last_delivery: Option<Instant>,
    in_flight: VecDeque<(Instant, Vec<u8>)>,
}

impl Lane {
    fn unit(&mut self) -> f64 {
        f64::from(self.rng.next_u32()) / 4_294_967_296.0
    }
}

/// Two directions of one path.
#[derive(Debug)]
pub struct LinkModel {
    config: LinkConfig,
    lanes: [Lane; 2],
    spare: Vec<Vec<u8>>,
    stats: LinkStats,
}

impl LinkModel {
    /// A link following `config`, its randomness drawn from `seed`.
    pub fn new(config: LinkConfig, seed: u64) -> Self {
        let lane = |salt: u64| Lane {
            rng: seeded_rng(seed ^ salt),
            bad: false,
            last_send: None,
            busy_until: None,
            last_delivery: None,
            in_flight: VecDeque::new(),
        };
        LinkModel {
            config,
            lanes: [lane(0x0a70_b000), lane(0x0b70_a000)],
            spare: Vec::new(),
            stats: LinkStats::default(),
        }
    }

    /// The path's settings.
    pub fn config(&self) -> &LinkConfig {
        &self.config
    }

    /// Counters so far.
    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    /// Whether nothing is in flight either way.
    pub fn is_idle(&self) -> bool {
        self.lanes.iter().all(|l| l.in_flight.is_empty())
    }

    /// Puts `bytes` on the link at `now` going `dir`; returns whether they will arrive.
    pub fn send(&mut self, now: Instant, dir: Dir, bytes: &[u8]) -> bool {
        self.stats.sent += 1;
        let config = self.config;
        let lane = &mut self.lanes[dir.index()];
        // Three draws per packet whatever happens, so the schedule is per packet index.
        let (transition, loss_draw, jitter_draw) = (lane.unit(), lane.unit(), lane.unit());
        let previous_send = lane.last_send.replace(now);
        let lost = match config.loss {
            Loss::None => false,
            Loss::Random(p) => loss_draw < p,
            Loss::Bursty(ge) => {
                // The chain steps once per packet slot (a 4 KiB packet's time at the
                // bottleneck, else 1 ms) since the lane's last packet, so a burst is a stretch
                // of time: a lone retransmission after a long silence is not still "in" the
                // burst that ate the flight before it.
                let slot = match 4096u64
                    .saturating_mul(1_000_000_000)
                    .checked_div(config.rate)
                {
                    Some(ns) => Duration::from_nanos(ns.max(1)),
                    None => Duration::from_millis(1),
                };
                let idle =
                    previous_send.map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
                let steps = (1 + idle.as_nanos() / slot.as_nanos()).min(1 << 20) as i32;
                let settle = (1.0 - ge.good_to_bad - ge.bad_to_good).powi(steps);
                let stationary = ge.good_to_bad / (ge.good_to_bad + ge.bad_to_good);
                let p_bad = if lane.bad {
                    stationary + (1.0 - stationary) * settle
                } else {
                    stationary * (1.0 - settle)
                };
                lane.bad = transition < p_bad;
                loss_draw < if lane.bad { ge.loss_bad } else { ge.loss_good }
            }
        };
        if lost {
            self.stats.lost += 1;
            return false;
        }
        let leaves = if config.rate == 0 {
            now
        } else {
            let start = lane.busy_until.map_or(now, |t| t.max(now));
            let backlog = start.saturating_duration_since(now).as_nanos() * u128::from(config.rate)
                / 1_000_000_000;
            if backlog as usize + bytes.len() > config.queue {
                self.stats.queue_drops += 1;
                return false;
            }
            let serialise = Duration::from_nanos(
                (bytes.len() as u128 * 1_000_000_000 / u128::from(config.rate)) as u64,
            );
            let done = start + serialise;
            lane.busy_until = Some(done);
            done
        };
        let jitter = config.jitter.mul_f64(jitter_draw);
        let mut at = leaves + config.rtt / 2 + jitter;
        if let Some(last) = lane.last_delivery {
            at = at.max(last);
        }
        lane.last_delivery = Some(at);
        let mut buf = self.spare.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(bytes);
        lane.in_flight.push_back((at, buf));
        true
    }

    /// When the next packet arrives, if any is in flight.
    pub fn next_delivery(&self) -> Option<Instant> {
        self.lanes
            .iter()
            .filter_map(|l| l.in_flight.front().map(|(t, _)| *t))
            .min()
    }

    /// The next packet due at or before `now` (the earliest first; A→B first on a tie), with
    /// its direction. Hand the buffer back with [`LinkModel::recycle`] to reuse it.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Dir, Vec<u8>)> {
        let a = self.lanes[0].in_flight.front().map(|(t, _)| *t);
        let b = self.lanes[1].in_flight.front().map(|(t, _)| *t);
        let dir = match (a, b) {
            (Some(ta), Some(tb)) if tb < ta => Dir::BtoA,
            (Some(_), _) => Dir::AtoB,
            (None, Some(_)) => Dir::BtoA,
            (None, None) => return None,
        };
        let lane = &mut self.lanes[dir.index()];
        if lane.in_flight.front().is_some_and(|(t, _)| *t > now) {
            return None;
        }
        let (_, bytes) = lane.in_flight.pop_front()?;
        self.stats.delivered += 1;
        Some((dir, bytes))
    }

    /// Returns a delivered packet's buffer for reuse.
    pub fn recycle(&mut self, buf: Vec<u8>) {
        if self.spare.len() < 1024 {
            self.spare.push(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(link: &mut LinkModel) -> Vec<(Instant, Dir, usize)> {
        let mut out = Vec::new();
        while let Some(t) = link.next_delivery() {
            while let Some((dir, bytes)) = link.pop_due(t) {
                out.push((t, dir, bytes.len()));
                link.recycle(bytes);
            }
        }
        out
    }

    #[test]
    fn delay_rate_and_queue() {
        let t0 = Instant::now();
        let config = LinkConfig {
            rtt: Duration::from_millis(20),
            rate: 1_000_000,
            queue: 3000,
            ..LinkConfig::ideal(Duration::ZERO)
        };
        let mut link = LinkModel::new(config, 1);
        // 1000 bytes take 1 ms at 1 MB/s; the fourth packet finds 3000 bytes queued, the
        // fifth, 2 ms later, finds the queue drained to 1000.
        for _ in 0..4 {
            link.send(t0, Dir::AtoB, &[0; 1000]);
        }
        assert!(link.send(t0 + Duration::from_millis(2), Dir::AtoB, &[0; 1000]));
        assert!(link.send(t0, Dir::BtoA, &[0; 10]));
        let got = drain(&mut link);
        let ms = |t: Instant| (t - t0).as_micros();
        assert_eq!(link.stats().queue_drops, 1);
        assert_eq!(got[0], (t0 + Duration::from_micros(10_010), Dir::BtoA, 10));
        let a: Vec<_> = got
            .iter()
            .filter(|g| g.1 == Dir::AtoB)
            .map(|g| ms(g.0))
            .collect();
        // Serialised one after another, then 10 ms of propagation.
        assert_eq!(a, vec![11_000, 12_000, 13_000, 14_000]);
    }

    #[test]
    fn same_seed_same_schedule_and_mean_loss() {
        let t0 = Instant::now();
        let config = LinkConfig {
            loss: Loss::Bursty(GilbertElliott::with_mean(0.05, 4.0)),
            jitter: Duration::from_millis(3),
            ..LinkConfig::ideal(Duration::from_millis(50))
        };
        let fates = |seed, len: usize| {
            let mut link = LinkModel::new(config, seed);
            let v: Vec<bool> = (0..20_000)
                .map(|i| link.send(t0 + Duration::from_micros(i), Dir::AtoB, &vec![0; len]))
                .collect();
            (v, drain(&mut link))
        };
        let (a, da) = fates(7, 100);
        // The packet size does not change which packets are lost, nor the jitter.
        let (b, db) = fates(7, 1400);
        assert_eq!(a, b);
        assert_eq!(
            da.iter().map(|d| d.0).collect::<Vec<_>>(),
            db.iter().map(|d| d.0).collect::<Vec<_>>()
        );
        assert_ne!(a, fates(8, 100).0);
        let lost = a.iter().filter(|ok| !**ok).count() as f64 / a.len() as f64;
        assert!((0.035..0.065).contains(&lost), "{lost}");
        // Bursty: losses come in runs (a loss follows a loss far more often than 5%).
        let pairs = a.windows(2).filter(|w| !w[0] && !w[1]).count() as f64;
        let losses = a.iter().filter(|ok| !**ok).count() as f64;
        assert!(pairs / losses > 0.5, "{}", pairs / losses);
        // Jitter never reorders.
        assert!(da.windows(2).all(|w| w[0].0 <= w[1].0));
    }
}
