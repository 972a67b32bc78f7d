//! How we reach one peer: direct, hole-punched through the beacon, or relayed. Sans-IO.
//!
//! A [`PeerPath`] holds the peer's candidate addresses and the route in use, and decides, on
//! timers and on authenticated frames, what to do next. It emits [`PathAction`]s; the tunnel
//! turns them into datagrams. The timeline (`docs/TUNNEL.md` has the whole story):
//!
//! 1. First contact: a Punch Request to the beacon and a *probe window*: our `PILA` to every
//!    candidate every `probe_interval` for `probe_window`.
//! 2. An authenticated frame arriving directly confirms the path at its source address.
//! 3. Nothing direct by the end of the window: relay through the beacon (if there is one), and
//!    punch again in the background, every `punch_retry` doubling up to `punch_retry_max`.
//!    A later punch that succeeds moves the peer back to direct.
//! 4. A direct path idle for `keepalive_interval` gets a `PILP`, while it saw traffic within
//!    `active_window`; data left unanswered for `dead_after` declares it dead: relay, probe.
//! 5. Data left unanswered for `silence_rekey` re-sends our `PILA` (the peer may have restarted).
//! 6. LAN candidates the peer announced (it sits behind our NAT) are probed beside the rest; a
//!    direct path on one of them is preferred: frames from the peer's other addresses do not
//!    move the path off it, and a working path elsewhere is kept while they are tried.

use super::config::Timing;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The route packets to a peer take.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PeerRoute {
    /// No direct path confirmed yet and not relayed: sends go to the first candidate.
    Probing,
    /// Confirmed direct at this address (an authenticated frame came from it).
    Direct(SocketAddr),
    /// Wrapped in Relay messages to the beacon.
    Relay,
}

/// Something the path wants sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathAction {
    /// Our key-exchange frame to this address, directly (a probe).
    Probe(SocketAddr),
    /// Our key-exchange frame along the current route (the peer went silent); `repeat`: not
    /// the first re-send of this silence.
    KeyExchange { repeat: bool },
    /// A Punch Request to the beacon.
    PunchRequest,
    /// A `PILP` to this address, to hold the NAT mapping open.
    Keepalive(SocketAddr),
}

/// LAN candidates remembered per peer (what one announcement carries at most).
pub const MAX_LAN_CANDIDATES: usize = 4;

/// An active round of probes.
#[derive(Clone, Copy, Debug)]
struct ProbeWindow {
    next: Instant,
    until: Instant,
    /// Looking for a LAN path beside a working direct one: only LAN candidates are probed,
    /// and the direct path is kept if none answers.
    upgrade: bool,
}

/// The path state of one peer.
#[derive(Clone, Debug)]
pub struct PeerPath {
    route: PeerRoute,
    /// Addresses the peer may be reached at, oldest first (registry, punch commands, sources).
    candidates: Vec<SocketAddr>,
    /// Private addresses the peer announced (it sits behind our NAT), preferred when they answer.
    lan: Vec<SocketAddr>,
    probe: Option<ProbeWindow>,
    /// When to start the next punch attempt (Punch Request and probe window).
    punch_at: Option<Instant>,
    punch_backoff: Duration,
    /// Last authenticated frame received, directly or relayed.
    last_rx: Option<Instant>,
    /// Last datagram we sent to the direct endpoint.
    last_direct_tx: Option<Instant>,
    /// Last data sent or received: keepalives run only while this is recent.
    last_activity: Option<Instant>,
    /// When the peer was added (idle expiry counts from here until data flows).
    created: Instant,
    /// First data sent since the last authenticated frame received.
    unanswered_since: Option<Instant>,
    /// When to re-send our key exchange if the silence goes on.
    silence_next: Option<Instant>,
    silence_backoff: Duration,
    /// Key exchanges re-sent since the peer last answered.
    silence_resends: u32,
}

