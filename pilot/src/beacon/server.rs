//! The beacon's async shell: one UDP socket, one receive loop that feeds the sans-IO [`Beacon`]
//! and sends what it produces, the gossip timer from `tokio::time`, and peer discovery in a task
//! of its own so that a slow registry never stalls the data path.

use super::config::BeaconConfig;
use super::discovery::discover_peers;
use super::gossip::canonical;
use super::outbox::Outbox;
use super::proof::MoveKey;
use super::state::Beacon;
use super::stats::{BeaconStats, BeaconStatus};
use crate::net::watch;
use crate::net::{monotonic_now, Network, UdpSocket};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How often the Go beacon re-registers and re-lists peers (the registry forgets after 60 s).
pub const DEFAULT_DISCOVERY_PERIOD: Duration = Duration::from_secs(30);

/// Largest datagram read (the Go beacon's buffer; no UDP payload is larger).
const RECV_BUFFER: usize = 65_535;

/// Kernel socket buffers requested, each way (the Go beacon asks for 4 MiB to receive).
const SOCKET_BUFFER: usize = 4 << 20;

/// Where peer beacons come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerSource {
    /// No peers: a lone beacon.
    None,
    /// A fixed list.
    Static(Vec<SocketAddr>),
    /// Registry discovery every `period` (first run at start); needs a non-zero beacon ID.
    Registry {
        /// The registry's TCP address.
        registry: SocketAddr,
        /// How often to re-register and re-list ([`DEFAULT_DISCOVERY_PERIOD`]; at least 10 ms).
        period: Duration,
    },
}

/// How to run a beacon server.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// UDP address to bind (Go default `:9001`).
    pub listen: SocketAddr,
    /// The address registered with the registry; default the bound address (a wildcard IP is
    /// replaced by the local IP of the registry connection).
    pub advertise: Option<SocketAddr>,
    /// The protocol's tunables.
    pub beacon: BeaconConfig,
    /// Where peer beacons come from.
    pub peers: PeerSource,
    /// The key of its move proofs; `None` draws one from the operating system at bind.
    pub move_key: Option<MoveKey>,
}

impl ServerConfig {
    /// A lone beacon on `listen` with default tunables.
    pub fn new(listen: SocketAddr) -> Self {
        ServerConfig {
            listen,
            advertise: None,
            beacon: BeaconConfig::default(),
            peers: PeerSource::None,
            move_key: None,
        }
    }
}

/// A bound beacon, ready to [`run`](Self::run).
pub struct BeaconServer<N: Network> {
    net: N,
    socket: Arc<N::Udp>,
    local: SocketAddr,
    config: ServerConfig,
    move_key: MoveKey,
    status: watch::Sender<BeaconStatus>,
}

/// `peers` without any of `own` (a beacon finds itself in the registry's list).
fn without_own(peers: &[SocketAddr], own: &[SocketAddr]) -> Vec<SocketAddr> {
    peers
        .iter()
        .copied()
        .filter(|p| !own.iter().any(|o| canonical(*o) == canonical(*p)))
        .collect()
}

/// `to` in the address family of a socket bound to `local` (a dual-stack IPv6 socket sends to
/// IPv4 peers as mapped addresses); `None` if it cannot be reached from that socket.
fn for_socket(local: SocketAddr, to: SocketAddr) -> Option<SocketAddr> {
    match (local.ip(), to.ip()) {
        (IpAddr::V6(_), IpAddr::V4(v4)) => {
            Some(SocketAddr::new(v4.to_ipv6_mapped().into(), to.port()))
        }
        (IpAddr::V4(_), IpAddr::V6(v6)) => v6
            .to_ipv4_mapped()
            .map(|v4| SocketAddr::new(v4.into(), to.port())),
        _ => Some(to),
    }
}

