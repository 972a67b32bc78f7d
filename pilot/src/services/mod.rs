//! Built-in services of the daemon (`spec/services.md` §6, §7).
//!
//! - [`trust`]: who this node trusts, and the port-444 handshake that changes it.

pub mod trust;