impl PeerPath {
    /// A peer we are about to contact: probe `candidate` (from the registry) and punch now.
    pub fn new(now: Instant, candidate: Option<SocketAddr>, timing: &Timing) -> Self {
        PeerPath {
            route: PeerRoute::Probing,
            candidates: candidate.into_iter().collect(),
            lan: Vec::new(),
            probe: None,
            punch_at: Some(now),
            punch_backoff: timing.punch_retry,
            last_rx: None,
            last_direct_tx: None,
            last_activity: None,
            created: now,
            unanswered_since: None,
            silence_next: None,
            silence_backoff: timing.silence_rekey,
            silence_resends: 0,
        }
    }

    /// A peer that contacted us with an authenticated frame: directly from `from`, or relayed
    /// (`from` is `None`).
    pub fn inbound(now: Instant, from: Option<SocketAddr>, timing: &Timing) -> Self {
        let mut path = PeerPath::new(now, from, timing);
        path.punch_at = None;
        path.route = match from {
            Some(addr) => PeerRoute::Direct(addr),
            None => {
                path.punch_at = Some(now + timing.punch_retry);
                PeerRoute::Relay
            }
        };
        path.last_rx = Some(now);
        path.last_activity = Some(now);
        path
    }

    /// The route in use.
    pub fn route(&self) -> PeerRoute {
        self.route
    }

    /// Where a packet goes now: an address, or `None` for the relay (or nowhere, if there is
    /// no candidate and no beacon: the caller checks).
    pub fn direct_destination(&self) -> Option<SocketAddr> {
        match self.route {
            PeerRoute::Direct(addr) => Some(addr),
            PeerRoute::Probing => self.candidates.first().copied(),
            PeerRoute::Relay => None,
        }
    }

    /// The candidate addresses, oldest first.
    pub fn candidates(&self) -> &[SocketAddr] {
        &self.candidates
    }

    /// Whether `addr` is one we probe (or were told about).
    pub fn is_candidate(&self, addr: SocketAddr) -> bool {
        self.candidates.contains(&addr) || self.is_lan(addr)
    }

    /// The LAN candidates the peer announced.
    pub fn lan_candidates(&self) -> &[SocketAddr] {
        &self.lan
    }

    /// Whether `addr` is a LAN candidate the peer announced.
    pub fn is_lan(&self, addr: SocketAddr) -> bool {
        self.lan.contains(&addr)
    }

    /// Whether the path is direct on a LAN candidate.
    pub fn on_lan(&self) -> bool {
        matches!(self.route, PeerRoute::Direct(addr) if self.is_lan(addr))
    }

    /// The peer announced `addrs` as its LAN addresses (at most [`MAX_LAN_CANDIDATES`] kept,
    /// replacing earlier ones). Unless the path is already on one of them, they are probed
    /// from now: beside a working direct path (which stays if none answers), or as a punch
    /// attempt otherwise.
    pub fn set_lan_candidates(&mut self, now: Instant, addrs: &[SocketAddr], timing: &Timing) {
        self.lan.clear();
        for &addr in addrs {
            if !self.lan.contains(&addr) && self.lan.len() < MAX_LAN_CANDIDATES {
                self.lan.push(addr);
            }
        }
        if self.lan.is_empty() || self.on_lan() {
            return;
        }
        match self.route {
            PeerRoute::Direct(_) => {
                if self.probe.is_none() {
                    self.probe = Some(ProbeWindow {
                        next: now,
                        until: now + timing.probe_window,
                        upgrade: true,
                    });
                }
            }
            _ => self.punch_now(now),
        }
    }

    /// Whether a probe window is running.
    pub fn is_probing(&self) -> bool {
        self.probe.is_some()
    }

    /// Remembers `addr` as a way to reach the peer, forgetting the oldest beyond `limit` but
    /// never the first (the registry's address), so a flood of addresses cannot push it out.
    pub fn add_candidate(&mut self, addr: SocketAddr, limit: usize) {
        if self.candidates.contains(&addr) || limit == 0 {
            return;
        }
        if self.candidates.len() >= limit {
            let oldest = usize::from(limit > 1);
            self.candidates.remove(oldest);
        }
        self.candidates.push(addr);
    }

