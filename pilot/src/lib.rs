//! Pilot Protocol: permanent virtual addresses, encrypted peer-to-peer tunnels through any NAT,
//! and a trust model for AI agents.
//!
//! The crate is organised by what each part is (see `DESIGN.md` and `docs/ARCHITECTURE.md`):
//!
//! - [`wire`]: bytes in, typed values out, and back, for every format on the wire.
//! - [`crypto`]: identities, key agreement, sealing and opening of tunnel frames, replay windows.
//! - [`net`]: the seams between protocol logic and the world: network, clocks, randomness and
//!   storage. Real implementations live here; `pilot-sim` provides the simulated ones.
//! - [`transport`]: the reliable stream and datagrams, as a deterministic state machine.
//! - [`daemon`]: the daemon: a sans-IO core, an async shell over the seams, the IPC server.
//!
//! Protocol logic is sans-IO: plain types that take inputs (a packet, a request, `now`) and return
//! outputs. It never reads a clock, draws randomness or touches a socket on its own.

// Denied everywhere but the one module that makes batched socket calls (`net::linux_udp`),
// which allows it for its system calls alone.
#![deny(unsafe_code)]

pub mod beacon;
pub mod crypto;
pub mod daemon;
pub mod driver;
pub mod gateway;
pub mod ipc;
pub mod net;
pub mod registry;
pub mod services;
pub mod transport;
pub mod tunnel;
pub mod wire;
