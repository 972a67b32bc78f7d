//! Time: the next deadline and what each timer does when it fires.

use super::{CloseReason, Connection, State, MAX_TAIL_PROBES};
use std::time::Instant;

impl Connection {
    /// The earliest instant at which [`Connection::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let live = matches!(self.state, State::Established | State::Closing);
        let idle = if live {
            self.config.idle_timeout.map(|d| self.last_recv + d)
        } else {
            None
        };
        [
            self.rto_at,
            self.tlp_at,
            self.rack_at,
            self.delayed_ack_at,
            self.pace_at,
            self.persist_at,
            if live { self.keepalive_at } else { None },
            idle,
            self.time_wait_until,
            self.linger_until,
            self.fin_gap_until,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.time_wait_until.is_some_and(|t| t <= now) {
            // TIME_WAIT ends, whatever arrives meanwhile (Q6).
            self.time_wait_until = None;
            self.state = State::Closed;
            return;
        }
        if self.linger_until.is_some_and(|t| t <= now) {
            self.pending.rst = true;
            self.finish(CloseReason::LingerTimeout, now);
            return;
        }
        if self.fin_gap_until.is_some_and(|t| t <= now) {
            self.finish(CloseReason::Incomplete, now);
            return;
        }
        let live = matches!(self.state, State::Established | State::Closing);
        if live {
            if let Some(idle) = self.config.idle_timeout {
                if self.last_recv + idle <= now {
                    self.pending.rst = true;
                    self.finish(CloseReason::IdleTimeout, now);
                    return;
                }
            }
        }
        if self.rack_at.is_some_and(|t| t <= now) {
            self.rack_at = None;
            let lost = self.detect_lost_by_time(now) > 0;
            // A first loss, or a loss of data sent during the episode (see `on_ack`).
            if lost && (!self.in_recovery || (self.send.lost_in_epoch() && self.queue_building())) {
                self.enter_recovery(now);
            }
        }
        if self.tlp_at.is_some_and(|t| t <= now) {
            self.tlp_at = None;
            if self.send.flight() > 0 {
                // The probe stands in for the RTO, which restarts behind it.
                self.tlp_probes += 1;
                self.pending.tlp = true;
                self.stats.tail_probes += 1;
                let rto = now + self.rtt.rto();
                self.rto_at = Some(rto);
                // A lost probe (or its lost ACK) gets a second one a doubled probe time
                // later, as QUIC's PTO backs off, before the RTO collapses the window: at a
                // few percent of loss each way one probe in ten would otherwise end in it.
                if self.tlp_probes < MAX_TAIL_PROBES {
                    self.tlp_at = self
                        .probe_time()
                        .map(|pto| (now + pto * (1 << self.tlp_probes)).min(rto));
                }
            }
        }
        if self.rto_at.is_some_and(|t| t <= now) {
            self.rto_at = None;
            self.on_rto(now);
            if self.state == State::Closed {
                return;
            }
        }
        if self.pace_at.is_some_and(|t| t <= now) {
            self.pace_at = None;
        }
        if self.delayed_ack_at.is_some_and(|t| t <= now) {
            self.delayed_ack_at = None;
            self.pending.ack = true;
        }
        if self.persist_at.is_some_and(|t| t <= now) {
            self.persist_at = None;
            self.pending.probe = true;
            self.persist_backoff = (self.persist_backoff * 2).min(self.config.persist_max);
        }
        if live && self.keepalive_at.is_some_and(|t| t <= now) {
            self.keepalive_at = self.config.keepalive_interval.map(|d| now + d);
            if self.send.flight() == 0 {
                self.pending.keepalive = true;
            }
            // Nothing moving: give the buffers back (idle connections stay small).
            if self.send.is_empty() {
                self.send.release();
            }
            if self.recv.readable() == 0 {
                self.recv.release();
            }
        }
    }

    fn on_rto(&mut self, now: Instant) {
        if self.state == State::SynSent {
            self.syn_retries += 1;
            // A seeded (short) first timeout sends more SYNs early, but the dial lasts as long
            // as the configured schedule before it fails.
            if self.syn_retries > self.config.syn_retries && now >= self.dial_deadline {
                self.finish(CloseReason::DialTimeout, now);
                return;
            }
            self.pending.syn = true;
            self.stats.syn_retransmits += 1;
            self.syn_rto = (self.syn_rto * 2).min(self.config.syn_max_rto);
            let mut next = now + self.syn_rto;
            if self.syn_retries >= self.config.syn_retries {
                next = next.min(self.dial_deadline.max(now));
            }
            self.rto_at = Some(next);
            return;
        }
        let fin_outstanding = self.fin_seq.is_some() && !self.fin_acked;
        if self.send.flight() == 0 && !fin_outstanding {
            return;
        }
        self.silent_timeouts += 1;
        self.stats.timeouts += 1;
        if self.silent_timeouts >= self.config.max_transmissions {
            self.pending.rst = true;
            self.finish(CloseReason::TimedOut, now);
            return;
        }
        self.rtt.back_off();
        if !self.confirmed {
            // Nothing from the dialler since its SYN: our SYN-ACK may be what was lost, and a
            // dialler still waiting for it drops the data we resend. Resend it too.
            self.pending.syn_ack = true;
        }
        if self.send.flight() > 0 {
            if self.silent_timeouts == 1 {
                self.cc.on_timeout(now, self.send.flight());
            }
            // Everything unSACKed is resent, in order, as the window allows; this connection's
            // data is retransmitted in every state until acknowledged (Q10).
            self.send.mark_all_lost();
            self.epoch = self.epoch.wrapping_add(1);
            self.in_recovery = true;
            self.recovery_congested = true;
            self.recovery_point = self.send.nxt();
            self.dup_acks = 0;
        } else {
            self.pending.fin = true;
        }
        self.rto_at = Some(now + self.rtt.rto());
    }
}