    /// Makes `addr` the first candidate (where sends go while probing).
    fn add_candidate_front(&mut self, addr: SocketAddr) {
        self.candidates.retain(|&c| c != addr);
        self.candidates.insert(0, addr);
    }

    /// Starts a punch attempt at the next timeout, unless the path is direct.
    pub fn punch_now(&mut self, now: Instant) {
        if !matches!(self.route, PeerRoute::Direct(_)) {
            self.punch_at = Some(now);
        }
    }

    /// An authenticated frame from the peer. `from` is its source if it came directly, `None`
    /// if relayed. `confirms` says whether it may move the direct path to `from` (it is fresh,
    /// or came from an address we probe). `relay` says whether a relay exists.
    ///
    /// Returns whether this established or re-established the direct path (it changed, or a
    /// search for one ended): the peer may not know our side of it yet.
    pub fn on_authenticated(
        &mut self,
        now: Instant,
        from: Option<SocketAddr>,
        confirms: bool,
        relay: bool,
        timing: &Timing,
        limit: usize,
    ) -> bool {
        let searching = self.probe.is_some();
        let before = self.route;
        self.last_rx = Some(now);
        self.last_activity = Some(now);
        self.unanswered_since = None;
        self.silence_next = None;
        self.silence_backoff = timing.silence_rekey;
        self.silence_resends = 0;
        match from {
            Some(addr) if confirms && self.on_lan() && !self.is_lan(addr) => {
                // The peer also reaches us another way (its NAT hairpins, or a frame took the
                // long way round): the LAN path stays, until it goes dead.
            }
            Some(addr)
                if confirms && !self.is_lan(addr) && self.probe.is_some_and(|p| p.upgrade) =>
            {
                // The current direct path answers while its LAN candidates are tried: move
                // (a rebinding is still followed) but keep looking.
                if !self.candidates.contains(&addr) {
                    self.add_candidate(addr, limit);
                }
                self.route = PeerRoute::Direct(addr);
                return before != self.route;
            }
            Some(addr) if confirms => {
                if !self.is_lan(addr) {
                    self.add_candidate(addr, limit);
                }
                self.route = PeerRoute::Direct(addr);
                self.probe = None;
                self.punch_at = None;
                self.punch_backoff = timing.punch_retry;
                return searching || before != self.route;
            }
            Some(_) => {}
            None => {
                // The peer reaches us only through the relay: answer the same way while we
                // keep looking for a direct path.
                if self.route == PeerRoute::Probing && relay {
                    self.route = PeerRoute::Relay;
                    if self.probe.is_none() && self.punch_at.is_none() {
                        self.punch_at = Some(now + self.punch_backoff);
                    }
                }
            }
        }
        false
    }

    /// We sent data (not a probe or keepalive) to the peer.
    pub fn on_data_sent(&mut self, now: Instant, timing: &Timing) {
        let idle = self
            .last_activity
            .is_none_or(|t| now.saturating_duration_since(t) >= timing.active_window);
        if idle && matches!(self.route, PeerRoute::Direct(_)) && self.probe.is_none() {
            // Keepalives stopped a while ago, so the NAT mappings along the path have likely
            // expired: punch again now. If nothing confirms the path within the window, it
            // falls back (see `handle_timeout`) instead of waiting for `dead_after`.
            self.punch_at = Some(now);
        }
        self.last_activity = Some(now);
        self.expect_answer(now);
    }

    /// We sent something that the peer should answer: start the silence timers if not running.
    pub fn expect_answer(&mut self, now: Instant) {
        if self.unanswered_since.is_none() {
            self.unanswered_since = Some(now);
            self.silence_next = Some(now + self.silence_backoff);
        }
    }

    /// How long data to the peer has gone unanswered, if it has.
    pub fn unanswered_for(&self, now: Instant) -> Option<Duration> {
        self.unanswered_since
            .map(|t| now.saturating_duration_since(t))
    }

    /// Whether we are waiting for the peer to answer (probing, or data unanswered).
    pub fn awaiting_answer(&self) -> bool {
        self.probe.is_some() || self.unanswered_since.is_some()
    }

