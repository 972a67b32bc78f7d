//! IPC messages (`spec/services.md` §4.2): commands from a client to the daemon, and replies and
//! pushed events from the daemon to a client.
//!
//! Decoding a command that is too short yields the reference daemon's error text (for example
//! `bind: missing port`), so clients that match on it keep working.

use crate::wire::Addr;

/// Command codes.
pub mod code {
    #![allow(missing_docs)]
    pub const BIND: u8 = 0x01;
    pub const BIND_OK: u8 = 0x02;
    pub const DIAL: u8 = 0x03;
    pub const DIAL_OK: u8 = 0x04;
    pub const ACCEPT: u8 = 0x05;
    pub const SEND: u8 = 0x06;
    pub const RECV: u8 = 0x07;
    pub const CLOSE: u8 = 0x08;
    pub const CLOSE_OK: u8 = 0x09;
    pub const ERROR: u8 = 0x0A;
    pub const SEND_TO: u8 = 0x0B;
    pub const RECV_FROM: u8 = 0x0C;
    pub const INFO: u8 = 0x0D;
    pub const INFO_OK: u8 = 0x0E;
    pub const HANDSHAKE: u8 = 0x0F;
    pub const HANDSHAKE_OK: u8 = 0x10;
    pub const RESOLVE_HOSTNAME: u8 = 0x11;
    pub const RESOLVE_HOSTNAME_OK: u8 = 0x12;
    pub const SET_HOSTNAME: u8 = 0x13;
    pub const SET_HOSTNAME_OK: u8 = 0x14;
    pub const SET_VISIBILITY: u8 = 0x15;
    pub const SET_VISIBILITY_OK: u8 = 0x16;
    pub const DEREGISTER: u8 = 0x17;
    pub const DEREGISTER_OK: u8 = 0x18;
    pub const SET_TAGS: u8 = 0x19;
    pub const SET_TAGS_OK: u8 = 0x1A;
    pub const SET_WEBHOOK: u8 = 0x1B;
    pub const SET_WEBHOOK_OK: u8 = 0x1C;
    pub const SET_TASK_EXEC: u8 = 0x1D;
    pub const SET_TASK_EXEC_OK: u8 = 0x1E;
    // Extensions, used only after a successful Hello (a reference daemon answers Hello with
    // "unknown command", and the client then speaks the reference protocol only).
    pub const HELLO: u8 = 0x20;
    pub const HELLO_OK: u8 = 0x21;
    pub const RECV_CREDIT: u8 = 0x22;
    pub const SEND_CREDIT: u8 = 0x23;
    pub const UNBIND: u8 = 0x24;
    pub const UNBIND_OK: u8 = 0x25;
    pub const DISCONNECT: u8 = 0x26;
    pub const DISCONNECT_OK: u8 = 0x27;
}

/// The only error code the protocol uses.
pub const ERROR_CODE: u16 = 1;

/// A trust operation (payload of command 0x0F).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HandshakeCommand {
    /// Ask `node` for trust, with a justification.
    Send {
        /// The peer.
        node: u32,
        /// Why (free text).
        justification: String,
    },
    /// Approve a pending request from `node`.
    Approve {
        /// The peer.
        node: u32,
    },
    /// Reject a pending request from `node`.
    Reject {
        /// The peer.
        node: u32,
        /// Why (free text).
        reason: String,
    },
    /// List pending requests.
    Pending,
    /// List trusted peers.
    Trusted,
    /// Revoke trust in `node`.
    Revoke {
        /// The peer.
        node: u32,
    },
}

