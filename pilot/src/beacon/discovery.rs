//! Finding peer beacons through the registry (`spec/wire.md` §6.8, `spec/registry.md` §6.16):
//! register ourselves with `beacon_register`, then read everyone with `beacon_list`, over one
//! plain TCP connection framed as u32 big-endian length + JSON object (`registry.md` §3.1).
//!
//! A minimal client of its own; the registry client proper lives in `crate::registry`.

use crate::net::{Network, TcpStream};
use serde_json::{json, Value};
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Longest reply frame accepted (the registry's own limit).
pub const MAX_FRAME: usize = 1024 * 1024;
/// Time allowed for the TCP connect.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed for the whole exchange after connecting.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// A peer beacon listed by the registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PeerBeacon {
    /// Its beacon ID.
    pub id: u32,
    /// Its UDP address.
    pub addr: SocketAddr,
}

/// Why peer discovery failed.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// Connecting, reading or writing failed.
    #[error("registry connection: {0}")]
    Io(#[from] io::Error),
    /// The registry did not answer in time.
    #[error("registry did not answer within {0:?}")]
    Timeout(Duration),
    /// A reply frame is larger than [`MAX_FRAME`].
    #[error("registry reply of {0} bytes exceeds the 1 MiB limit")]
    FrameTooLarge(usize),
    /// A reply is not the expected JSON.
    #[error("unexpected registry reply: {0}")]
    BadReply(String),
}

async fn write_frame<S: TcpStream>(stream: &mut S, body: &Value) -> io::Result<()> {
    let body = serde_json::to_vec(body).map_err(io::Error::other)?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    stream.write_all(&frame).await?;
    stream.flush().await
}

async fn read_frame<S: TcpStream>(stream: &mut S) -> Result<Value, DiscoveryError> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(DiscoveryError::FrameTooLarge(len));
    }
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await?;
    serde_json::from_slice(&body).map_err(|e| DiscoveryError::BadReply(e.to_string()))
}

/// Parses a `beacon_list` reply: every entry with a non-zero ID other than `own_id` and an
/// `ip:port` address, sorted by ID then address, de-duplicated. Host names are skipped: the
/// Go beacon registers an IP literal, and resolving names would block outside the network seam.
pub fn parse_beacon_list(reply: &Value, own_id: u32) -> Result<Vec<PeerBeacon>, DiscoveryError> {
    let Some(entries) = reply.get("beacons") else {
        let error = reply
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("no beacons field");
        return Err(DiscoveryError::BadReply(error.to_string()));
    };
    // Go encodes an empty list as null.
    let entries = match entries {
        Value::Null => return Ok(Vec::new()),
        Value::Array(entries) => entries,
        _ => return Err(DiscoveryError::BadReply("beacons is not a list".into())),
    };
    let mut peers: Vec<PeerBeacon> = entries
        .iter()
        .filter_map(|e| {
            let id = u32::try_from(e.get("id")?.as_u64()?).ok()?;
            let addr = e.get("addr")?.as_str()?.parse().ok()?;
            (id != 0 && id != own_id).then_some(PeerBeacon { id, addr })
        })
        .collect();
    peers.sort_unstable();
    peers.dedup();
    Ok(peers)
}

/// Registers this beacon (`beacon_id`, reachable at `advertised`) and returns the other beacons.
///
/// If `advertised` has a wildcard IP, the local IP of the registry connection takes its place,
/// as the Go beacon does.
pub async fn discover_peers<N: Network>(
    net: &N,
    registry: SocketAddr,
    beacon_id: u32,
    advertised: SocketAddr,
) -> Result<Vec<PeerBeacon>, DiscoveryError> {
    let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, net.connect_tcp(registry))
        .await
        .map_err(|_| DiscoveryError::Timeout(CONNECT_TIMEOUT))??;
    let exchange = async {
        let mut addr = advertised;
        if addr.ip().is_unspecified() {
            addr.set_ip(stream.local_addr()?.ip());
        }
        let register = json!({
            "type": "beacon_register",
            "beacon_id": beacon_id,
            "addr": addr.to_string(),
        });
        write_frame(&mut stream, &register).await?;
        let reply = read_frame(&mut stream).await?;
        if reply.get("type").and_then(Value::as_str) != Some("beacon_register_ok") {
            tracing::warn!(%reply, "registry did not accept beacon_register");
        }
        write_frame(&mut stream, &json!({"type": "beacon_list"})).await?;
        let reply = read_frame(&mut stream).await?;
        parse_beacon_list(&reply, beacon_id)
    };
    tokio::time::timeout(EXCHANGE_TIMEOUT, exchange)
        .await
        .map_err(|_| DiscoveryError::Timeout(EXCHANGE_TIMEOUT))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beacon_list_is_filtered_sorted_and_deduplicated() {
        let reply = json!({"type": "beacon_list_ok", "beacons": [
            {"id": 9, "addr": "192.0.2.9:9001"},
            {"id": 1, "addr": "192.0.2.1:9001"},
            {"id": 3, "addr": "[2001:db8::3]:9001"},
            {"id": 1, "addr": "192.0.2.1:9001"},
            {"id": 5, "addr": "beacon.example:9001"},
            {"id": 0, "addr": "192.0.2.0:9001"},
            {"id": 7, "addr": ""},
            {"id": 4294967296u64, "addr": "192.0.2.4:9001"},
            {"addr": "192.0.2.8:9001"},
            {"id": 2, "addr": "192.0.2.2:9001"},
        ]});
        let peers = parse_beacon_list(&reply, 2).unwrap();
        let ids: Vec<u32> = peers.iter().map(|p| p.id).collect();
        assert_eq!(ids, [1, 3, 9]);
        assert_eq!(peers[1].addr, "[2001:db8::3]:9001".parse().unwrap());
    }

    #[test]
    fn error_and_empty_replies() {
        let err = parse_beacon_list(&json!({"type": "error", "error": "request failed"}), 1);
        assert!(matches!(err, Err(DiscoveryError::BadReply(e)) if e == "request failed"));
        assert!(parse_beacon_list(&json!({"beacons": null}), 1)
            .unwrap()
            .is_empty());
        assert!(parse_beacon_list(&json!({"beacons": 5}), 1).is_err());
    }
}