    /// We sent a datagram straight to the direct endpoint.
    pub fn on_direct_sent(&mut self, now: Instant) {
        self.last_direct_tx = Some(now);
    }

    /// When the peer has been idle (no data either way) for `peer_idle_expiry`.
    pub fn idle_deadline(&self, timing: &Timing) -> Instant {
        self.last_activity.unwrap_or(self.created) + timing.peer_idle_expiry
    }

    fn keepalive_due(&self, timing: &Timing) -> Option<Instant> {
        let PeerRoute::Direct(_) = self.route else {
            return None;
        };
        let active = self.last_activity?;
        // Anything sent straight to the endpoint refreshes the mapping as well as a PILP.
        let due = self.last_direct_tx.unwrap_or(active) + timing.keepalive_interval;
        (due < active + timing.active_window).then_some(due)
    }

    fn dead_due(&self, timing: &Timing) -> Option<Instant> {
        match self.route {
            PeerRoute::Direct(_) => self.unanswered_since.map(|t| t + timing.dead_after),
            _ => None,
        }
    }

    /// The next instant [`PeerPath::handle_timeout`] has something to do.
    pub fn poll_timeout(&self, timing: &Timing) -> Option<Instant> {
        let probe = self.probe.map(|p| p.next.min(p.until));
        [
            probe,
            self.punch_at,
            self.keepalive_due(timing),
            self.dead_due(timing),
            self.silence_next,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs the timers due at `now`, appending what to send to `out`. `relay` says whether a
    /// beacon is configured.
    pub fn handle_timeout(
        &mut self,
        now: Instant,
        relay: bool,
        timing: &Timing,
        out: &mut Vec<PathAction>,
    ) {
        if self.dead_due(timing).is_some_and(|t| t <= now) {
            // Data went unanswered too long on the direct path: relay meanwhile and probe.
            self.route = if relay {
                PeerRoute::Relay
            } else {
                PeerRoute::Probing
            };
            self.punch_at = Some(now);
            self.punch_backoff = timing.punch_retry;
        }
        if self.punch_at.is_some_and(|t| t <= now) {
            self.punch_at = None;
            if relay {
                out.push(PathAction::PunchRequest);
            }
            match self.probe.as_mut() {
                // A punch attempt takes over a LAN search: every candidate is probed now.
                Some(probe) => probe.upgrade = false,
                None => {
                    self.probe = Some(ProbeWindow {
                        next: now,
                        until: now + timing.probe_window,
                        upgrade: false,
                    })
                }
            }
        }
        if let Some(probe) = self.probe.as_mut() {
            if now >= probe.until && probe.upgrade {
                // No LAN candidate answered: the direct path in use stays.
                self.probe = None;
            } else if now >= probe.until {
                self.probe = None;
                // A confirming frame ends the window early, so a path still `Direct` here was
                // being revalidated and nothing confirmed it: it is stale.
                if let PeerRoute::Direct(addr) = self.route {
                    self.route = if relay {
                        PeerRoute::Relay
                    } else {
                        PeerRoute::Probing
                    };
                    self.add_candidate_front(addr);
                }
                if !matches!(self.route, PeerRoute::Direct(_)) {
                    if relay {
                        self.route = PeerRoute::Relay;
                    }
                    // Punch again later, backing off: the NATs may change, or a block lift.
                    self.punch_at = Some(now + self.punch_backoff);
                    self.punch_backoff = (self.punch_backoff * 2).min(timing.punch_retry_max);
                }
            } else if now >= probe.next {
                let others = if probe.upgrade {
                    &[][..]
                } else {
                    &self.candidates[..]
                };
                let lan = self.lan.iter().filter(|a| !self.candidates.contains(a));
                out.extend(
                    others
                        .iter()
                        .chain(lan)
                        .map(|&addr| PathAction::Probe(addr)),
                );
                while probe.next <= now {
                    probe.next += timing.probe_interval.max(Duration::from_millis(1));
                }
            }
        }
        if let Some(due) = self.keepalive_due(timing) {
            if due <= now {
                if let PeerRoute::Direct(addr) = self.route {
                    out.push(PathAction::Keepalive(addr));
                    self.last_direct_tx = Some(now);
                }
            }
        }
        if self.silence_next.is_some_and(|t| t <= now) {
            let repeat = self.silence_resends > 0;
            out.push(PathAction::KeyExchange { repeat });
            if repeat
                && matches!(self.route, PeerRoute::Direct(_))
                && self.probe.is_none()
                && self.punch_at.is_none()
            {
                // Even our re-sent PILA went unanswered: a restarted peer would have answered
                // it, so the path itself is suspect (a NAT on it restarted or rebound). Punch
                // now; if nothing confirms the path within the window it falls back, long
                // before `dead_after`.
                self.punch_at = Some(now);
            }
            self.silence_resends = self.silence_resends.saturating_add(1);
            self.silence_backoff = (self.silence_backoff * 2).min(timing.dead_after);
            self.silence_next = Some(now + self.silence_backoff);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], port))
    }