/// A command from a client to the daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Listen on a port.
    Bind {
        /// The port (0 is a literal port).
        port: u16,
    },
    /// Open a stream.
    Dial {
        /// Destination address.
        addr: Addr,
        /// Destination port.
        port: u16,
    },
    /// Write to a stream.
    Send {
        /// Connection ID.
        conn: u32,
        /// Bytes to write.
        data: Vec<u8>,
    },
    /// Close a stream.
    Close {
        /// Connection ID.
        conn: u32,
    },
    /// Send a datagram.
    SendTo {
        /// Destination address.
        addr: Addr,
        /// Destination port.
        port: u16,
        /// Payload.
        data: Vec<u8>,
    },
    /// Daemon status.
    Info,
    /// A trust operation.
    Handshake(HandshakeCommand),
    /// Hostname to node lookup through the registry.
    ResolveHostname(String),
    /// Set (or clear, with "") this node's hostname.
    SetHostname(String),
    /// Make this node public or private.
    SetVisibility(bool),
    /// Remove this node from the registry.
    Deregister,
    /// Set the tags (a JSON array of strings, or `null`).
    SetTags(Vec<u8>),
    /// Set (or clear, with "") the webhook URL.
    SetWebhook(String),
    /// Enable or disable task execution.
    SetTaskExec(bool),
    /// Extension: offer protocol extensions (a JSON document, see `docs/IPC.md`).
    Hello(Vec<u8>),
    /// Extension: the client can take `bytes` more of Recv data on `conn`.
    RecvCredit {
        /// Connection ID.
        conn: u32,
        /// Additional bytes.
        bytes: u32,
    },
    /// Extension: stop listening on a port.
    Unbind {
        /// The port.
        port: u16,
    },
    /// Extension: close any connection of the daemon, whichever client owns it (`Close` only
    /// closes the sender's own).
    Disconnect {
        /// Connection ID.
        conn: u32,
    },
}

/// Why a command could not be decoded; the text is what the daemon replies with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// A code the daemon does not serve.
    #[error("unknown command: 0x{0:02X}")]
    UnknownCommand(u8),
    /// A required field is missing; the text names the command and field.
    #[error("{0}")]
    Missing(&'static str),
    /// A handshake sub-command the daemon does not know.
    #[error("handshake: unknown sub-command 0x{0:02X}")]
    UnknownHandshake(u8),
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Reads `[6-byte address][u16 port]` from the front of `p`; the caller checked 8 bytes.
fn addr_port(p: &[u8]) -> (Addr, u16) {
    let addr = Addr::new(be16(p), be32(&p[2..]));
    (addr, be16(&p[6..]))
}

fn require(p: &[u8], len: usize, missing: &'static str) -> Result<(), RequestError> {
    if p.len() < len {
        Err(RequestError::Missing(missing))
    } else {
        Ok(())
    }
}

impl HandshakeCommand {
    fn decode(p: &[u8]) -> Result<Self, RequestError> {
        let (&sub, rest) = p
            .split_first()
            .ok_or(RequestError::Missing("handshake: missing sub-command"))?;
        let node = |missing| require(rest, 4, missing).map(|()| be32(rest));
        Ok(match sub {
            0x01 => HandshakeCommand::Send {
                node: node("handshake request: missing node_id")?,
                justification: text(&rest[4..]),
            },
            0x02 => HandshakeCommand::Approve {
                node: node("handshake approve: missing node_id")?,
            },
            0x03 => HandshakeCommand::Reject {
                node: node("handshake reject: missing node_id")?,
                reason: text(&rest[4..]),
            },
            0x04 => HandshakeCommand::Pending,
            0x05 => HandshakeCommand::Trusted,
            0x06 => HandshakeCommand::Revoke {
                node: node("handshake revoke: missing node_id")?,
            },
            other => return Err(RequestError::UnknownHandshake(other)),
        })
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            HandshakeCommand::Send {
                node,
                justification,
            } => {
                out.push(0x01);
                out.extend_from_slice(&node.to_be_bytes());
                out.extend_from_slice(justification.as_bytes());
            }
            HandshakeCommand::Approve { node } => {
                out.push(0x02);
                out.extend_from_slice(&node.to_be_bytes());
            }
            HandshakeCommand::Reject { node, reason } => {
                out.push(0x03);
                out.extend_from_slice(&node.to_be_bytes());
                out.extend_from_slice(reason.as_bytes());
            }
            HandshakeCommand::Pending => out.push(0x04),
            HandshakeCommand::Trusted => out.push(0x05),
            HandshakeCommand::Revoke { node } => {
                out.push(0x06);
                out.extend_from_slice(&node.to_be_bytes());
            }
        }
    }
}

