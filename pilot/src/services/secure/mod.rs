//! The secure channel on port 443 (`spec/services.md` §7.6): an application-level encrypted
//! stream between two apps, byte-compatible with the reference's secure package. The daemon
//! does not run it; an application dials or listens on 443 through the driver.
//!
//! The key exchange is anonymous ephemeral X25519, as the reference's: it hides the content
//! from the daemons and the path, and the tunnel below already authenticates the peer node,
//! but the channel itself does not authenticate who is at the other end. Records are checked
//! more strictly than the reference does (see [`record`]).
//!
//! ```no_run
//! use pilot::driver::Driver;
//! use pilot::services::secure;
//! use tokio::io::AsyncWriteExt;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let driver = Driver::connect(pilot::driver::default_socket_path()).await?;
//! let mut channel = secure::dial(&driver, "0:0000.0000.002A".parse()?).await?;
//! channel.write_all(b"for your eyes only").await?;
//! channel.flush().await?;
//! # Ok(()) }
//! ```

pub mod channel;
pub mod record;

pub use channel::{client, server, SecureStream, HANDSHAKE_TIMEOUT};

use crate::driver::{Driver, Listener, Stream};
use crate::net::os_seeded_rng;
use crate::wire::Addr;
use std::io;

/// The secure-channel port.
pub const SECURE_PORT: u16 = 443;

/// Dials `addr` port 443 and runs the client side of the key exchange.
pub async fn dial(driver: &Driver, addr: Addr) -> io::Result<SecureStream<Stream>> {
    let stream = driver
        .dial(addr, SECURE_PORT)
        .await
        .map_err(|e| io::Error::new(io::ErrorKind::ConnectionRefused, e.to_string()))?;
    client(stream, &mut os_seeded_rng()?).await
}

/// Accepts the next connection on `listener` (bound to 443) and runs the server side.
pub async fn accept(listener: &mut Listener) -> io::Result<SecureStream<Stream>> {
    let stream = listener
        .accept()
        .await
        .map_err(|e| io::Error::new(io::ErrorKind::ConnectionAborted, e.to_string()))?;
    server(stream, &mut os_seeded_rng()?).await
}
