//! The trust state of one node, sans-IO (`spec/services.md` §6.1, §6.5, §6.6).
//!
//! Per peer node there is at most one of each: a trusted record, a pending request (they asked
//! us), and an outgoing request (we asked them). Every operation returns the [`Action`]s the
//! daemon must carry out (send a handshake message, tell the registry, drop the tunnel); the
//! book never does I/O itself.
//!
//! Where the reference lets trust appear unasked (§14 Q3), this does not: an approval creates
//! trust only if we had asked that peer, both over port 444 and through the registry relay.

use std::collections::BTreeMap;

/// Most pending requests kept; the oldest is dropped when a new one arrives beyond it.
pub const MAX_PENDING: usize = 1024;

/// A peer this node trusts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedPeer {
    /// The peer's Ed25519 key when known.
    pub public_key: Option<[u8; 32]>,
    /// Unix seconds when trust was established.
    pub approved_at: i64,
    /// Whether both sides asked for or approved the trust.
    pub mutual: bool,
    /// The shared network that allowed automatic trust (0 = none).
    pub network: u16,
}

/// A request from a peer waiting for approval.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingRequest {
    /// The peer's Ed25519 key when known (requests relayed by the registry carry none).
    pub public_key: Option<[u8; 32]>,
    /// Why the peer asks.
    pub justification: String,
    /// Unix seconds when it arrived.
    pub received_at: i64,
}

/// Something the daemon must do after a trust operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send a handshake request to the peer over port 444; if that fails, relay it through the
    /// registry (`request_handshake`).
    SendRequest {
        /// The peer.
        peer: u32,
        /// Why we ask.
        justification: String,
    },
    /// Send an accept to the peer over port 444; if that fails, relay it through the registry
    /// (`respond_handshake` with accept).
    SendAccept {
        /// The peer.
        peer: u32,
    },
    /// Answer the peer's request through the registry (`respond_handshake` with accept) at
    /// once, beside the direct accept: an approval must not wait for a peer that cannot be
    /// dialled yet (a private node behind a NAT, under loss) to time out first.
    RelayAccept {
        /// The peer.
        peer: u32,
    },
    /// Send a reject to the peer over port 444 (best effort) and tell the registry
    /// (`respond_handshake` without accept).
    SendReject {
        /// The peer.
        peer: u32,
        /// Why.
        reason: String,
    },
    /// Tell the peer over port 444 (best effort) that we revoked trust, and the registry
    /// (`revoke_trust`).
    SendRevoke {
        /// The peer.
        peer: u32,
    },
    /// Report the trust pair to the registry (`report_trust`), so `resolve` works both ways.
    ReportTrust {
        /// The peer.
        peer: u32,
    },
    /// Forget the tunnel state of the peer and close its connections.
    DropPeer {
        /// The peer.
        peer: u32,
    },
    /// The book changed: write it to disk.
    Persist,
    /// Something an operator or webhook may want to know.
    Notify(TrustEvent),
}

/// Events for logs and webhooks (names as the reference's webhook events).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrustEvent {
    /// `handshake.received`.
    Received {
        /// The peer.
        peer: u32,
        /// Why it asks.
        justification: String,
    },
    /// `handshake.pending`.
    Pending {
        /// The peer.
        peer: u32,
    },
    /// `handshake.auto_approved` (both sides asked).
    AutoApproved {
        /// The peer.
        peer: u32,
    },
    /// `handshake.approved`.
    Approved {
        /// The peer.
        peer: u32,
    },
    /// `handshake.rejected`.
    Rejected {
        /// The peer.
        peer: u32,
    },
    /// `trust.revoked`.
    Revoked {
        /// The peer.
        peer: u32,
    },
    /// `trust.revoked_by_peer`.
    RevokedByPeer {
        /// The peer.
        peer: u32,
    },
    /// An accept nobody asked for, ignored.
    UnsolicitedAccept {
        /// The peer.
        peer: u32,
    },
}

