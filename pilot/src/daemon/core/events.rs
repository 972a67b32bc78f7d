//! The data path's webhook events (`spec/services.md` §8): connections, tunnel peers,
//! datagrams and re-registration, as [`Output::Notify`]. The shell posts them only when a
//! webhook is set.

use super::*;
use crate::tunnel::PeerRoute;
use serde_json::json;

/// The event a connection's end is reported as; ends the reference has no event for are not.
fn close_event(reason: CloseReason) -> Option<&'static str> {
    match reason {
        CloseReason::Graceful => Some("conn.fin"),
        CloseReason::Reset => Some("conn.rst"),
        CloseReason::IdleTimeout => Some("conn.idle_timeout"),
        _ => None,
    }
}

impl DaemonCore {
    fn notify(&mut self, event: &'static str, data: serde_json::Value) {
        self.outputs.push_back(Output::Notify(event, data));
    }

    /// An inbound connection completed its handshake.
    pub(super) fn notify_established(
        &mut self,
        id: ConnectionId,
        remote: wire::SocketAddr,
        port: u16,
    ) {
        self.notify(
            "conn.established",
            json!({"src_addr": remote.addr.to_string(), "src_port": remote.port,
                   "dst_port": port, "conn_id": id.0}),
        );
    }

    /// A connection this node holds ended (before it is forgotten).
    pub(super) fn notify_closed(&mut self, id: ConnectionId, reason: CloseReason) {
        let (Some(event), Some(owned)) = (close_event(reason), self.conns.get(&id)) else {
            return;
        };
        let data = json!({"remote_addr": owned.remote.addr.to_string(),
                          "remote_port": owned.remote.port, "local_port": owned.local_port,
                          "conn_id": id.0});
        self.notify(event, data);
    }

    /// A datagram arrived for `dst_port`.
    pub(super) fn notify_datagram(&mut self, src: wire::SocketAddr, dst_port: u16, size: usize) {
        self.notify(
            "data.datagram",
            json!({"src_addr": src.addr.to_string(), "src_port": src.port,
                   "dst_port": dst_port, "size": size}),
        );
    }

    /// The registry told us where a peer is, and the tunnel took it.
    pub(super) fn notify_peer_added(&mut self, node: u32, endpoint: SocketAddr) {
        self.notify(
            "tunnel.peer_added",
            json!({"peer_node_id": node, "endpoint": endpoint.to_string()}),
        );
    }

    /// The tunnel events a webhook reports.
    pub(super) fn notify_tunnel(&mut self, event: &TunnelEvent) {
        match *event {
            TunnelEvent::PeerKeyed { node } => self.notify_keyed(node, false),
            TunnelEvent::PeerRekeyed { node } => self.notify_keyed(node, true),
            TunnelEvent::PeerPathChanged {
                node,
                path: PeerRoute::Relay,
            } => self.notify("tunnel.relay_activated", json!({"peer_node_id": node})),
            TunnelEvent::PeerGone { node } => {
                self.notify("tunnel.peer_gone", json!({"peer_node_id": node}))
            }
            _ => {}
        }
    }

    fn notify_keyed(&mut self, node: u32, rekeyed: bool) {
        // Under the default policy only signed key exchanges set up keys; when unregistered
        // peers are accepted this cannot tell which kind it was, and says false.
        let authenticated = matches!(
            self.tunnel.config().unauthenticated_peers,
            crate::crypto::UnauthenticatedPeers::Refuse
        );
        let relay = self.tunnel.peer_route(node) == Some(PeerRoute::Relay);
        self.notify(
            "tunnel.established",
            json!({"peer_node_id": node, "authenticated": authenticated, "relay": relay,
                   "rekeyed": rekeyed}),
        );
    }

    /// Re-registration succeeded.
    pub(super) fn notify_reregistered(&mut self, node: u32) {
        self.notify(
            "node.reregistered",
            json!({"address": Addr::new(0, node).to_string()}),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_reference_close_events_are_reported() {
        assert_eq!(close_event(CloseReason::Graceful), Some("conn.fin"));
        assert_eq!(close_event(CloseReason::Reset), Some("conn.rst"));
        assert_eq!(
            close_event(CloseReason::IdleTimeout),
            Some("conn.idle_timeout")
        );
        assert_eq!(close_event(CloseReason::DialTimeout), None);
    }
}
