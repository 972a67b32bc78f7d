//! Typed forms of the daemon's JSON replies (`spec/services.md` §4.3, §4.4).
//!
//! Every field has a default and unknown fields are ignored, so a daemon that adds or omits a
//! field does not break the SDK. Lists keep unknown fields in `extra`, so tools that print them
//! lose nothing.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The daemon's status (`Info`, IPC 0x0D).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Info {
    /// This node's ID.
    pub node_id: u32,
    /// This node's virtual address (text form).
    pub address: String,
    /// The configured hostname ("" for none).
    pub hostname: String,
    /// Seconds since the daemon started.
    pub uptime_secs: f64,
    /// Connections being set up or established.
    pub connections: u64,
    /// Bound ports.
    pub ports: u64,
    /// Tunnel peers.
    pub peers: u64,
    /// Tunnel peers with encryption.
    pub encrypted_peers: u64,
    /// Tunnel peers whose identity was verified.
    pub authenticated_peers: u64,
    /// Whether tunnel encryption is on.
    pub encrypt: bool,
    /// Whether an identity file is configured (keys persist across restarts).
    pub identity: bool,
    /// This node's Ed25519 public key (base64).
    pub public_key: String,
    /// The owner (e-mail) used for key rotation.
    pub owner: String,
    /// The registry the daemon talks to now (absent from a Go daemon's Info: empty).
    #[serde(default)]
    pub registry: String,
    /// Whether that registry is the standby, the primary not answering.
    #[serde(default)]
    pub registry_standby: bool,
    /// Tunnel bytes sent.
    pub bytes_sent: u64,
    /// Tunnel bytes received.
    pub bytes_recv: u64,
    /// Tunnel packets sent.
    pub pkts_sent: u64,
    /// Tunnel packets received.
    pub pkts_recv: u64,
    /// The tunnel peers.
    #[serde(deserialize_with = "null_as_empty")]
    pub peer_list: Vec<PeerInfo>,
    /// The connections.
    #[serde(deserialize_with = "null_as_empty")]
    pub conn_list: Vec<ConnInfo>,
}

/// One tunnel peer in [`Info::peer_list`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PeerInfo {
    /// The peer's node ID.
    pub node_id: u32,
    /// Its UDP endpoint, `ip:port`.
    pub endpoint: String,
    /// Whether the tunnel is encrypted.
    pub encrypted: bool,
    /// Whether the peer's identity was verified.
    pub authenticated: bool,
}

/// One connection in [`Info::conn_list`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConnInfo {
    /// Connection ID.
    pub id: u32,
    /// Local virtual port.
    pub local_port: u16,
    /// Remote virtual address (text form).
    pub remote_addr: String,
    /// Remote virtual port.
    pub remote_port: u16,
    /// Transport state (`ESTABLISHED`, `SYN_SENT`, ...).
    pub state: String,
    /// Congestion window, bytes.
    pub cong_win: u64,
    /// Slow-start threshold, bytes.
    pub ssthresh: u64,
    /// Bytes in flight.
    pub in_flight: u64,
    /// Smoothed RTT, ms.
    pub srtt_ms: f64,
    /// RTT variation, ms.
    pub rttvar_ms: f64,
    /// Unacknowledged segments.
    pub unacked: u64,
    /// Out-of-order segments buffered.
    pub ooo_buf: u64,
    /// The peer's advertised receive window.
    pub peer_recv_win: u64,
    /// Our receive window.
    pub recv_win: u64,
    /// Whether loss recovery is in progress.
    pub in_recovery: bool,
    /// Bytes sent.
    pub bytes_sent: u64,
    /// Bytes received.
    pub bytes_recv: u64,
    /// Segments sent.
    pub segs_sent: u64,
    /// Segments received.
    pub segs_recv: u64,
    /// Retransmissions.
    pub retransmits: u64,
    /// Fast retransmissions.
    pub fast_retx: u64,
    /// SACK blocks received.
    pub sack_recv: u64,
    /// SACK blocks sent.
    pub sack_sent: u64,
    /// Duplicate ACKs.
    pub dup_acks: u64,
}

/// The reply to a trust operation on one node (handshake, approve, reject, revoke).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrustReply {
    /// The peer.
    pub node_id: u32,
    /// `sent`, `approved`, `rejected` or `revoked`.
    pub status: String,
}

/// A trust request waiting for approval.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PendingRequest {
    /// Who asks.
    pub node_id: u32,
    /// Their Ed25519 key (base64; "" when the request was relayed).
    pub public_key: String,
    /// Why they ask.
    pub justification: String,
    /// When it arrived (Unix seconds).
    pub received_at: i64,
    /// Fields this SDK does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A trusted peer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrustedPeer {
    /// The peer.
    pub node_id: u32,
    /// Its Ed25519 key (base64; "" when learnt through the relay).
    pub public_key: String,
    /// When trust was established (Unix seconds).
    pub approved_at: i64,
    /// Whether both sides approved.
    pub mutual: bool,
    /// The shared network that granted trust (0 for none).
    pub network: u16,
    /// Fields this SDK does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A hostname lookup result (the registry's reply).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Resolved {
    /// The node ID.
    pub node_id: u32,
    /// Its address (text form).
    pub address: String,
    /// Whether the node is public.
    pub public: bool,
    /// The hostname looked up.
    pub hostname: String,
    /// Fields this SDK does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(default)]
#[derive(Default)]
pub(crate) struct PendingList {
    #[serde(deserialize_with = "null_as_empty")]
    pub pending: Vec<PendingRequest>,
}

#[derive(Deserialize)]
#[serde(default)]
#[derive(Default)]
pub(crate) struct TrustedList {
    #[serde(deserialize_with = "null_as_empty")]
    pub trusted: Vec<TrustedPeer>,
}

/// Go encodes an empty list as `null`; read it as empty.
fn null_as_empty<'de, D, T>(de: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(de)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_tolerates_unknown_missing_and_null_fields() {
        let info: Info = serde_json::from_str(
            r#"{"node_id":7,"address":"0:0000.0000.0007","uptime_secs":12,"future":1,
                "peer_list":null,"conn_list":[{"id":1,"state":"ESTABLISHED","srtt_ms":3}]}"#,
        )
        .unwrap();
        assert_eq!(info.node_id, 7);
        assert_eq!(info.uptime_secs, 12.0);
        assert!(info.peer_list.is_empty());
        assert_eq!(info.conn_list[0].state, "ESTABLISHED");
        assert_eq!(info.conn_list[0].srtt_ms, 3.0);
    }

    #[test]
    fn lists_keep_unknown_fields() {
        let list: PendingList = serde_json::from_str(
            r#"{"pending":[{"node_id":9,"justification":"hi","received_at":5,"x":true}]}"#,
        )
        .unwrap();
        assert_eq!(list.pending[0].node_id, 9);
        assert_eq!(list.pending[0].extra["x"], Value::Bool(true));
        let list: TrustedList = serde_json::from_str(r#"{"trusted":null}"#).unwrap();
        assert!(list.trusted.is_empty());
    }
}
