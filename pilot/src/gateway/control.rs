//! The control socket of a running gateway (`$HOME/.pilot/gateway.sock` for pilotctl): one
//! JSON request line in, one JSON reply line out, so `pilotctl gateway map|unmap|list` change
//! the gateway that is actually running.
//!
//! Requests: `{"op":"map","pilot_addr":"0:0000.0000.0002","local_ip":null}`,
//! `{"op":"unmap","local_ip":"10.4.0.1"}`, `{"op":"list"}`. Replies: `{"ok":{...}}` or
//! `{"error":{"code":"not_found","message":"...","hint":"..."}}`, with pilotctl's error codes.

use super::{Gateway, GatewayError, Mapped, MappingError};
use crate::wire::Addr;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

/// The longest request line accepted.
pub const MAX_REQUEST: u64 = 4096;
/// The longest reply line read (a list of many mappings).
pub const MAX_REPLY: u64 = 16 * 1024 * 1024;

/// A request to a running gateway.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Map a pilot address, to `local_ip` or the next free address.
    Map {
        /// The pilot address (`N:NNNN.NNNN.NNNN`).
        pilot_addr: String,
        /// The local IP wanted, if any.
        local_ip: Option<String>,
    },
    /// Remove the mapping of a local IP.
    Unmap {
        /// The local IP.
        local_ip: String,
    },
    /// Every mapping.
    List,
}

/// A failed request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// pilotctl's error code (`invalid_argument`, `not_found`, `already_exists`, `internal`).
    pub code: String,
    /// What went wrong.
    pub message: String,
    /// What to do about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Failure {
    fn new(code: &str, message: impl Into<String>) -> Self {
        Failure {
            code: code.into(),
            message: message.into(),
            hint: None,
        }
    }
}

impl From<GatewayError> for Failure {
    fn from(err: GatewayError) -> Self {
        let code = match &err {
            GatewayError::Mapping(MappingError::NotMapped(_)) => "not_found",
            GatewayError::Mapping(MappingError::IpInUse { .. })
            | GatewayError::Mapping(MappingError::AddrInUse { .. }) => "already_exists",
            GatewayError::Mapping(MappingError::Exhausted(_)) | GatewayError::NoPorts { .. } => {
                "internal"
            }
            _ => "invalid_argument",
        };
        Failure {
            code: code.into(),
            message: err.to_string(),
            hint: err.hint(),
        }
    }
}

/// A reply.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// Done; the JSON data pilotctl prints.
    Ok(Value),
    /// Refused.
    Error(Failure),
}

/// The JSON of a mapping as pilotctl prints it.
pub fn mapped_json(mapped: &Mapped) -> Value {
    let mut value = json!({
        "local_ip": mapped.mapping.local_ip.to_string(),
        "pilot_addr": mapped.mapping.pilot_addr.to_string(),
        "ports": mapped.ports,
    });
    if !mapped.skipped.is_empty() {
        value["skipped"] = mapped
            .skipped
            .iter()
            .map(|s| json!({"port": s.port, "error": s.error}))
            .collect();
    }
    value
}

/// Carries out one request.
pub async fn handle(gateway: &Gateway, request: Request) -> Reply {
    let result = match request {
        Request::Map {
            pilot_addr,
            local_ip,
        } => map(gateway, &pilot_addr, local_ip.as_deref()).await,
        Request::Unmap { local_ip } => unmap(gateway, &local_ip).await,
        Request::List => {
            let all: Vec<Value> = gateway.list().iter().map(mapped_json).collect();
            Ok(json!({"total": all.len(), "mappings": all}))
        }
    };
    match result {
        Ok(data) => Reply::Ok(data),
        Err(failure) => Reply::Error(failure),
    }
}

async fn unmap(gateway: &Gateway, local_ip: &str) -> Result<Value, Failure> {
    let ip =
        super::mapping::parse_ip(local_ip).map_err(|e| Failure::from(GatewayError::from(e)))?;
    let m = gateway.unmap(ip).await.map_err(Failure::from)?;
    Ok(json!({"unmapped": m.local_ip.to_string(), "pilot_addr": m.pilot_addr.to_string()}))
}

async fn map(
    gateway: &Gateway,
    pilot_addr: &str,
    local_ip: Option<&str>,
) -> Result<Value, Failure> {
    let addr: Addr = pilot_addr.parse().map_err(|e| {
        Failure::new(
            "invalid_argument",
            format!("invalid pilot address {pilot_addr:?}: {e}"),
        )
    })?;
    let ip = local_ip
        .map(super::mapping::parse_ip)
        .transpose()
        .map_err(|e| Failure::from(GatewayError::from(e)))?;
    let mapped = gateway.map(addr, ip).await.map_err(Failure::from)?;
    Ok(mapped_json(&mapped))
}

