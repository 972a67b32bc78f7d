//! The echo service on port 7 (`spec/services.md` §7.1): every received chunk goes back
//! unchanged until the peer ends the stream.
//!
//! Each connection is a [`ServiceStream`] copied onto itself. The copy reads (and so grants
//! receive credit) only as its echoes enter the stream, so a peer that does not read its
//! echoes stalls only its own connection.

use crate::services::conn::{ServiceListener, ServiceStream};
use tokio::io::AsyncWriteExt;

/// The echo port.
pub const ECHO_PORT: u16 = 7;

/// Serves echo on a listener bound to [`ECHO_PORT`] until the daemon stops.
pub async fn run(mut listener: ServiceListener) {
    while let Some((stream, _)) = listener.accept().await {
        tokio::spawn(echo(stream));
    }
}

async fn echo(stream: ServiceStream) {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let _ = tokio::io::copy(&mut reader, &mut writer).await;
    let _ = writer.shutdown().await;
}
