//! The local IPC protocol between SDKs (or `pilotctl`) and the daemon (`spec/services.md` §4).
//!
//! A Unix stream socket carries frames `[u32 length][u8 command][payload]`; [`frame`] cuts the
//! byte stream into messages and [`message`] gives them types. The codes and payloads are those
//! of the reference daemon, so SDKs and tools written for it can drive ours.

pub mod frame;
pub mod message;

pub use frame::{FrameDecoder, FrameError, MAX_MESSAGE};
pub use message::{Command, Event, HandshakeCommand, RequestError};
