//! What can go wrong when talking to the daemon, with messages that say what to do about it.

use std::path::PathBuf;

/// An error from the SDK.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The IPC socket could not be opened.
    #[error(
        "cannot reach the pilot daemon at {}: {source} (is it running? start it with `pilotctl daemon start`, or set PILOT_SOCKET to its socket)",
        path.display()
    )]
    Connect {
        /// The socket path tried.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The socket accepted the connection but nothing answered the Hello exchange.
    #[error(
        "the process listening on {} does not answer (no reply to Hello within {}s); is it a pilot daemon, and is it hung? check its log or restart it",
        path.display(), secs
    )]
    NoAnswer {
        /// The socket path.
        path: PathBuf,
        /// How long the driver waited.
        secs: u64,
    },
    /// The IPC socket was lost; every request, stream and listener of this driver fails.
    #[error("lost the connection to the pilot daemon ({0}); check that it is still running, then reconnect")]
    Disconnected(String),
    /// The daemon refused a request; `message` is its own text.
    #[error("{op}: daemon: {message}")]
    Daemon {
        /// What was asked (`dial`, `bind`, `info`, ...).
        op: &'static str,
        /// The daemon's error text.
        message: String,
    },
    /// The daemon's reply could not be understood.
    #[error(
        "{op}: malformed reply from the daemon ({detail}); is the daemon a compatible version?"
    )]
    Malformed {
        /// What was asked.
        op: &'static str,
        /// What was wrong with the reply.
        detail: String,
    },
    /// A payload does not fit in one IPC message.
    #[error("{op}: payload of {len} bytes exceeds the limit of {max} bytes; split it into smaller messages")]
    TooLarge {
        /// What was asked.
        op: &'static str,
        /// The payload size.
        len: usize,
        /// The largest payload allowed.
        max: usize,
    },
    /// The listener was closed (by [`crate::driver::Listener::close`]).
    #[error("the listener on port {0} is closed; listen again to accept connections")]
    ListenerClosed(u16),
}

/// Shorthand for results of the SDK.
pub type Result<T, E = DriverError> = std::result::Result<T, E>;