impl TrustEvent {
    /// The webhook event name and data (`spec/services.md` §8); `None` for events the
    /// reference does not post.
    pub fn webhook(&self) -> Option<(&'static str, serde_json::Value)> {
        use serde_json::json;
        Some(match self {
            TrustEvent::Received {
                peer,
                justification,
            } => (
                "handshake.received",
                json!({"peer_node_id": peer, "justification": justification}),
            ),
            TrustEvent::Pending { peer } => (
                "handshake.pending",
                json!({"peer_node_id": peer, "justification": ""}),
            ),
            TrustEvent::AutoApproved { peer } => (
                "handshake.auto_approved",
                json!({"peer_node_id": peer, "reason": "mutual"}),
            ),
            TrustEvent::Approved { peer } => ("handshake.approved", json!({"peer_node_id": peer})),
            TrustEvent::Rejected { peer } => (
                "handshake.rejected",
                json!({"peer_node_id": peer, "reason": ""}),
            ),
            TrustEvent::Revoked { peer } => ("trust.revoked", json!({"peer_node_id": peer})),
            TrustEvent::RevokedByPeer { peer } => {
                ("trust.revoked_by_peer", json!({"peer_node_id": peer}))
            }
            TrustEvent::UnsolicitedAccept { .. } => return None,
        })
    }
}

/// Why a trust operation was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    /// Approve or reject without a request from that peer.
    #[error("no pending handshake request from node {0}")]
    NotPending(u32),
    /// Revoke of a peer that was not trusted.
    #[error("node {0} was not trusted")]
    NotTrusted(u32),
    /// A request to ourselves.
    #[error("node {0} is this node")]
    Ourselves(u32),
}

/// What [`TrustBook::request`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestOutcome {
    /// A request is on its way.
    Sent,
    /// The peer is already trusted; nothing was sent.
    AlreadyTrusted,
}

/// The trust state of this node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustBook {
    own_node: u32,
    trusted: BTreeMap<u32, TrustedPeer>,
    pending: BTreeMap<u32, PendingRequest>,
    /// Requests we sent, with when (Unix seconds). Persisted, so a restart does not forget
    /// that an approval from that peer is expected.
    outgoing: BTreeMap<u32, i64>,
}

impl TrustBook {
    /// An empty book for node `own_node`.
    pub fn new(own_node: u32) -> Self {
        TrustBook {
            own_node,
            ..Self::default()
        }
    }

    /// A book with the given contents (from the trust file).
    pub fn from_parts(
        own_node: u32,
        trusted: BTreeMap<u32, TrustedPeer>,
        pending: BTreeMap<u32, PendingRequest>,
        outgoing: BTreeMap<u32, i64>,
    ) -> Self {
        TrustBook {
            own_node,
            trusted,
            pending,
            outgoing,
        }
    }

    /// Changes this node's ID (after a registry assigned a new one).
    pub fn set_own_node(&mut self, node: u32) {
        self.own_node = node;
    }

    /// Whether `peer` is trusted.
    pub fn is_trusted(&self, peer: u32) -> bool {
        self.trusted.contains_key(&peer)
    }

    /// Trusted peers, by node ID.
    pub fn trusted(&self) -> &BTreeMap<u32, TrustedPeer> {
        &self.trusted
    }

    /// Pending requests, by node ID.
    pub fn pending(&self) -> &BTreeMap<u32, PendingRequest> {
        &self.pending
    }

    /// Outgoing requests, by node ID, with when they were sent.
    pub fn outgoing(&self) -> &BTreeMap<u32, i64> {
        &self.outgoing
    }

    /// We ask `peer` for trust.
    pub fn request(
        &mut self,
        peer: u32,
        justification: &str,
        now: i64,
    ) -> Result<(RequestOutcome, Vec<Action>), TrustError> {
        if peer == self.own_node {
            return Err(TrustError::Ourselves(peer));
        }
        if self.is_trusted(peer) {
            return Ok((RequestOutcome::AlreadyTrusted, Vec::new()));
        }
        self.outgoing.insert(peer, now);
        if self.pending.contains_key(&peer) {
            // They asked us first: asking back is agreeing.
            let actions = self.establish(peer, None, now, TrustEvent::AutoApproved { peer });
            return Ok((RequestOutcome::Sent, actions));
        }
        Ok((
            RequestOutcome::Sent,
            vec![
                Action::SendRequest {
                    peer,
                    justification: justification.to_string(),
                },
                Action::Persist,
            ],
        ))
    }

    /// Both sides agree: record trust, answer with an accept, tell the registry.
    fn establish(
        &mut self,
        peer: u32,
        key: Option<[u8; 32]>,
        now: i64,
        event: TrustEvent,
    ) -> Vec<Action> {
        let pending_key = self.pending.remove(&peer).and_then(|p| p.public_key);
        self.outgoing.remove(&peer);
        self.trusted.insert(
            peer,
            TrustedPeer {
                public_key: key.or(pending_key),
                approved_at: now,
                mutual: true,
                network: 0,
            },
        );
        vec![
            Action::Persist,
            Action::Notify(event),
            Action::SendAccept { peer },
            Action::ReportTrust { peer },
        ]
    }