impl Command {
    /// Decodes one message (code byte, then payload). Extra trailing bytes are ignored where
    /// the payload has a fixed size, as the reference does.
    pub fn decode(message: &[u8]) -> Result<Self, RequestError> {
        let (&op, p) = message
            .split_first()
            .ok_or(RequestError::UnknownCommand(0))?;
        Ok(match op {
            code::BIND => {
                require(p, 2, "bind: missing port")?;
                Command::Bind { port: be16(p) }
            }
            code::DIAL => {
                require(p, 8, "dial: missing address/port")?;
                let (addr, port) = addr_port(p);
                Command::Dial { addr, port }
            }
            code::SEND => {
                require(p, 4, "send: missing conn_id")?;
                Command::Send {
                    conn: be32(p),
                    data: p[4..].to_vec(),
                }
            }
            code::CLOSE => {
                require(p, 4, "close: missing conn_id")?;
                Command::Close { conn: be32(p) }
            }
            code::SEND_TO => {
                require(p, 8, "sendto: missing address/port")?;
                let (addr, port) = addr_port(p);
                Command::SendTo {
                    addr,
                    port,
                    data: p[8..].to_vec(),
                }
            }
            code::INFO => Command::Info,
            code::HANDSHAKE => Command::Handshake(HandshakeCommand::decode(p)?),
            code::RESOLVE_HOSTNAME => {
                if p.is_empty() {
                    return Err(RequestError::Missing("resolve_hostname: missing hostname"));
                }
                Command::ResolveHostname(text(p))
            }
            code::SET_HOSTNAME => Command::SetHostname(text(p)),
            code::SET_VISIBILITY => {
                require(p, 1, "set_visibility: missing value")?;
                Command::SetVisibility(p[0] == 1)
            }
            code::DEREGISTER => Command::Deregister,
            code::SET_TAGS => Command::SetTags(p.to_vec()),
            code::SET_WEBHOOK => Command::SetWebhook(text(p)),
            code::SET_TASK_EXEC => {
                require(p, 1, "set_task_exec: missing value")?;
                Command::SetTaskExec(p[0] == 1)
            }
            code::HELLO => Command::Hello(p.to_vec()),
            code::RECV_CREDIT => {
                require(p, 8, "recv_credit: missing conn_id/bytes")?;
                Command::RecvCredit {
                    conn: be32(p),
                    bytes: be32(&p[4..]),
                }
            }
            code::UNBIND => {
                require(p, 2, "unbind: missing port")?;
                Command::Unbind { port: be16(p) }
            }
            code::DISCONNECT => {
                require(p, 4, "disconnect: missing conn_id")?;
                Command::Disconnect { conn: be32(p) }
            }
            other => return Err(RequestError::UnknownCommand(other)),
        })
    }

    /// Appends the message (code byte, then payload) to `out`, unframed.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Command::Bind { port } => {
                out.push(code::BIND);
                out.extend_from_slice(&port.to_be_bytes());
            }
            Command::Dial { addr, port } => {
                out.push(code::DIAL);
                out.extend_from_slice(&addr.to_bytes());
                out.extend_from_slice(&port.to_be_bytes());
            }
            Command::Send { conn, data } => {
                out.push(code::SEND);
                out.extend_from_slice(&conn.to_be_bytes());
                out.extend_from_slice(data);
            }
            Command::Close { conn } => {
                out.push(code::CLOSE);
                out.extend_from_slice(&conn.to_be_bytes());
            }
            Command::SendTo { addr, port, data } => {
                out.push(code::SEND_TO);
                out.extend_from_slice(&addr.to_bytes());
                out.extend_from_slice(&port.to_be_bytes());
                out.extend_from_slice(data);
            }
            Command::Info => out.push(code::INFO),
            Command::Handshake(cmd) => {
                out.push(code::HANDSHAKE);
                cmd.encode(out);
            }
            Command::ResolveHostname(name) => {
                out.push(code::RESOLVE_HOSTNAME);
                out.extend_from_slice(name.as_bytes());
            }
            Command::SetHostname(name) => {
                out.push(code::SET_HOSTNAME);
                out.extend_from_slice(name.as_bytes());
            }
            Command::SetVisibility(public) => {
                out.extend_from_slice(&[code::SET_VISIBILITY, u8::from(*public)])
            }
            Command::Deregister => out.push(code::DEREGISTER),
            Command::SetTags(json) => {
                out.push(code::SET_TAGS);
                out.extend_from_slice(json);
            }
            Command::SetWebhook(url) => {
                out.push(code::SET_WEBHOOK);
                out.extend_from_slice(url.as_bytes());
            }
            Command::SetTaskExec(on) => {
                out.extend_from_slice(&[code::SET_TASK_EXEC, u8::from(*on)])
            }
            Command::Hello(json) => {
                out.push(code::HELLO);
                out.extend_from_slice(json);
            }
            Command::RecvCredit { conn, bytes } => {
                out.push(code::RECV_CREDIT);
                out.extend_from_slice(&conn.to_be_bytes());
                out.extend_from_slice(&bytes.to_be_bytes());
            }
            Command::Unbind { port } => {
                out.push(code::UNBIND);
                out.extend_from_slice(&port.to_be_bytes());
            }
            Command::Disconnect { conn } => {
                out.push(code::DISCONNECT);
                out.extend_from_slice(&conn.to_be_bytes());
            }
        }
    }
}

