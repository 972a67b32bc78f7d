//! The values that cross the core's boundary: client events, outputs for the shell, and the
//! jobs the trust rules ask for.

use crate::services::trust::MessageKind;
use crate::wire;
use std::net::SocketAddr;

/// A client of the daemon: an IPC session or an in-process service. Never reused.
pub type ClientId = u64;

/// How a client wants to be served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientOptions {
    /// Receive data pushed per connection before the client grants more
    /// ([`crate::daemon::DaemonCore::grant`]). A client that never reads therefore stalls only
    /// its own connections.
    pub recv_credit: u32,
    /// Datagrams only for ports this client bound, instead of every datagram (the reference's
    /// behaviour, kept for clients that did not ask for `bound-datagrams`).
    pub bound_datagrams: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            recv_credit: 256 << 10,
            bound_datagrams: true,
        }
    }
}

/// Something the daemon tells one client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientEvent {
    /// A connection arrived on a port the client bound; the client owns it.
    Accept {
        /// The bound port.
        port: u16,
        /// The new connection.
        conn: u32,
        /// The peer's virtual address and port.
        remote: wire::SocketAddr,
    },
    /// Stream data (never more than the client granted).
    Recv {
        /// The connection.
        conn: u32,
        /// The bytes.
        data: Vec<u8>,
    },
    /// The connection's receive side ended, or the connection is gone.
    Closed {
        /// The connection.
        conn: u32,
    },
    /// `bytes` of what the client sent on `conn` left its queue (into the stream's send buffer,
    /// or dropped because the connection ended): it may send that much more.
    SendCredit {
        /// The connection.
        conn: u32,
        /// Bytes.
        bytes: u32,
    },
    /// A datagram.
    Datagram {
        /// Sender.
        src: wire::SocketAddr,
        /// The port it was sent to.
        dst_port: u16,
        /// Payload.
        data: Vec<u8>,
    },
    /// A Send failed: the client does not own `conn` (or it is gone). Its bytes were also
    /// credited back with [`ClientEvent::SendCredit`].
    SendFailed {
        /// The connection.
        conn: u32,
        /// The reference daemon's error text (`connection N not found`).
        message: String,
    },
}

/// Something the shell must do for the core.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Deliver an event to a client.
    Event(ClientId, ClientEvent),
    /// A dial finished: the connection ID, or why it failed.
    DialDone {
        /// The token the dial was started with.
        token: u64,
        /// The connection, or the error text.
        result: Result<u32, String>,
    },
    /// Resolve this node's endpoint with the registry; answer with `on_resolved`.
    Resolve(u32),
    /// Fetch this node's Ed25519 key from the registry; answer with `on_registry_key`.
    LookupKey(u32),
    /// The beacon reported our public endpoint: register it.
    PublicEndpoint(SocketAddr),
    /// Write the trust file with these bytes.
    PersistTrust(Vec<u8>),
    /// A trust message or registry call for the handshake service.
    Trust(TrustJob),
    /// An event for the webhook (`spec/services.md` §8): its name and data.
    Notify(&'static str, serde_json::Value),
}

/// Network work the trust rules ask for, done off the core by the handshake service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrustJob {
    /// Send a signed handshake message over port 444; `relay` says what to do through the
    /// registry if the peer cannot be reached directly.
    Send {
        /// The peer.
        peer: u32,
        /// The message kind.
        kind: MessageKind,
        /// Justification or reason.
        text: String,
        /// The registry fallback.
        relay: Relay,
    },
    /// `report_trust(self, peer)`.
    ReportTrust {
        /// The peer.
        peer: u32,
    },
    /// `revoke_trust(self, peer)`.
    RevokeTrust {
        /// The peer.
        peer: u32,
    },
    /// `respond_handshake(self, peer, accept)`.
    Respond {
        /// The peer.
        peer: u32,
        /// Accept or reject.
        accept: bool,
    },
}

/// What a handshake message falls back to when the peer cannot be dialled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Relay {
    /// Best effort: nothing.
    None,
    /// `request_handshake` through the registry.
    Request,
    /// `respond_handshake(accept = true)` through the registry.
    Accept,
}