    /// A verified `handshake_request` from `peer` (over port 444, `key` known), or a relayed
    /// one from the registry (`key` unknown).
    pub fn on_request(
        &mut self,
        peer: u32,
        key: Option<[u8; 32]>,
        justification: &str,
        now: i64,
    ) -> Vec<Action> {
        let received = Action::Notify(TrustEvent::Received {
            peer,
            justification: justification.to_string(),
        });
        if peer == self.own_node {
            return Vec::new();
        }
        // A request relayed by the registry (no key) is answered the same way at once
        // (spec/services.md §6.6 rule 16), beside the direct accept.
        let relayed = key.is_none().then_some(Action::RelayAccept { peer });
        if self.is_trusted(peer) {
            // They may have lost our accept; say it again.
            return [received, Action::SendAccept { peer }]
                .into_iter()
                .chain(relayed)
                .collect();
        }
        if self.outgoing.contains_key(&peer) {
            let mut actions = vec![received];
            actions.extend(self.establish(peer, key, now, TrustEvent::AutoApproved { peer }));
            actions.extend(relayed);
            return actions;
        }
        if self.pending.len() >= MAX_PENDING && !self.pending.contains_key(&peer) {
            let oldest = self
                .pending
                .iter()
                .min_by_key(|(node, p)| (p.received_at, **node))
                .map(|(node, _)| *node);
            if let Some(oldest) = oldest {
                self.pending.remove(&oldest);
            }
        }
        self.pending.insert(
            peer,
            PendingRequest {
                public_key: key,
                justification: justification.to_string(),
                received_at: now,
            },
        );
        vec![
            received,
            Action::Persist,
            Action::Notify(TrustEvent::Pending { peer }),
        ]
    }

    /// A verified `handshake_accept` from `peer`, or a relayed positive response. Creates trust
    /// only when we asked `peer`.
    pub fn on_accept(&mut self, peer: u32, key: Option<[u8; 32]>, now: i64) -> Vec<Action> {
        if self.is_trusted(peer) {
            if let (Some(key), Some(record)) = (key, self.trusted.get_mut(&peer)) {
                if record.public_key.is_none() {
                    record.public_key = Some(key);
                    return vec![Action::Persist];
                }
            }
            return Vec::new();
        }
        if !self.outgoing.contains_key(&peer) {
            return vec![Action::Notify(TrustEvent::UnsolicitedAccept { peer })];
        }
        let mut actions = self.establish(peer, key, now, TrustEvent::Approved { peer });
        // They accepted our request: no need to send them an accept back.
        actions.retain(|a| !matches!(a, Action::SendAccept { .. }));
        actions
    }

    /// A verified `handshake_reject` from `peer`, or a relayed negative response.
    pub fn on_reject(&mut self, peer: u32) -> Vec<Action> {
        if self.outgoing.remove(&peer).is_some() {
            vec![
                Action::Persist,
                Action::Notify(TrustEvent::Rejected { peer }),
            ]
        } else {
            Vec::new()
        }
    }

    /// A verified `handshake_revoke` from `peer`.
    pub fn on_revoke(&mut self, peer: u32) -> Vec<Action> {
        let was_trusted = self.trusted.remove(&peer).is_some();
        let changed = was_trusted
            | self.pending.remove(&peer).is_some()
            | self.outgoing.remove(&peer).is_some();
        let mut actions = Vec::new();
        if changed {
            actions.push(Action::Persist);
        }
        if was_trusted {
            actions.push(Action::Notify(TrustEvent::RevokedByPeer { peer }));
            actions.push(Action::DropPeer { peer });
        }
        actions
    }

    /// The operator approves the pending request from `peer`.
    pub fn approve(&mut self, peer: u32, now: i64) -> Result<Vec<Action>, TrustError> {
        if !self.pending.contains_key(&peer) {
            return Err(TrustError::NotPending(peer));
        }
        let relayed = self
            .pending
            .get(&peer)
            .is_some_and(|p| p.public_key.is_none());
        let mut actions = self.establish(peer, None, now, TrustEvent::Approved { peer });
        // A request that came through the registry (no key) is answered through it at once
        // too (spec/services.md §6.5 rule 11); the registry refuses an answer to a request it
        // never relayed, so a direct request gets only the direct accept.
        if relayed {
            actions.push(Action::RelayAccept { peer });
        }
        Ok(actions)
    }