/// A message from the daemon to a client: a reply to a command, or a pushed event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The port is bound.
    BindOk {
        /// The port.
        port: u16,
    },
    /// The dial succeeded.
    DialOk {
        /// The new connection's ID.
        conn: u32,
    },
    /// A connection arrived on a bound port.
    Accept {
        /// The bound port.
        local_port: u16,
        /// The new connection's ID.
        conn: u32,
        /// The peer's address.
        remote: Addr,
        /// The peer's port.
        remote_port: u16,
    },
    /// Stream data arrived.
    Recv {
        /// Connection ID.
        conn: u32,
        /// The bytes.
        data: Vec<u8>,
    },
    /// A connection closed (reply to Close, or pushed when the peer ends it).
    CloseOk {
        /// Connection ID.
        conn: u32,
    },
    /// A command failed.
    Error {
        /// Always [`ERROR_CODE`] from the reference; kept for completeness.
        code: u16,
        /// What went wrong.
        message: String,
    },
    /// A datagram arrived.
    RecvFrom {
        /// Sender's address.
        src: Addr,
        /// Sender's port.
        src_port: u16,
        /// Port it was sent to.
        dst_port: u16,
        /// Payload.
        data: Vec<u8>,
    },
    /// Extension: the daemon accepts `bytes` more of Send data on `conn`.
    SendCredit {
        /// Connection ID.
        conn: u32,
        /// Additional bytes.
        bytes: u32,
    },
    /// Extension: the port is no longer bound.
    UnbindOk {
        /// The port.
        port: u16,
    },
    /// Extension: the connection is closing (reply to Disconnect).
    DisconnectOk {
        /// Connection ID.
        conn: u32,
    },
    /// A JSON reply to Info, Handshake, ResolveHostname, SetHostname, SetVisibility,
    /// Deregister, SetTags, SetWebhook, SetTaskExec or Hello; `code` says which.
    Json {
        /// The reply code (request code + 1).
        code: u8,
        /// The JSON document.
        json: Vec<u8>,
    },
}

/// Whether `code` is one of the JSON reply codes.
fn is_json_reply(op: u8) -> bool {
    matches!(
        op,
        code::INFO_OK
            | code::HANDSHAKE_OK
            | code::RESOLVE_HOSTNAME_OK
            | code::SET_HOSTNAME_OK
            | code::SET_VISIBILITY_OK
            | code::DEREGISTER_OK
            | code::SET_TAGS_OK
            | code::SET_WEBHOOK_OK
            | code::SET_TASK_EXEC_OK
            | code::HELLO_OK
    )
}

/// Why a daemon message could not be decoded by a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed daemon message (code 0x{code:02X}, {len} bytes)")]
pub struct EventError {
    /// The message code.
    pub code: u8,
    /// The message length.
    pub len: usize,
}

