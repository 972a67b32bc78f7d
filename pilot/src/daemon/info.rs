//! The JSON the daemon answers Info and the trust listings with (`spec/services.md` §4.3, §4.4).

use super::core::DaemonCore;
use crate::crypto::to_base64;
use crate::services::trust::TrustBook;
use crate::transport::State;
use crate::tunnel::PeerRoute;
use crate::wire::Addr;
use serde_json::{json, Value};

/// What Info reports besides the core's state.
#[derive(Clone, Debug)]
pub struct InfoContext {
    /// The configured hostname.
    pub hostname: String,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// Whether an identity file is configured.
    pub identity: bool,
    /// This node's public key.
    pub public_key: [u8; 32],
    /// Owner e-mail.
    pub owner: String,
    /// The registry calls go to now.
    pub registry: String,
    /// Whether that is a standby (the primary did not answer).
    pub registry_standby: bool,
}

fn state_text(state: State) -> &'static str {
    match state {
        State::SynSent => "SYN_SENT",
        State::Established => "ESTABLISHED",
        State::Closing => "FIN_WAIT",
        State::TimeWait => "TIME_WAIT",
        State::Closed => "CLOSED",
    }
}

/// The InfoOK document.
pub fn info_json(core: &DaemonCore, ctx: &InfoContext) -> Value {
    let tunnel = core.tunnel();
    let encrypt = tunnel.config().encryption;
    let peers: Vec<Value> = tunnel
        .peers()
        .map(|node| {
            let endpoint = match tunnel.peer_route(node) {
                Some(PeerRoute::Direct(a)) => a.to_string(),
                Some(PeerRoute::Relay) => "relay".to_string(),
                _ => String::new(),
            };
            let keyed = tunnel.is_keyed(node);
            json!({"node_id": node, "endpoint": endpoint,
                   "encrypted": keyed && encrypt, "authenticated": keyed})
        })
        .collect();
    let keyed = tunnel.peers().filter(|n| tunnel.is_keyed(*n)).count();
    let mut conns: Vec<(u32, Value)> = core
        .conns
        .iter()
        .filter_map(|(id, owned)| {
            let c = core.endpoint().connection(*id)?;
            let s = c.stats();
            Some((
                id.0,
                json!({
                    "id": id.0, "local_port": owned.local_port,
                    "remote_addr": owned.remote.addr.to_string(), "remote_port": owned.remote.port,
                    "state": state_text(c.state()), "cong_win": s.cwnd,
                    "in_flight": c.unacknowledged(), "srtt_ms": (s.srtt_us / 1000) as f64,
                    "unacked": c.unacknowledged(), "bytes_sent": s.bytes_sent,
                    "bytes_recv": s.bytes_received, "segs_sent": s.packets_sent,
                    "segs_recv": s.packets_received, "retransmits": s.retransmits,
                    "fast_retx": s.fast_retransmits, "sack_recv": s.sacks_received,
                    "dup_acks": s.dup_acks,
                }),
            ))
        })
        .collect();
    conns.sort_by_key(|(id, _)| *id);
    let live = core
        .conns
        .keys()
        .filter_map(|id| core.endpoint().connection(*id))
        .filter(|c| matches!(c.state(), State::SynSent | State::Established))
        .count();
    let counters = core.counters();
    json!({
        "node_id": core.node_id(),
        "address": Addr::backbone(core.node_id()).to_string(),
        "hostname": ctx.hostname,
        "uptime_secs": ctx.uptime_secs as f64,
        "connections": live,
        "ports": core.bound_ports(),
        "peers": peers.len(),
        "encrypted_peers": if encrypt { keyed } else { 0 },
        "authenticated_peers": keyed,
        "encrypt": encrypt,
        "identity": ctx.identity,
        "public_key": to_base64(&ctx.public_key),
        "owner": ctx.owner,
        "registry": ctx.registry,
        "registry_standby": ctx.registry_standby,
        "bytes_sent": counters.bytes_sent,
        "bytes_recv": counters.bytes_recv,
        "pkts_sent": counters.pkts_sent,
        "pkts_recv": counters.pkts_recv,
        "peer_list": peers,
        "conn_list": conns.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
    })
}

/// `{"pending":[...]}` for Handshake/Pending.
pub fn pending_json(book: &TrustBook) -> Value {
    let list: Vec<Value> = book
        .pending()
        .iter()
        .map(|(node, p)| {
            json!({"node_id": node,
                   "public_key": p.public_key.map(|k| to_base64(&k)).unwrap_or_default(),
                   "justification": p.justification, "received_at": p.received_at})
        })
        .collect();
    json!({ "pending": list })
}

/// `{"trusted":[...]}` for Handshake/Trusted.
pub fn trusted_json(book: &TrustBook) -> Value {
    let list: Vec<Value> = book
        .trusted()
        .iter()
        .map(|(node, t)| {
            json!({"node_id": node,
                   "public_key": t.public_key.map(|k| to_base64(&k)).unwrap_or_default(),
                   "approved_at": t.approved_at, "mutual": t.mutual, "network": t.network})
        })
        .collect();
    json!({ "trusted": list })
}