    /// Steps `path` through its timeouts up to `until`, collecting actions with their times.
    fn run(
        path: &mut PeerPath,
        from: Instant,
        until: Instant,
        relay: bool,
    ) -> Vec<(Duration, PathAction)> {
        let timing = Timing::default();
        let mut now = from;
        let mut seen = Vec::new();
        while let Some(t) = path.poll_timeout(&timing) {
            if t > until {
                break;
            }
            now = now.max(t);
            let mut out = Vec::new();
            path.handle_timeout(now, relay, &timing, &mut out);
            seen.extend(out.into_iter().map(|a| (now - from, a)));
        }
        seen
    }

    #[test]
    fn probes_then_relays_then_punches_again() {
        let t0 = Instant::now();
        let timing = Timing::default();
        let mut path = PeerPath::new(t0, Some(addr(1)), &timing);
        let seen = run(&mut path, t0, t0 + Duration::from_secs(20), true);
        let ms = |d: Duration| d.as_millis();
        let probes: Vec<_> = seen
            .iter()
            .filter(|(_, a)| *a == PathAction::Probe(addr(1)))
            .map(|(t, _)| ms(*t))
            .collect();
        assert_eq!(probes[..6], [0, 250, 500, 750, 1000, 1250]);
        assert_eq!(path.route(), PeerRoute::Relay);
        let punches: Vec<_> = seen
            .iter()
            .filter(|(_, a)| *a == PathAction::PunchRequest)
            .map(|(t, _)| ms(*t))
            .collect();
        assert_eq!(punches, [0, 16_500]);
    }

    #[test]
    fn without_a_beacon_nothing_is_relayed() {
        let t0 = Instant::now();
        let mut path = PeerPath::new(t0, Some(addr(1)), &Timing::default());
        let seen = run(&mut path, t0, t0 + Duration::from_secs(5), false);
        assert!(!seen.contains(&(Duration::ZERO, PathAction::PunchRequest)));
        assert_eq!(path.route(), PeerRoute::Probing);
        assert_eq!(path.direct_destination(), Some(addr(1)));
    }

    #[test]
    fn a_confirmed_frame_ends_probing_and_a_relayed_one_does_not_confirm() {
        let t0 = Instant::now();
        let timing = Timing::default();
        let mut path = PeerPath::new(t0, Some(addr(1)), &timing);
        path.handle_timeout(t0, true, &timing, &mut Vec::new());
        path.on_authenticated(t0, None, true, true, &timing, 8);
        assert_eq!(path.route(), PeerRoute::Relay);
        assert!(
            path.is_probing(),
            "a relayed frame does not stop the search"
        );
        path.on_authenticated(t0, Some(addr(2)), false, true, &timing, 8);
        assert_eq!(
            path.route(),
            PeerRoute::Relay,
            "unconfirming frames move nothing"
        );
        path.on_authenticated(t0, Some(addr(2)), true, true, &timing, 8);
        assert_eq!(path.route(), PeerRoute::Direct(addr(2)));
        assert!(!path.is_probing());
    }