impl Event {
    /// Decodes one message from the daemon.
    pub fn decode(message: &[u8]) -> Result<Self, EventError> {
        let err = EventError {
            code: message.first().copied().unwrap_or(0),
            len: message.len(),
        };
        let (&op, p) = message.split_first().ok_or(err)?;
        let need = |len: usize| if p.len() < len { Err(err) } else { Ok(()) };
        Ok(match op {
            code::BIND_OK => {
                need(2)?;
                Event::BindOk { port: be16(p) }
            }
            code::DIAL_OK => {
                need(4)?;
                Event::DialOk { conn: be32(p) }
            }
            code::ACCEPT => {
                need(14)?;
                let (remote, remote_port) = addr_port(&p[6..]);
                Event::Accept {
                    local_port: be16(p),
                    conn: be32(&p[2..]),
                    remote,
                    remote_port,
                }
            }
            code::RECV => {
                need(4)?;
                Event::Recv {
                    conn: be32(p),
                    data: p[4..].to_vec(),
                }
            }
            code::CLOSE_OK => {
                need(4)?;
                Event::CloseOk { conn: be32(p) }
            }
            code::ERROR => {
                need(2)?;
                Event::Error {
                    code: be16(p),
                    message: text(&p[2..]),
                }
            }
            code::RECV_FROM => {
                need(10)?;
                let (src, src_port) = addr_port(p);
                Event::RecvFrom {
                    src,
                    src_port,
                    dst_port: be16(&p[8..]),
                    data: p[10..].to_vec(),
                }
            }
            code::SEND_CREDIT => {
                need(8)?;
                Event::SendCredit {
                    conn: be32(p),
                    bytes: be32(&p[4..]),
                }
            }
            code::UNBIND_OK => {
                need(2)?;
                Event::UnbindOk { port: be16(p) }
            }
            code::DISCONNECT_OK => {
                need(4)?;
                Event::DisconnectOk { conn: be32(p) }
            }
            op if is_json_reply(op) => Event::Json {
                code: op,
                json: p.to_vec(),
            },
            _ => return Err(err),
        })
    }

