//! The echo service on port 7 (`spec/services.md` §7.1): every received chunk goes back
//! unchanged until the peer ends the stream.
//!
//! It is an in-process client of the daemon. Flow control comes from the credits: the service
//! grants more receive credit on a connection only as its echoed bytes enter the stream, so a
//! peer that does not read its echoes stalls only its own connection.

use crate::daemon::{ClientEvent, ClientOptions, DaemonHandle};

/// The echo port.
pub const ECHO_PORT: u16 = 7;

/// Serves echo until the daemon stops.
pub async fn run(handle: DaemonHandle) {
    let Ok(mut session) = handle.session(ClientOptions::default()).await else {
        return;
    };
    if let Err(e) = session.listen(ECHO_PORT).await {
        tracing::warn!(error = %e, "echo service not started");
        return;
    }
    while let Some(event) = session.next_event().await {
        match event {
            ClientEvent::Recv { conn, data } => session.send(conn, data),
            ClientEvent::SendCredit { conn, bytes } => session.grant(conn, bytes),
            ClientEvent::Closed { conn } => session.close(conn),
            _ => {}
        }
    }
}
