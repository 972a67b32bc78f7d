//! The beacon (`spec/wire.md` §6): a UDP server for endpoint discovery, hole-punch coordination,
//! relay forwarding and gossip between beacons.
//!
//! - [`Beacon`] ([`state`]): the protocol as a sans-IO state machine.
//! - [`nodes`], [`gossip`], [`limits`]: its bounded tables (observed endpoints, what peer beacons
//!   announce, per-source token buckets).
//! - [`proof`]: move proofs, which let a node whose NAT mapping changed move its entry at once.
//! - [`server`]: the async shell over one UDP socket of any [`Network`](crate::net::Network).
//! - [`discovery`]: finding peer beacons through the registry (`beacon_register`, `beacon_list`).
//!
//! How this beacon differs from the Go reference, and why, is in `docs/BEACON.md`.

pub mod config;
pub mod discovery;
pub mod gossip;
pub mod limits;
pub mod nodes;
pub mod outbox;
pub mod proof;
pub mod server;
pub mod state;
pub mod stats;

#[cfg(test)]
mod tests;

pub use config::{BeaconConfig, Rate, RateLimits};
pub use discovery::{discover_peers, DiscoveryError, PeerBeacon};
pub use outbox::Outbox;
pub use proof::MoveKey;
pub use server::{BeaconServer, PeerSource, ServerConfig, DEFAULT_DISCOVERY_PERIOD};
pub use state::Beacon;
pub use stats::{BeaconStats, BeaconStatus};