    #[test]
    fn keepalives_while_active_then_stop() {
        let t0 = Instant::now();
        let timing = Timing::default();
        let mut path = PeerPath::inbound(t0, Some(addr(1)), &timing);
        let seen = run(&mut path, t0, t0 + Duration::from_secs(300), true);
        let keepalives: Vec<_> = seen.iter().map(|(t, _)| t.as_secs()).collect();
        assert_eq!(keepalives, [15, 30, 45, 60, 75, 90, 105]);
    }

    #[test]
    fn unanswered_data_rekeys_then_a_second_silence_punches_and_the_path_falls_back() {
        let t0 = Instant::now();
        let timing = Timing::default();
        let mut path = PeerPath::inbound(t0, Some(addr(1)), &timing);
        path.on_data_sent(t0, &timing);
        let seen = run(&mut path, t0, t0 + Duration::from_secs(46), true);
        let rekeys: Vec<_> = seen
            .iter()
            .filter(|(_, a)| matches!(a, PathAction::KeyExchange { .. }))
            .map(|(t, _)| t.as_secs())
            .collect();
        assert_eq!(rekeys, [3, 9, 21, 45]);
        assert_eq!(path.route(), PeerRoute::Relay);
        let punches: Vec<_> = seen
            .iter()
            .filter(|(_, a)| *a == PathAction::PunchRequest)
            .map(|(t, _)| t.as_secs())
            .collect();
        assert_eq!(
            punches.first(),
            Some(&9),
            "at the second silence, not at dead_after"
        );
    }

