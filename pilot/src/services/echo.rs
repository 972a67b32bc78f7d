//! The echo service on port 7 (`spec/services.md` §7.1): every received chunk goes back
//! unchanged until the peer ends the stream.
//!
//! Each connection is a [`ServiceStream`] copied onto itself. The copy reads (and so grants
//! receive credit) only as its echoes enter the stream, so a peer that does not read its
//! echoes stalls only its own connection.

use crate::services::conn::{ServiceListener, ServiceStream, RECV_WINDOW};
use tokio::io::{AsyncWriteExt, BufReader};

/// The echo port.
pub const ECHO_PORT: u16 = 7;

/// Serves echo on a listener bound to [`ECHO_PORT`] until the daemon stops.
pub async fn run(mut listener: ServiceListener) {
    while let Some((stream, _)) = listener.accept().await {
        tokio::spawn(echo(stream));
    }
}

async fn echo(stream: ServiceStream) {
    let (reader, mut writer) = tokio::io::split(stream);
    // A buffer the size of the receive window: each copy step takes everything that has
    // arrived and hands it back as one write (one request to the daemon), not 8 KiB pieces.
    let mut reader = BufReader::with_capacity(RECV_WINDOW as usize, reader);
    let _ = tokio::io::copy_buf(&mut reader, &mut writer).await;
    let _ = writer.shutdown().await;
}
