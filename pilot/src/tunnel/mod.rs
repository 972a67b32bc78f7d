//! The tunnel layer, sans-IO: encrypted frames between daemons, and how each peer is reached
//! (direct, hole-punched through the beacon, or relayed). See `docs/TUNNEL.md`.
//!
//! A [`Tunnel`] per daemon owns the node's keys, its peers and their paths. The daemon feeds
//! it datagrams from the tunnel socket ([`Tunnel::handle_datagram`]), packets to send
//! ([`Tunnel::send`]), registry answers and timer expiries, each with `now`; it takes out
//! datagrams ([`Tunnel::poll_transmit`]), events ([`Tunnel::poll_event`]) and the next
//! deadline ([`Tunnel::poll_timeout`]). Nothing here reads a clock, draws OS randomness or
//! touches a socket.
//!
//! - [`config`]: policy, timings, bounds.
//! - [`path`]: [`PeerPath`], the per-peer route state machine.
//! - [`peer`]: what is held per peer.
//! - [`pending`]: packets waiting for a key.
//! - [`rtt`]: the round-trip time to each peer, from its key exchanges.
//! - [`schedule`]: each peer's next deadline, so timers scale with the work.
//! - [`keycache`]: registry keys, outstanding lookups, `PILA`s waiting for a key.
//! - [`lan`]: LAN candidates announced to peers behind the same NAT.
//! - [`transmit`]: outgoing datagrams and their reusable buffers.
//! - [`event`]: what the tunnel tells the daemon: events, received packets, errors.
//! - `engine`: the [`Tunnel`] itself (state, inputs, sending, timers; receiving in
//!   `engine/receive.rs`).

pub mod config;
mod engine;
pub mod event;
pub mod keycache;
pub mod lan;
pub mod path;
pub mod peer;
pub mod pending;
pub mod rtt;
pub mod schedule;
pub mod transmit;

pub use config::{Limits, Timing, TunnelConfig};
pub use engine::Tunnel;
pub use event::{AddPeerError, Received, SendError, TunnelEvent};
pub use path::{PeerPath, PeerRoute};
pub use transmit::Transmit;

#[cfg(test)]
mod tests;
