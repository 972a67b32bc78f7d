//! The handshake service on port 444 (`spec/services.md` §6), as an in-process client of the
//! daemon.
//!
//! Inbound: one JSON message per connection. It must come from the node it names (the tunnel
//! authenticated the sender), be signed with the key the *registry* holds for that node, and be
//! fresh; the core then drops replays and applies the trust rules. Outbound: the trust rules'
//! [`TrustJob`]s, each on its own task: dial port 444 and write the message, falling back to the
//! registry relay when the peer cannot be reached.

use crate::crypto::{Identity, RegistryKey};
use crate::daemon::registry::RegistryLink;
use crate::daemon::{ClientEvent, ClientOptions, DaemonHandle, Relay, TrustJob};
use crate::net::{Network, WallClock};
use crate::services::trust::{message::MAX_MESSAGE_LEN, HandshakeMessage, HANDSHAKE_PORT};
use crate::wire::Addr;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How long an inbound connection may take to deliver its message.
const FIRST_DATA_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an outbound delivery may take before the relay is used.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

struct Inbound {
    peer: u32,
    bytes: Vec<u8>,
    since: Instant,
}

/// Runs the service until the daemon stops.
pub async fn run<N: Network, C: WallClock + Clone>(
    handle: DaemonHandle,
    mut jobs: mpsc::UnboundedReceiver<TrustJob>,
    link: Arc<RegistryLink<N>>,
    identity: Identity,
    clock: C,
) {
    let options = ClientOptions {
        recv_credit: MAX_MESSAGE_LEN as u32,
        bound_datagrams: true,
    };
    let Ok(mut session) = handle.session(options).await else {
        return;
    };
    if let Err(e) = session.listen(HANDSHAKE_PORT).await {
        tracing::error!(error = %e, "handshake service not started");
        return;
    }
    // Ordered: the sweep closes stale connections in a reproducible order.
    let mut inbound: BTreeMap<u32, Inbound> = BTreeMap::new();
    let mut sweep = tokio::time::interval(FIRST_DATA_TIMEOUT / 2);
    loop {
        tokio::select! {
            biased;
            event = session.next_event() => {
                let Some(event) = event else { return };
                match event {
                    ClientEvent::Accept { conn, remote, .. } => {
                        inbound.insert(conn, Inbound { peer: remote.addr.node, bytes: Vec::new(), since: Instant::now() });
                    }
                    ClientEvent::Recv { conn, data } => {
                        let Some(entry) = inbound.get_mut(&conn) else { continue };
                        entry.bytes.extend_from_slice(&data);
                        if entry.bytes.len() > MAX_MESSAGE_LEN {
                            inbound.remove(&conn);
                            session.close(conn);
                            continue;
                        }
                        if let Ok(message) = HandshakeMessage::parse(&entry.bytes) {
                            let peer = entry.peer;
                            inbound.remove(&conn);
                            session.close(conn);
                            verify(&handle, &link, &clock, peer, message);
                        }
                    }
                    ClientEvent::Closed { conn } => {
                        if let Some(entry) = inbound.remove(&conn) {
                            match HandshakeMessage::parse(&entry.bytes) {
                                Ok(message) => verify(&handle, &link, &clock, entry.peer, message),
                                Err(e) => tracing::info!(peer = entry.peer, error = %e, "handshake message dropped"),
                            }
                        }
                        session.close(conn);
                    }
                    _ => {}
                }
            }
            job = jobs.recv() => {
                let Some(job) = job else { return };
                let (handle, link, identity, unix) =
                    (handle.clone(), link.clone(), identity.clone(), clock.unix_secs() as i64);
                tokio::spawn(async move { perform(handle, link, identity, unix, job).await });
            }
            _ = sweep.tick() => {
                let stale: Vec<u32> = inbound.iter()
                    .filter(|(_, e)| e.since.elapsed() > FIRST_DATA_TIMEOUT)
                    .map(|(c, _)| *c).collect();
                for conn in stale {
                    inbound.remove(&conn);
                    session.close(conn);
                }
            }
        }
    }
}

/// Checks a message against the registry's key for its sender, off the service loop.
fn verify<N: Network, C: WallClock>(
    handle: &DaemonHandle,
    link: &Arc<RegistryLink<N>>,
    clock: &C,
    peer: u32,
    message: HandshakeMessage,
) {
    let (handle, link, unix) = (handle.clone(), link.clone(), clock.unix_secs() as i64);
    tokio::spawn(async move {
        let key = match link.key(peer).await {
            RegistryKey::Known(key) => key,
            other => {
                tracing::info!(peer, ?other, "handshake message dropped: no registry key");
                return;
            }
        };
        match message.verify(peer, handle.node_id(), &key, unix) {
            Ok(_) => handle.send_request(crate::daemon::handle::Request::Verified {
                peer,
                message: Box::new(message),
                key,
            }),
            Err(e) => tracing::warn!(peer, error = %e, "handshake message refused"),
        }
    });
}

async fn perform<N: Network>(
    handle: DaemonHandle,
    link: Arc<RegistryLink<N>>,
    identity: Identity,
    unix: i64,
    job: TrustJob,
) {
    let result = match job {
        TrustJob::ReportTrust { peer } => link.report_trust(peer).await.map_err(|e| e.to_string()),
        TrustJob::RevokeTrust { peer } => link.revoke_trust(peer).await.map_err(|e| e.to_string()),
        TrustJob::Respond { peer, accept } => link
            .respond_handshake(peer, accept)
            .await
            .map_err(|e| e.to_string()),
        TrustJob::Send {
            peer,
            kind,
            text,
            relay,
        } => {
            let message =
                HandshakeMessage::new(kind, &identity, handle.node_id(), peer, &text, unix);
            match tokio::time::timeout(DELIVERY_TIMEOUT, deliver(&handle, peer, &message)).await {
                Ok(Ok(())) => Ok(()),
                failed => {
                    let why = match failed {
                        Ok(Err(e)) => e,
                        _ => "timed out".to_string(),
                    };
                    tracing::info!(peer, kind = kind.as_str(), %why, "direct delivery failed");
                    match relay {
                        Relay::None => Ok(()),
                        Relay::Request => link
                            .request_handshake(peer, &text)
                            .await
                            .map_err(|e| format!("handshake relay: {e}")),
                        Relay::Accept => link
                            .respond_handshake(peer, true)
                            .await
                            .map_err(|e| format!("handshake relay: {e}")),
                    }
                }
            }
        }
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, "trust job failed");
    }
}

/// Dials the peer's port 444 and writes the message; returns once the stream took it all.
async fn deliver(
    handle: &DaemonHandle,
    peer: u32,
    message: &HandshakeMessage,
) -> Result<(), String> {
    let mut session = handle.session(ClientOptions::default()).await?;
    let conn = session.dial(Addr::backbone(peer), HANDSHAKE_PORT).await?;
    let bytes = message.to_bytes();
    let mut left = bytes.len();
    session.send(conn, bytes);
    while left > 0 {
        match session.next_event().await {
            Some(ClientEvent::SendCredit { conn: c, bytes }) if c == conn => {
                left = left.saturating_sub(bytes as usize)
            }
            Some(ClientEvent::Closed { conn: c }) if c == conn => {
                return Err("connection closed before the message was sent".into())
            }
            Some(_) => {}
            None => return Err("daemon stopped".into()),
        }
    }
    // Graceful: the FIN follows the data once it is acknowledged.
    session.close(conn);
    Ok(())
}
