//! The registry (`spec/registry.md`): the rendezvous directory every daemon dials first.
//!
//! - [`frame`]: u32 big-endian length + JSON object, 1 MiB cap, a total decoder.
//! - [`request`]: typed requests with the reference's coercion rules and bounded strings.
//! - [`state`]: the sans-IO [`Registry`]: requests in, replies and [`Change`]s out.
//! - [`model`]: the data, and the one function that applies a change.
//! - [`auth`], [`hostname`], [`ratelimit`], [`rfc3339`]: small pieces the handlers use.
//!
//! Decisions and differences from the Go reference are recorded in `docs/REGISTRY.md` and
//! `docs/COMPATIBILITY.md`.

pub mod auth;
pub mod client;
pub mod frame;
pub mod hostname;
pub mod http;
pub mod metrics;
pub mod model;
pub mod persist;
pub mod ratelimit;
pub mod replication;
pub mod reply;
pub mod request;
pub mod rfc3339;
pub mod server;
pub mod state;
pub mod tls;

pub use model::{Change, Data};
pub use request::{Kind, Request};
pub use state::{Config, Ctx, Outcome, Push, Registry};