/// Answers requests on `listener` until the task is dropped.
pub async fn serve(listener: UnixListener, gateway: Arc<Gateway>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve_one(stream, gateway.clone()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "gateway control: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

async fn serve_one(stream: UnixStream, gateway: Arc<Gateway>) {
    let (rd, mut wr) = stream.into_split();
    let mut line = String::new();
    let read = BufReader::new(rd.take(MAX_REQUEST))
        .read_line(&mut line)
        .await
        .map(|_| line.as_str());
    let reply = match parse_request(read) {
        Ok(request) => handle(&gateway, request).await,
        Err(failure) => Reply::Error(failure),
    };
    let mut out = serde_json::to_vec(&reply).unwrap_or_default();
    out.push(b'\n');
    let _ = wr.write_all(&out).await;
}

/// The request in what was read: one line ending in a newline, at most [`MAX_REQUEST`] bytes.
fn parse_request(read: std::io::Result<&str>) -> Result<Request, Failure> {
    let line =
        read.map_err(|e| Failure::new("invalid_argument", format!("unreadable request: {e}")))?;
    if !line.ends_with('\n') {
        return Err(Failure::new(
            "invalid_argument",
            format!("request is not one line of at most {MAX_REQUEST} bytes"),
        ));
    }
    serde_json::from_str(line)
        .map_err(|e| Failure::new("invalid_argument", format!("malformed request: {e}")))
}

/// Why a request to a running gateway did not get a reply.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Nothing listens on the socket.
    #[error("no gateway answers on {path}: {source}")]
    NotRunning {
        /// The socket path.
        path: String,
        /// Why connecting failed.
        source: std::io::Error,
    },
    /// The conversation failed or the reply was not understood.
    #[error("gateway on {path}: {detail}")]
    Broken {
        /// The socket path.
        path: String,
        /// What went wrong.
        detail: String,
    },
}

/// Sends `request` to the gateway listening on `socket` and returns its reply.
pub async fn request(socket: &Path, request: &Request) -> Result<Reply, ControlError> {
    let path = socket.display().to_string();
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|source| ControlError::NotRunning {
            path: path.clone(),
            source,
        })?;
    let broken = |detail: String| ControlError::Broken {
        path: path.clone(),
        detail,
    };
    let (rd, mut wr) = stream.into_split();
    let mut line = serde_json::to_vec(request).map_err(|e| broken(e.to_string()))?;
    line.push(b'\n');
    wr.write_all(&line)
        .await
        .map_err(|e| broken(e.to_string()))?;
    let mut reply = String::new();
    BufReader::new(rd.take(MAX_REPLY))
        .read_line(&mut reply)
        .await
        .map_err(|e| broken(e.to_string()))?;
    serde_json::from_str(&reply).map_err(|e| broken(format!("malformed reply: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse() {
        assert_eq!(parse_request(Ok("{\"op\":\"list\"}\n")), Ok(Request::List));
        assert_eq!(
            parse_request(Ok(
                "{\"op\":\"map\",\"pilot_addr\":\"0:0000.0000.0002\",\"local_ip\":null}\n"
            )),
            Ok(Request::Map {
                pilot_addr: "0:0000.0000.0002".into(),
                local_ip: None
            })
        );
    }

    #[test]
    fn bad_requests_are_invalid_arguments() {
        let too_long = format!("{{\"op\":\"list\",\"x\":\"{}\"", "y".repeat(5000));
        for bad in [
            "",
            "{\"op\":\"list\"}",
            "not json\n",
            "{\"op\":\"explode\"}\n",
            "{\"op\":\"unmap\"}\n",
            "[1,2]\n",
            too_long.as_str(),
        ] {
            let failure = parse_request(Ok(bad)).unwrap_err();
            assert_eq!(failure.code, "invalid_argument", "{bad:.40}");
        }
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8");
        assert_eq!(parse_request(Err(io)).unwrap_err().code, "invalid_argument");
    }

    #[test]
    fn errors_carry_pilotctl_codes_and_hints() {
        let ip = "10.4.0.1".parse().unwrap();
        let not_local = Failure::from(GatewayError::NotLocal { ip });
        assert_eq!(not_local.code, "invalid_argument");
        assert!(not_local
            .hint
            .unwrap()
            .contains("sudo ip addr add 10.4.0.1/32 dev lo"));
        assert_eq!(
            Failure::from(GatewayError::from(MappingError::NotMapped(ip))).code,
            "not_found"
        );
        let subnet = "10.4.0.0/30".parse().unwrap();
        let exhausted = Failure::from(GatewayError::from(MappingError::Exhausted(subnet)));
        assert_eq!(exhausted.code, "internal");
        assert!(exhausted.hint.is_some());
        let reply = Reply::Error(not_local_failure());
        let text = serde_json::to_string(&reply).unwrap();
        assert_eq!(serde_json::from_str::<Reply>(&text).unwrap(), reply);
    }

    fn not_local_failure() -> Failure {
        Failure::new("invalid_argument", "x")
    }
}