    /// The operator rejects the pending request from `peer`.
    pub fn reject(&mut self, peer: u32, reason: &str) -> Result<Vec<Action>, TrustError> {
        if self.pending.remove(&peer).is_none() {
            return Err(TrustError::NotPending(peer));
        }
        Ok(vec![
            Action::Persist,
            Action::Notify(TrustEvent::Rejected { peer }),
            Action::SendReject {
                peer,
                reason: reason.to_string(),
            },
        ])
    }

    /// The operator revokes trust in `peer`.
    pub fn revoke(&mut self, peer: u32) -> Result<Vec<Action>, TrustError> {
        let was_trusted = self.trusted.remove(&peer).is_some();
        let changed = was_trusted
            | self.pending.remove(&peer).is_some()
            | self.outgoing.remove(&peer).is_some();
        if !was_trusted {
            return if changed {
                Ok(vec![Action::Persist])
            } else {
                Err(TrustError::NotTrusted(peer))
            };
        }
        Ok(vec![
            Action::Persist,
            Action::Notify(TrustEvent::Revoked { peer }),
            // Tell the peer before the tunnel goes, so the notice can still be delivered.
            Action::SendRevoke { peer },
            Action::DropPeer { peer },
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;
    const ME: u32 = 1;
    const PEER: u32 = 7;

    fn has(actions: &[Action], wanted: &Action) -> bool {
        actions.contains(wanted)
    }

    #[test]
    fn request_then_their_accept_makes_mutual_trust() {
        let mut book = TrustBook::new(ME);
        let (outcome, actions) = book.request(PEER, "hi", NOW).unwrap();
        assert_eq!(outcome, RequestOutcome::Sent);
        assert!(has(
            &actions,
            &Action::SendRequest {
                peer: PEER,
                justification: "hi".into()
            }
        ));
        let actions = book.on_accept(PEER, Some([9; 32]), NOW + 1);
        assert!(book.is_trusted(PEER));
        assert!(has(&actions, &Action::ReportTrust { peer: PEER }));
        assert!(!actions
            .iter()
            .any(|a| matches!(a, Action::SendAccept { .. })));
        assert!(book.trusted()[&PEER].mutual);
        assert_eq!(book.trusted()[&PEER].public_key, Some([9; 32]));
        assert!(book.outgoing().is_empty());
    }

    #[test]
    fn an_accept_nobody_asked_for_creates_no_trust() {
        // The reference trusts any node that sends an accept (services §14 Q3).
        let mut book = TrustBook::new(ME);
        let actions = book.on_accept(PEER, Some([9; 32]), NOW);
        assert!(!book.is_trusted(PEER));
        assert_eq!(
            actions,
            vec![Action::Notify(TrustEvent::UnsolicitedAccept { peer: PEER })]
        );
    }

    #[test]
    fn their_request_waits_for_approval() {
        let mut book = TrustBook::new(ME);
        let actions = book.on_request(PEER, Some([9; 32]), "please", NOW);
        assert!(!book.is_trusted(PEER));
        assert!(has(
            &actions,
            &Action::Notify(TrustEvent::Pending { peer: PEER })
        ));
        assert_eq!(book.pending()[&PEER].justification, "please");
        let actions = book.approve(PEER, NOW + 5).unwrap();
        assert!(book.is_trusted(PEER));
        assert!(book.pending().is_empty());
        assert!(has(&actions, &Action::SendAccept { peer: PEER }));
        assert!(has(&actions, &Action::ReportTrust { peer: PEER }));
        assert!(!has(&actions, &Action::RelayAccept { peer: PEER }));
        assert_eq!(book.trusted()[&PEER].public_key, Some([9; 32]));
    }

    #[test]
    fn relayed_requests_are_answered_through_the_registry_at_once() {
        // Approved by the operator.
        let mut book = TrustBook::new(ME);
        book.on_request(PEER, None, "via the registry", NOW);
        let actions = book.approve(PEER, NOW).unwrap();
        assert!(has(&actions, &Action::RelayAccept { peer: PEER }));
        assert!(has(&actions, &Action::SendAccept { peer: PEER }));
        // Asked back through the registry while our own request is outstanding.
        let mut book = TrustBook::new(ME);
        book.request(PEER, "a", NOW).unwrap();
        let actions = book.on_request(PEER, None, "b", NOW);
        assert!(has(&actions, &Action::RelayAccept { peer: PEER }));
        // Asked again through the registry once trusted: they lost our answer.
        let actions = book.on_request(PEER, None, "again", NOW);
        assert!(has(&actions, &Action::RelayAccept { peer: PEER }));
        // Asked over port 444 (key known): the direct accept is the answer.
        let actions = book.on_request(PEER, Some([9; 32]), "direct", NOW);
        assert!(!has(&actions, &Action::RelayAccept { peer: PEER }));
        assert!(has(&actions, &Action::SendAccept { peer: PEER }));
    }

    #[test]
    fn both_asking_is_mutual_and_automatic() {
        let mut book = TrustBook::new(ME);
        book.request(PEER, "a", NOW).unwrap();
        let actions = book.on_request(PEER, None, "b", NOW);
        assert!(book.is_trusted(PEER));
        assert!(has(&actions, &Action::SendAccept { peer: PEER }));
        assert!(has(
            &actions,
            &Action::Notify(TrustEvent::AutoApproved { peer: PEER })
        ));

        let mut other = TrustBook::new(ME);
        other.on_request(PEER, None, "b", NOW);
        let (_, actions) = other.request(PEER, "a", NOW).unwrap();
        assert!(
            other.is_trusted(PEER),
            "asking back a pending peer is agreeing"
        );
        assert!(has(&actions, &Action::SendAccept { peer: PEER }));
    }

    #[test]
    fn approve_and_reject_need_a_pending_request() {
        let mut book = TrustBook::new(ME);
        assert_eq!(book.approve(PEER, NOW), Err(TrustError::NotPending(PEER)));
        assert_eq!(book.reject(PEER, "no"), Err(TrustError::NotPending(PEER)));
        book.on_request(PEER, None, "", NOW);
        let actions = book.reject(PEER, "no").unwrap();
        assert!(has(
            &actions,
            &Action::SendReject {
                peer: PEER,
                reason: "no".into()
            }
        ));
        assert!(book.pending().is_empty());
        assert!(!book.is_trusted(PEER));
    }

    #[test]
    fn revoke_both_ways() {
        let mut book = TrustBook::new(ME);
        assert_eq!(book.revoke(PEER), Err(TrustError::NotTrusted(PEER)));
        book.request(PEER, "", NOW).unwrap();
        book.on_accept(PEER, None, NOW);
        let actions = book.revoke(PEER).unwrap();
        assert!(!book.is_trusted(PEER));
        assert!(has(&actions, &Action::SendRevoke { peer: PEER }));
        assert!(has(&actions, &Action::DropPeer { peer: PEER }));

        book.request(PEER, "", NOW).unwrap();
        book.on_accept(PEER, None, NOW);
        let actions = book.on_revoke(PEER);
        assert!(!book.is_trusted(PEER));
        assert!(has(&actions, &Action::DropPeer { peer: PEER }));
        assert!(
            book.on_revoke(PEER).is_empty(),
            "a second revoke changes nothing"
        );
    }

    #[test]
    fn trusted_peer_asking_again_gets_an_accept() {
        let mut book = TrustBook::new(ME);
        book.request(PEER, "", NOW).unwrap();
        book.on_accept(PEER, None, NOW);
        let actions = book.on_request(PEER, None, "again", NOW);
        assert!(has(&actions, &Action::SendAccept { peer: PEER }));
        assert!(book.pending().is_empty());
        assert_eq!(
            book.request(PEER, "", NOW).unwrap().0,
            RequestOutcome::AlreadyTrusted
        );
        assert_eq!(book.request(ME, "", NOW), Err(TrustError::Ourselves(ME)));
    }

    #[test]
    fn pending_requests_are_bounded() {
        let mut book = TrustBook::new(ME);
        for peer in 0..(MAX_PENDING as u32 + 10) {
            book.on_request(1000 + peer, None, "", NOW + i64::from(peer));
        }
        assert_eq!(book.pending().len(), MAX_PENDING);
        assert!(
            !book.pending().contains_key(&1000),
            "the oldest was dropped"
        );
    }

    #[test]
    fn reject_from_peer_clears_our_request() {
        let mut book = TrustBook::new(ME);
        book.request(PEER, "", NOW).unwrap();
        assert!(!book.on_reject(PEER).is_empty());
        assert!(book.outgoing().is_empty());
        assert!(book.on_reject(PEER).is_empty());
        assert!(
            book.on_accept(PEER, None, NOW).len() == 1,
            "a late accept is now unsolicited"
        );
    }
}
