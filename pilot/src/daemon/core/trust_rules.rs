//! The trust side of the core: IPC trust commands, verified and relayed handshake messages,
//! and the actions the trust rules return (messages to send, registry calls, persistence,
//! resetting a peer's connections).

use super::DaemonCore;
use crate::daemon::types::{Output, Relay, TrustJob};
use crate::registry::client::HandshakeEvent;
use crate::services::trust::{self, book::TrustEvent, Action, MessageKind, HANDSHAKE_PORT};
use crate::transport::ConnectionId;
use std::time::Instant;

impl DaemonCore {
    /// An IPC handshake command.
    pub fn handshake(
        &mut self,
        now: Instant,
        now_unix: i64,
        cmd: crate::ipc::HandshakeCommand,
    ) -> Result<serde_json::Value, String> {
        use crate::ipc::HandshakeCommand as H;
        use serde_json::json;
        match cmd {
            H::Send {
                node,
                justification,
            } => {
                let (_, actions) = self
                    .trust
                    .request(node, &justification, now_unix)
                    .map_err(|e| format!("handshake request: {e}"))?;
                self.apply(now, actions);
                Ok(json!({"node_id": node, "status": "sent"}))
            }
            H::Approve { node } => {
                // Approving nothing is a success, as in the reference.
                if let Ok(actions) = self.trust.approve(node, now_unix) {
                    self.apply(now, actions);
                }
                Ok(json!({"node_id": node, "status": "approved"}))
            }
            H::Reject { node, reason } => {
                if let Ok(actions) = self.trust.reject(node, &reason) {
                    self.apply(now, actions);
                }
                Ok(json!({"node_id": node, "status": "rejected"}))
            }
            H::Revoke { node } => {
                let actions = self
                    .trust
                    .revoke(node)
                    .map_err(|e| format!("handshake revoke: {e}"))?;
                self.apply(now, actions);
                Ok(json!({"node_id": node, "status": "revoked"}))
            }
            H::Pending => Ok(crate::daemon::info::pending_json(&self.trust)),
            H::Trusted => Ok(crate::daemon::info::trusted_json(&self.trust)),
        }
    }

    /// A handshake message from `peer` over port 444, already verified against the registry's
    /// key. Replays are dropped here.
    pub fn on_handshake_message(
        &mut self,
        now: Instant,
        now_unix: i64,
        peer: u32,
        message: &trust::HandshakeMessage,
        key: [u8; 32],
    ) {
        let Ok(kind) = message.kind() else { return };
        if !self.replay.insert(message.digest(), now_unix) {
            tracing::info!(peer, "replayed handshake message dropped");
            return;
        }
        let actions = match kind {
            MessageKind::Request => {
                self.trust
                    .on_request(peer, Some(key), &message.justification, now_unix)
            }
            MessageKind::Accept => self.trust.on_accept(peer, Some(key), now_unix),
            MessageKind::Reject => self.trust.on_reject(peer),
            MessageKind::Revoke => self.trust.on_revoke(peer),
        };
        self.apply(now, actions);
    }

    /// A handshake relayed by the registry (pushed or polled).
    pub fn on_relayed(&mut self, now: Instant, now_unix: i64, event: HandshakeEvent) {
        let actions = match event {
            HandshakeEvent::Request(r) => {
                self.trust
                    .on_request(r.from_node_id, None, &r.justification, now_unix)
            }
            HandshakeEvent::Response(r) if r.accept => {
                self.trust.on_accept(r.from_node_id, None, now_unix)
            }
            HandshakeEvent::Response(r) => self.trust.on_reject(r.from_node_id),
        };
        self.apply(now, actions);
    }

    pub(super) fn apply(&mut self, now: Instant, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::SendRequest {
                    peer,
                    justification,
                } => self.trust_job(TrustJob::Send {
                    peer,
                    kind: MessageKind::Request,
                    text: justification,
                    relay: Relay::Request,
                }),
                Action::SendAccept { peer } => self.trust_job(TrustJob::Send {
                    peer,
                    kind: MessageKind::Accept,
                    text: String::new(),
                    relay: Relay::Accept,
                }),
                Action::RelayAccept { peer } => {
                    self.trust_job(TrustJob::Respond { peer, accept: true })
                }
                Action::SendReject { peer, reason } => {
                    self.trust_job(TrustJob::Respond {
                        peer,
                        accept: false,
                    });
                    self.trust_job(TrustJob::Send {
                        peer,
                        kind: MessageKind::Reject,
                        text: reason,
                        relay: Relay::None,
                    });
                }
                Action::SendRevoke { peer } => {
                    self.trust_job(TrustJob::RevokeTrust { peer });
                    self.trust_job(TrustJob::Send {
                        peer,
                        kind: MessageKind::Revoke,
                        text: "trust revoked".into(),
                        relay: Relay::None,
                    });
                }
                Action::ReportTrust { peer } => self.trust_job(TrustJob::ReportTrust { peer }),
                Action::DropPeer { peer } => self.drop_peer(now, peer),
                Action::Persist => self
                    .outputs
                    .push_back(Output::PersistTrust(trust::store::encode(&self.trust))),
                Action::Notify(event) => {
                    log_trust_event(&event);
                    if let Some((name, data)) = event.webhook() {
                        self.outputs.push_back(Output::Notify(name, data));
                    }
                }
            }
        }
    }

    pub(super) fn trust_job(&mut self, job: TrustJob) {
        self.outputs.push_back(Output::Trust(job));
    }

    /// Trust in `peer` ended: its connections are reset. The tunnel state stays until the
    /// revoke notice (queued just before) is on its way; the peer can no longer open anything
    /// but the handshake port.
    pub(super) fn drop_peer(&mut self, now: Instant, peer: u32) {
        let ids: Vec<ConnectionId> = self
            .conns
            .iter()
            .filter(|(_, o)| o.remote.addr.node == peer && o.remote.port != HANDSHAKE_PORT)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.endpoint.with_connection(id, now, |c| c.abort(now));
        }
    }
}

fn log_trust_event(event: &TrustEvent) {
    tracing::info!(?event, "trust");
}
