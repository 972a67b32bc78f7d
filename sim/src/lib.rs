//! A deterministic simulated internet for Pilot Protocol, on turmoil.
//!
//! - [`topology`]: declare hosts and NAT boxes, build the turmoil simulation.
//! - [`world`]: the built internet: addresses, routing, link faults, per-host randomness.
//! - [`net`]: [`SimNet`](net::SimNet), the `pilot::net::Network` of one simulated host.
//! - [`capture`]: every datagram the network carries, counted, and as pcap on request.
//! - [`fabric`]: how simulated UDP travels over turmoil, in envelopes, through faults.
//! - [`nat`]: NAT boxes (RFC 4787): the sans-IO table and the running device.
//! - [`trace`]: one canonical line per packet, translation and drop.
//! - [`scenario`]: the scenario language and its runner.
//! - [`timeline`]: per pair of daemons, when and why their path changed, read from the trace.
//! - [`matrix`]: the NAT matrix, one daemon-pair scenario per pair of presets.
//! - [`swarm`]: seeds drawing topologies, workloads and faults, checked against invariants;
//!   shrinking a failure to a small scenario.
//!
//! Determinism: time comes only from turmoil's clock, randomness only from ChaCha generators
//! seeded from the scenario seed and host names, and every map whose order reaches output is a
//! `BTreeMap`. The same scenario and seed give the same trace, byte for byte.

#![forbid(unsafe_code)]

pub mod capture;
pub mod fabric;
pub mod matrix;
pub mod nat;
pub mod net;
pub mod scenario;
pub mod swarm;
pub mod timeline;
pub mod topology;
pub mod trace;
pub mod world;
