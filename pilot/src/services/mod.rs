//! Built-in services of the daemon (`spec/services.md` §6, §7).
//!
//! - [`conn`]: inbound connections of an in-process service as byte streams.
//! - [`dataexchange`]: port 1001, messages and files into the inbox.
//! - [`eventstream`]: port 1002, topic publish/subscribe between connections.
//! - [`echo`]: port 7.
//! - [`secure`]: the port-443 encrypted channel between applications (library only).
//! - [`tasks`]: port 1003, tasks submitted, executed and rewarded with polo.
//! - [`handshake`]: the port-444 service that moves trust between nodes.
//! - [`trust`]: who this node trusts, and the port-444 handshake that changes it.
//! - [`webhook`]: every reported event POSTed to one URL, off the data path.

use std::sync::Arc;

pub mod conn;
pub mod dataexchange;
pub mod echo;
pub mod eventstream;
pub mod handshake;
pub mod secure;
pub mod tasks;
pub mod trust;
pub mod webhook;

/// Where a service reports what happened (the event names and data of `spec/services.md` §8,
/// which the webhook posts): `("message.received", {"type": .., "from": .., "size": ..})`.
pub type Notify = Arc<dyn Fn(&'static str, serde_json::Value) + Send + Sync>;

/// A [`Notify`] that drops every event.
pub fn quiet() -> Notify {
    Arc::new(|_, _| {})
}

/// A [`Notify`] that logs each event (at debug level) and posts nothing.
pub fn logged() -> Notify {
    Arc::new(|event, data| tracing::debug!(event, %data, "service event"))
}
