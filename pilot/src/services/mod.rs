//! Built-in services of the daemon (`spec/services.md` §6, §7).
//!
//! - [`echo`]: port 7.
//! - [`handshake`]: the port-444 service that moves trust between nodes.
//! - [`trust`]: who this node trusts, and the port-444 handshake that changes it.

pub mod echo;
pub mod handshake;
pub mod trust;
