//! The reliable stream transport and datagrams, as deterministic sans-IO state machines.
//!
//! - [`Connection`]: one stream (`spec/transport.md` §3–§11): handshake, segmentation, windows,
//!   SACK-driven loss recovery, RFC 6298 RTO, delayed ACKs, Nagle, keepalive, close and abort.
//! - [`congestion`]: the congestion-control trait with NewReno and CUBIC.
//! - [`Endpoint`]: the daemon's demultiplexer: connection table, listeners and accept queues,
//!   ephemeral ports, limits, datagram ports (protocol 0x02) and control pings (0x03).
//!
//! Nothing here reads a clock, draws randomness or touches a socket: time is an argument, ISNs
//! and port choices come from the caller's injected RNG, packets go in and out as bytes.

pub mod config;
pub mod congestion;
pub mod connection;
pub mod datagram;
mod delivery_rate;
pub mod endpoint;
#[doc(hidden)]
pub mod link_model;
mod pacing;
mod recv_buf;
mod ring;
pub mod rtt;
mod send_buf;
pub mod seq;
pub mod syn_limit;

pub use config::{Config, MSS};
pub use connection::{
    CloseReason, Connection, Event, ReadError, State, Stats, Transmit, WriteError,
};
pub use datagram::{Datagram, DatagramError};
pub use endpoint::{ConnectionId, Endpoint, EndpointConfig, EndpointError, EndpointStats};
pub use seq::Seq;

#[cfg(test)]
mod tests;
