//! Event stream on port 1002 (`spec/services.md` §7.3): topic-based publish/subscribe between
//! connections, in memory, at most once.
//!
//! - [`frame`]: the event format and its async read/write helpers.
//! - [`queue`]: one subscriber's bounded outbox (drop-oldest), so no subscriber stalls others.
//! - [`broker`]: the subscription table and the delivery rules.
//! - [`service`]: the daemon side.
//! - [`client`]: the SDK side.

pub mod broker;
pub mod client;
pub mod frame;
pub mod queue;
pub mod service;

/// The event-stream port.
pub const EVENT_STREAM_PORT: u16 = 1002;

pub use broker::{Broker, BrokerStats, SubscriberStats};
pub use client::{
    subscribe, subscribe_in_process, ClientError, EventClient, Publisher, Subscription,
};
pub use frame::{Event, FrameError};
pub use queue::QueueLimits;
pub use service::{run, serve, serve_listener};