    fn lan(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 1, 0, 2], port))
    }

    /// Probes in `actions` by address.
    fn probed(actions: &[PathAction]) -> Vec<SocketAddr> {
        actions
            .iter()
            .filter_map(|a| match a {
                PathAction::Probe(addr) => Some(*addr),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_lan_candidate_that_answers_replaces_a_working_direct_path() {
        let t0 = Instant::now();
        let timing = Timing::default();
        let mut path = PeerPath::inbound(t0, Some(addr(1)), &timing);
        path.set_lan_candidates(t0, &[lan(4000)], &timing);
        let mut out = Vec::new();
        path.handle_timeout(t0, true, &timing, &mut out);
        assert_eq!(
            probed(&out),
            [lan(4000)],
            "only the LAN candidate is probed"
        );
        assert!(
            !out.contains(&PathAction::PunchRequest),
            "no punch: a path works"
        );
        // The public path answers first (a hairpin): it stays, the search goes on.
        assert!(!path.on_authenticated(t0, Some(addr(1)), true, true, &timing, 8));
        assert!(path.is_probing());
        let t1 = t0 + Duration::from_millis(5);
        assert!(path.on_authenticated(t1, Some(lan(4000)), true, true, &timing, 8));
        assert_eq!(path.route(), PeerRoute::Direct(lan(4000)));
        assert!(path.on_lan() && !path.is_probing());
        // Fresh frames by the hairpin do not move the path off the LAN.
        path.on_authenticated(t1, Some(addr(1)), true, true, &timing, 8);
        assert_eq!(path.route(), PeerRoute::Direct(lan(4000)));
    }

    #[test]
    fn lan_candidates_that_do_not_answer_leave_the_direct_path_alone() {
        let t0 = Instant::now();
        let timing = Timing::default();
        let mut path = PeerPath::inbound(t0, Some(addr(1)), &timing);
        path.on_data_sent(t0, &timing);
        path.set_lan_candidates(t0, &[lan(4000), lan(4001)], &timing);
        let seen = run(&mut path, t0, t0 + timing.probe_window, true);
        let probes: Vec<_> = seen
            .iter()
            .filter_map(|(_, a)| match a {
                PathAction::Probe(addr) => Some(*addr),
                _ => None,
            })
            .collect();
        assert!(probes.len() >= 10 && probes.iter().all(|a| a.ip() == lan(0).ip()));
        assert!(!path.is_probing(), "the window ended");
        assert_eq!(path.route(), PeerRoute::Direct(addr(1)), "kept");
    }

    #[test]
    fn a_relayed_peer_with_lan_candidates_punches_them_now() {
        let t0 = Instant::now();
        let timing = Timing::default();
        let mut path = PeerPath::inbound(t0, None, &timing);
        assert_eq!(path.route(), PeerRoute::Relay);
        path.set_lan_candidates(t0, &[lan(4000)], &timing);
        let mut out = Vec::new();
        path.handle_timeout(t0, true, &timing, &mut out);
        assert!(probed(&out).contains(&lan(4000)));
        assert!(out.contains(&PathAction::PunchRequest));
        path.on_authenticated(t0, Some(lan(4000)), true, true, &timing, 8);
        assert!(path.on_lan());
    }

    #[test]
    fn a_dead_lan_path_falls_back_and_any_candidate_may_take_over() {
        let t0 = Instant::now();
        let timing = Timing::default();
        let mut path = PeerPath::inbound(t0, Some(addr(1)), &timing);
        path.set_lan_candidates(t0, &[lan(4000)], &timing);
        path.on_authenticated(t0, Some(lan(4000)), true, true, &timing, 8);
        assert!(path.on_lan());
        // The peer left the LAN: data goes unanswered until the path is declared dead.
        path.on_data_sent(t0, &timing);
        let dead = t0 + timing.dead_after;
        let seen = run(&mut path, t0, dead, true);
        assert_eq!(path.route(), PeerRoute::Relay);
        let probes: Vec<_> = seen
            .iter()
            .filter_map(|(_, a)| match a {
                PathAction::Probe(addr) => Some(*addr),
                _ => None,
            })
            .collect();
        assert!(probes.contains(&addr(1)) && probes.contains(&lan(4000)));
        // Its public address answers: the path moves there.
        path.on_authenticated(dead, Some(addr(1)), true, true, &timing, 8);
        assert_eq!(path.route(), PeerRoute::Direct(addr(1)));
    }

    #[test]
    fn lan_candidates_are_bounded_and_replaced() {
        let t0 = Instant::now();
        let timing = Timing::default();
        let mut path = PeerPath::new(t0, Some(addr(1)), &timing);
        let many: Vec<_> = (4000..4010).map(lan).collect();
        path.set_lan_candidates(t0, &many, &timing);
        assert_eq!(path.lan_candidates(), &many[..MAX_LAN_CANDIDATES]);
        path.set_lan_candidates(t0, &[lan(5000)], &timing);
        assert_eq!(path.lan_candidates(), [lan(5000)]);
        assert!(path.is_candidate(lan(5000)) && !path.is_candidate(lan(4000)));
        assert_eq!(
            path.candidates(),
            [addr(1)],
            "the registry's address stays first"
        );
    }

    #[test]
    fn candidates_are_bounded() {
        let t0 = Instant::now();
        let mut path = PeerPath::new(t0, Some(addr(1)), &Timing::default());
        for port in 2..20 {
            path.add_candidate(addr(port), 4);
        }
        assert_eq!(path.candidates(), [addr(1), addr(17), addr(18), addr(19)]);
    }
}

#[test]
fn the_first_send_after_idling_revalidates_the_direct_path() {
    let t0 = Instant::now();
    let timing = Timing::default();
    let mut path = PeerPath::inbound(t0, Some(SocketAddr::from(([192, 0, 2, 1], 1))), &timing);
    let later = t0 + Duration::from_secs(300);
    path.handle_timeout(later, true, &timing, &mut Vec::new());
    path.on_data_sent(later, &timing);
    let mut out = Vec::new();
    path.handle_timeout(later, true, &timing, &mut out);
    assert!(out.contains(&PathAction::PunchRequest));
    assert!(path.is_probing());
    let end = later + timing.probe_window;
    path.handle_timeout(end, true, &timing, &mut Vec::new());
    assert_eq!(path.route(), PeerRoute::Relay, "nothing confirmed it");
}