impl<N: Network> BeaconServer<N> {
    /// Binds the UDP socket. Registry discovery without a beacon ID is refused, as in Go.
    pub async fn bind(net: N, config: ServerConfig) -> io::Result<Self> {
        if matches!(config.peers, PeerSource::Registry { .. }) && config.beacon.beacon_id == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "registry peer discovery needs a non-zero beacon ID",
            ));
        }
        let socket = net.bind_udp(config.listen).await?;
        // Relay bursts from many daemons arrive at once; the kernel's default buffer drops them.
        if let Err(e) = socket.set_buffer_sizes(SOCKET_BUFFER) {
            tracing::warn!(error = %e, "could not enlarge the beacon socket's buffers");
        }
        let local = socket.local_addr()?;
        let move_key = match config.move_key.clone() {
            Some(key) => key,
            None => MoveKey::random()?,
        };
        Ok(BeaconServer {
            move_key,
            net,
            socket: Arc::new(socket),
            local,
            config,
            status: watch::channel(BeaconStatus::default()).0,
        })
    }

    /// The beacon's status, updated after every gossip tick and when it stops (cheap: nothing is
    /// published per datagram).
    pub fn status(&self) -> watch::Receiver<BeaconStatus> {
        self.status.subscribe()
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Serves until `shutdown` becomes true (or its sender is dropped); returns the counters.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> io::Result<BeaconStats> {
        let mut beacon = Beacon::new(
            self.config.beacon.clone(),
            monotonic_now(),
            self.move_key.clone(),
        );
        let advertised = self.config.advertise.unwrap_or(self.local);
        let own = [self.local, advertised];
        let not_self = move |peers: &[SocketAddr]| without_own(peers, &own);

        let (peers_tx, mut peers_rx) = watch::channel(Vec::<SocketAddr>::new());
        let discovery = match &self.config.peers {
            PeerSource::None => None,
            PeerSource::Static(list) => {
                beacon.set_peers(&not_self(list));
                None
            }
            &PeerSource::Registry { registry, period } => Some(tokio::spawn(discovery_loop(
                self.net.clone(),
                registry,
                self.config.beacon.beacon_id,
                advertised,
                period,
                peers_tx,
                shutdown.clone(),
            ))),
        };

        let mut buf = vec![0u8; RECV_BUFFER];
        let mut out = Outbox::new();
        // One timer, re-armed only when the deadline moves (once per tick, not per datagram).
        let timer = tokio::time::sleep_until(Instant::from_std(beacon.poll_timeout()));
        tokio::pin!(timer);
        let mut ticks = 0u64;
        loop {
            let deadline = Instant::from_std(beacon.poll_timeout());
            if timer.deadline() != deadline {
                timer.as_mut().reset(deadline);
            }
            tokio::select! {
                biased;
                _ = shutdown.wait_for(|stop| *stop) => break,
                // Never earlier than the deadline, so the tick always runs and re-arms the timer.
                () = &mut timer => {
                    beacon.handle_timeout(monotonic_now().max(deadline.into_std()), &mut out);
                    ticks += 1;
                    self.publish(&beacon, ticks);
                }
                Ok(()) = peers_rx.changed() => {
                    let peers = not_self(&peers_rx.borrow_and_update());
                    tracing::info!(count = peers.len(), "peer beacons updated");
                    beacon.set_peers(&peers);
                }
                received = self.socket.recv_from(&mut buf) => match received {
                    Ok((len, from)) => beacon.handle_datagram(monotonic_now(), from, &buf[..len], &mut out),
                    // ICMP errors surface here on some systems; they concern one peer only.
                    Err(e) => tracing::debug!(error = %e, "beacon receive failed"),
                },
            }
            self.flush(&mut out).await;
        }
        if let Some(task) = discovery {
            task.abort();
        }
        self.publish(&beacon, ticks);
        Ok(*beacon.stats())
    }

    fn publish(&self, beacon: &Beacon, ticks: u64) {
        self.status.send_replace(BeaconStatus {
            stats: *beacon.stats(),
            nodes: beacon.node_count(),
            gossip: beacon.gossip_count(),
            peers: beacon.peers(),
            ticks,
        });
    }

    async fn flush(&self, out: &mut Outbox) {
        for (to, bytes) in out.iter() {
            let Some(to) = for_socket(self.local, to) else {
                continue;
            };
            if let Err(e) = self.socket.send_to(bytes, to).await {
                tracing::debug!(%to, error = %e, "beacon send failed");
            }
        }
        out.clear();
    }
}

/// Registers with the registry and publishes the peer list every `period`; a failed round keeps
/// the previous list.
async fn discovery_loop<N: Network>(
    net: N,
    registry: SocketAddr,
    beacon_id: u32,
    advertised: SocketAddr,
    period: Duration,
    peers: watch::Sender<Vec<SocketAddr>>,
    mut shutdown: watch::Receiver<bool>,
) {
    // A zero period would hammer the registry.
    let period = period.max(Duration::from_millis(10));
    let mut next = Instant::now();
    loop {
        let round = async {
            tokio::time::sleep_until(next).await;
            discover_peers(&net, registry, beacon_id, advertised).await
        };
        let result = tokio::select! {
            biased;
            _ = shutdown.wait_for(|stop| *stop) => return,
            result = round => result,
        };
        next = Instant::now() + period;
        match result {
            Ok(list) => {
                peers.send_replace(list.iter().map(|p| p.addr).collect());
            }
            Err(e) => tracing::warn!(%registry, error = %e, "beacon peer discovery failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_beacon_is_not_its_own_peer() {
        let own: SocketAddr = "192.0.2.1:9001".parse().unwrap();
        let other: SocketAddr = "192.0.2.2:9001".parse().unwrap();
        let mapped_own: SocketAddr = "[::ffff:192.0.2.1]:9001".parse().unwrap();
        assert_eq!(without_own(&[own, other, mapped_own], &[own]), [other]);
    }

    #[test]
    fn addresses_follow_the_socket_family() {
        let v4: SocketAddr = "0.0.0.0:9001".parse().unwrap();
        let v6: SocketAddr = "[::]:9001".parse().unwrap();
        let peer4: SocketAddr = "192.0.2.1:9001".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:192.0.2.1]:9001".parse().unwrap();
        let peer6: SocketAddr = "[2001:db8::1]:9001".parse().unwrap();
        assert_eq!(for_socket(v6, peer4), Some(mapped));
        assert_eq!(for_socket(v4, mapped), Some(peer4));
        assert_eq!(for_socket(v4, peer6), None);
        assert_eq!(for_socket(v6, peer6), Some(peer6));
        assert_eq!(for_socket(v4, peer4), Some(peer4));
    }
}
