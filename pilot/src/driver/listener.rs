//! Listeners: a bound port and its queue of accepted connections.

use super::conn::Inner;
use super::error::{DriverError, Result};
use super::stream::{ConnSlot, Stream};
use crate::ipc::message::code;
use crate::ipc::Command;
use crate::wire::SocketAddr;
use std::sync::Arc;
use tokio::sync::mpsc;

/// An inbound connection the reader task registered and queued for a listener.
pub(crate) struct Accepted {
    pub conn: u32,
    pub remote: SocketAddr,
    pub port: u16,
    pub slot: ConnSlot,
}

/// A bound port, from [`crate::driver::Driver::listen`].
///
/// Up to 64 accepted connections wait in a queue; while it is full, new ones are closed
/// rather than left open and unread. Closing or dropping the listener stops accepting; with the
/// `unbind` extension the port is released in the daemon too, otherwise it stays bound until the
/// driver disconnects (the reference protocol has no Unbind) and later connections are closed.
pub struct Listener {
    inner: Arc<Inner>,
    port: u16,
    token: u64,
    rx: mpsc::Receiver<Accepted>,
    open: bool,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("port", &self.port)
            .finish()
    }
}

impl Listener {
    pub(crate) fn new(
        inner: Arc<Inner>,
        port: u16,
        token: u64,
        rx: mpsc::Receiver<Accepted>,
    ) -> Self {
        Listener {
            inner,
            port,
            token,
            rx,
            open: true,
        }
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Waits for the next inbound connection.
    pub async fn accept(&mut self) -> Result<Stream> {
        match self.rx.recv().await {
            Some(a) => Ok(Stream::new(
                self.inner.clone(),
                a.conn,
                a.remote,
                Some(a.port),
                a.slot,
            )),
            None => {
                let reason = self.inner.shared.lost_reason();
                if reason.is_empty() {
                    Err(DriverError::ListenerClosed(self.port))
                } else {
                    Err(DriverError::Disconnected(reason))
                }
            }
        }
    }

    /// Unregisters the queue and closes the connections still in it (they were registered
    /// with the daemon connection, so dropping them sends Close).
    fn stop_accepting(&mut self) {
        self.inner.shared.forget_listener(self.port, self.token);
        self.rx.close();
        while let Ok(a) = self.rx.try_recv() {
            drop(Stream::new(
                self.inner.clone(),
                a.conn,
                a.remote,
                Some(a.port),
                a.slot,
            ));
        }
    }

    /// Stops accepting and, if the daemon supports it, releases the port (waiting for the
    /// daemon to confirm).
    pub async fn close(mut self) -> Result<()> {
        self.open = false;
        self.stop_accepting();
        if !self.inner.shared.state().features.unbind {
            return Ok(());
        }
        let cmd = Command::Unbind { port: self.port };
        self.inner
            .shared
            .request(&cmd, code::UNBIND_OK, "unbind")
            .await
            .map(drop)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if !self.open {
            return;
        }
        self.stop_accepting();
        let shared = &self.inner.shared;
        if shared.state().features.unbind {
            let cmd = Command::Unbind { port: self.port };
            shared.request_detached(&cmd, code::UNBIND_OK, "unbind");
        }
    }
}