    /// Appends the message (code byte, then payload) to `out`, unframed.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Event::BindOk { port } => {
                out.push(code::BIND_OK);
                out.extend_from_slice(&port.to_be_bytes());
            }
            Event::DialOk { conn } => {
                out.push(code::DIAL_OK);
                out.extend_from_slice(&conn.to_be_bytes());
            }
            Event::Accept {
                local_port,
                conn,
                remote,
                remote_port,
            } => {
                out.push(code::ACCEPT);
                out.extend_from_slice(&local_port.to_be_bytes());
                out.extend_from_slice(&conn.to_be_bytes());
                out.extend_from_slice(&remote.to_bytes());
                out.extend_from_slice(&remote_port.to_be_bytes());
            }
            Event::Recv { conn, data } => {
                out.push(code::RECV);
                out.extend_from_slice(&conn.to_be_bytes());
                out.extend_from_slice(data);
            }
            Event::CloseOk { conn } => {
                out.push(code::CLOSE_OK);
                out.extend_from_slice(&conn.to_be_bytes());
            }
            Event::Error { code: c, message } => {
                out.push(code::ERROR);
                out.extend_from_slice(&c.to_be_bytes());
                out.extend_from_slice(message.as_bytes());
            }
            Event::RecvFrom {
                src,
                src_port,
                dst_port,
                data,
            } => {
                out.push(code::RECV_FROM);
                out.extend_from_slice(&src.to_bytes());
                out.extend_from_slice(&src_port.to_be_bytes());
                out.extend_from_slice(&dst_port.to_be_bytes());
                out.extend_from_slice(data);
            }
            Event::SendCredit { conn, bytes } => {
                out.push(code::SEND_CREDIT);
                out.extend_from_slice(&conn.to_be_bytes());
                out.extend_from_slice(&bytes.to_be_bytes());
            }
            Event::UnbindOk { port } => {
                out.push(code::UNBIND_OK);
                out.extend_from_slice(&port.to_be_bytes());
            }
            Event::DisconnectOk { conn } => {
                out.push(code::DISCONNECT_OK);
                out.extend_from_slice(&conn.to_be_bytes());
            }
            Event::Json { code: c, json } => {
                out.push(*c);
                out.extend_from_slice(json);
            }
        }
    }

    /// An error reply with the protocol's single error code.
    pub fn error(message: impl Into<String>) -> Self {
        Event::Error {
            code: ERROR_CODE,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip_command(cmd: Command) {
        let mut out = Vec::new();
        cmd.encode(&mut out);
        assert_eq!(Command::decode(&out), Ok(cmd));
    }

    #[test]
    fn commands_round_trip() {
        let addr = Addr::new(0, 0x0001_1170);
        for cmd in [
            Command::Bind { port: 0 },
            Command::Dial { addr, port: 7 },
            Command::Send {
                conn: 9,
                data: b"hi".to_vec(),
            },
            Command::Close { conn: 9 },
            Command::SendTo {
                addr,
                port: 1001,
                data: vec![],
            },
            Command::Info,
            Command::Handshake(HandshakeCommand::Send {
                node: 7,
                justification: "hello".into(),
            }),
            Command::Handshake(HandshakeCommand::Approve { node: 7 }),
            Command::Handshake(HandshakeCommand::Reject {
                node: 7,
                reason: "no".into(),
            }),
            Command::Handshake(HandshakeCommand::Pending),
            Command::Handshake(HandshakeCommand::Trusted),
            Command::Handshake(HandshakeCommand::Revoke { node: 7 }),
            Command::ResolveHostname("alice".into()),
            Command::SetHostname(String::new()),
            Command::SetVisibility(true),
            Command::Deregister,
            Command::SetTags(b"[\"a\"]".to_vec()),
            Command::SetWebhook("http://x".into()),
            Command::SetTaskExec(false),
            Command::Hello(b"{}".to_vec()),
            Command::RecvCredit {
                conn: 3,
                bytes: 65536,
            },
            Command::Unbind { port: 7 },
            Command::Disconnect { conn: 9 },
        ] {
            round_trip_command(cmd);
        }
    }

    #[test]
    fn reference_error_texts() {
        let cases: [(&[u8], &str); 11] = [
            (&[0x26, 0, 0, 1], "disconnect: missing conn_id"),
            (&[0x01, 0x00], "bind: missing port"),
            (&[0x03, 0, 0, 0, 0, 0, 1, 0], "dial: missing address/port"),
            (&[0x08, 0, 0], "close: missing conn_id"),
            (&[0x15], "set_visibility: missing value"),
            (&[0x1D], "set_task_exec: missing value"),
            (&[0x0F], "handshake: missing sub-command"),
            (&[0x0F, 0x09], "handshake: unknown sub-command 0x09"),
            (&[0x0F, 0x01, 0, 0], "handshake request: missing node_id"),
            (&[0x02, 0, 0], "unknown command: 0x02"),
            (&[0x11], "resolve_hostname: missing hostname"),
        ];
        for (bytes, text) in cases {
            assert_eq!(
                Command::decode(bytes).unwrap_err().to_string(),
                text,
                "{bytes:02x?}"
            );
        }
    }

    #[test]
    fn events_round_trip() {
        let remote = Addr::new(0, 42);
        for event in [
            Event::BindOk { port: 80 },
            Event::DialOk { conn: 1 },
            Event::Accept {
                local_port: 7,
                conn: 3,
                remote,
                remote_port: 49152,
            },
            Event::Recv {
                conn: 3,
                data: b"data".to_vec(),
            },
            Event::CloseOk { conn: 3 },
            Event::DisconnectOk { conn: 3 },
            Event::error("port 7 already bound"),
            Event::RecvFrom {
                src: remote,
                src_port: 49153,
                dst_port: 9,
                data: b"x".to_vec(),
            },
            Event::Json {
                code: code::INFO_OK,
                json: b"{}".to_vec(),
            },
        ] {
            let mut out = Vec::new();
            event.encode(&mut out);
            assert_eq!(Event::decode(&out), Ok(event));
        }
        let mut accept = Vec::new();
        Event::Accept {
            local_port: 7,
            conn: 3,
            remote,
            remote_port: 1,
        }
        .encode(&mut accept);
        assert_eq!(accept.len(), 15, "Accept is a 15-byte message");
        assert!(Event::decode(&[code::ACCEPT, 0, 7]).is_err());
        assert!(
            Event::decode(&[code::BIND]).is_err(),
            "a command code is not an event"
        );
        assert!(Event::decode(&[]).is_err());
    }
}
