//! Data exchange on port 1001 (`spec/services.md` §7.2): typed frames (text, binary, JSON,
//! file) from any trusted peer, stored in the inbox or the received folder before the ACK.
//!
//! - [`frame`]: the frame and reply formats (sans-IO).
//! - [`names`]: untrusted file names made safe; timestamped stored names.
//! - [`store`]: the [`Mailbox`](store::Mailbox) seam: disk and memory.
//! - [`quota`]: bytes per peer over time.
//! - [`service`]: the daemon side.
//! - [`client`]: the SDK side.

pub mod client;
pub mod frame;
pub mod names;
pub mod quota;
pub mod service;
pub mod store;

/// The data-exchange port.
pub const DATA_EXCHANGE_PORT: u16 = 1001;

pub use client::{dial, ClientError, DataClient};
pub use frame::{FrameType, Reply};
pub use service::{run, serve, Exchange};
pub use store::{DiskMailbox, Mailbox, MailboxError, MemMailbox};
