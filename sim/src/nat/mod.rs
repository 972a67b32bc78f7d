//! NAT boxes, in the vocabulary of RFC 4787.
//!
//! - [`NatConfig`]: how a box maps, filters, allocates ports, hairpins and forgets; with the
//!   presets of `DESIGN.md` (`full-cone`, `restricted-cone`, `port-restricted-cone`,
//!   `symmetric`; `open` and `cgnat` are topologies, see [`crate::topology`]).
//! - [`NatTable`]: the translation state, sans-IO: addresses and `now` in, decisions out.
//! - [`device`]: the async box that runs a table on a simulated host, forwarding envelopes
//!   between its inside network and its outside network, and proxying outbound TCP.

mod config;
pub mod device;
mod table;

pub use config::{Filtering, Mapping, NatConfig, PortAllocation, Preset};
pub use table::{Inbound, InboundDrop, NatTable, Outbound, PortsExhausted};
