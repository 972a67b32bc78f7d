//! The pilot daemon (`docs/DAEMON.md`).
//!
//! - [`DaemonCore`]: the sans-IO state machine: tunnel, transport endpoint, trust book, and who
//!   owns which port and connection. Trust is enforced here: a SYN from a peer that is not
//!   trusted gets an RST on every port but 444, and its datagrams are dropped.
//! - [`start`]: the async shell over the [`crate::net`] seams (network, storage, clocks,
//!   randomness), so the simulator can run the same daemon.
//! - [`DaemonHandle`] and [`Session`]: the typed in-process API the IPC server, the built-in
//!   services, tests and scenarios use.
//! - [`ipc`]: the Unix-socket server (`spec/services.md` §4 plus our extensions).

pub mod config;
mod conns;
pub mod core;
pub mod handle;
pub mod info;
#[cfg(unix)]
pub mod ipc;
pub mod registry;
mod shell;
pub mod types;

pub use config::DaemonConfig;
pub use core::DaemonCore;
pub use handle::{DaemonHandle, RegistryOp, Session, SessionRequests};
pub use shell::{start, Daemon, StartError};
pub use types::{ClientEvent, ClientId, ClientOptions, Output, Relay, TrustJob};
