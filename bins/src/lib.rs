//! Shared plumbing of the pilot binaries: Go-compatible flag spelling, JSON config files, and
//! logging set-up. The binaries themselves only parse flags and call the library.

pub mod addr;
pub mod cli;
pub mod logging;
pub mod pilotctl;
pub mod pipe;
pub mod rendezvous;
