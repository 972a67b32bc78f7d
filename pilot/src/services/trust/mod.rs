//! Trust: the per-node list of peers this node trusts, and the handshake that builds it
//! (`spec/services.md` §6).
//!
//! - [`message`]: the port-444 JSON message and how it is signed and verified.
//! - [`book`]: the sans-IO trust state: trusted, pending and outgoing requests, and the rules
//!   that move a peer between them.
//! - [`store`]: the `trust.json` file.
//!
//! Unlike the reference, trust means something: the daemon refuses every port but 444 to a peer
//! it does not trust; a handshake message must come from the node it names, over an
//! authenticated tunnel, signed with the key the registry holds for that node; and an approval
//! creates trust only when this node asked for it.

pub mod book;
pub mod message;
pub mod store;

pub use book::{Action, PendingRequest, TrustBook, TrustError, TrustedPeer};
pub use message::{HandshakeError, HandshakeMessage, MessageKind, ReplayCache};

/// The virtual port of the handshake service.
pub const HANDSHAKE_PORT: u16 = 444;
