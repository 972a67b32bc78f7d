//! The round-trip time to a peer, measured on its key exchanges: from our `PILA` (or `PILK`)
//! to the peer's key exchange that answers it. Every handshake takes one such turn on each
//! side (the initiator's key exchange and the reply; the reply and the initiator's answer to
//! it), so the daemon learns the path's RTT before the first stream connection dials, and its
//! lost SYN can be resent on that basis instead of a flat second.
//!
//! Karn's rule applies: when our key exchange went out at more than one instant before the
//! answer (a probe round, a retry), the answer cannot be matched to one of them and gives no
//! sample. Copies sent at the same instant (one per candidate address) are one question.

use std::time::{Duration, Instant};

/// An answer later than this after our key exchange is not taken as its answer (it is the
/// peer's own later key exchange); a round trip that long gains nothing over the flat
/// initial timeout anyway.
pub const MAX_SAMPLE: Duration = Duration::from_secs(1);

/// One peer's key-exchange round trips.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RttProbe {
    /// When our unanswered key exchange went out.
    asked: Option<Instant>,
    /// Whether it went out again at another instant since (the answer is ambiguous).
    repeated: bool,
    /// The latest sample.
    latest: Option<Duration>,
}

impl RttProbe {
    /// Our key exchange went to the peer at `now`.
    pub fn asked(&mut self, now: Instant) {
        match self.asked {
            None => self.asked = Some(now),
            Some(at) if at != now => self.repeated = true,
            Some(_) => {}
        }
    }

    /// The peer's key exchange arrived at `now`: the round trip, if it answers exactly one
    /// question of ours and came within [`MAX_SAMPLE`].
    pub fn answered(&mut self, now: Instant) -> Option<Duration> {
        let asked = self.asked.take()?;
        let repeated = std::mem::take(&mut self.repeated);
        let rtt = now.saturating_duration_since(asked);
        if repeated || rtt.is_zero() || rtt > MAX_SAMPLE {
            return None;
        }
        self.latest = Some(rtt);
        Some(rtt)
    }

    /// The latest round trip measured.
    pub fn latest(&self) -> Option<Duration> {
        self.latest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_question_one_answer_is_a_sample() {
        let t0 = Instant::now();
        let mut p = RttProbe::default();
        assert_eq!(p.answered(t0), None, "nothing asked");
        p.asked(t0);
        p.asked(t0); // a copy to a second candidate, same instant
        assert_eq!(
            p.answered(t0 + Duration::from_millis(30)),
            Some(Duration::from_millis(30))
        );
        assert_eq!(p.latest(), Some(Duration::from_millis(30)));
        assert_eq!(
            p.answered(t0 + Duration::from_millis(40)),
            None,
            "answered once"
        );
    }

    #[test]
    fn a_repeated_question_or_a_late_answer_gives_no_sample() {
        let t0 = Instant::now();
        let mut p = RttProbe::default();
        p.asked(t0);
        p.asked(t0 + Duration::from_millis(250));
        assert_eq!(p.answered(t0 + Duration::from_millis(260)), None, "Karn");
        p.asked(t0 + Duration::from_secs(1));
        assert_eq!(p.answered(t0 + Duration::from_secs(3)), None, "too late");
        assert_eq!(p.latest(), None);
        p.asked(t0 + Duration::from_secs(4));
        assert_eq!(
            p.answered(t0 + Duration::from_millis(4_020)),
            Some(Duration::from_millis(20)),
            "a fresh question after an ambiguous one is matched again"
        );
    }
}
