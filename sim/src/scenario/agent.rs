//! The probe agent: the software of every probe host. It binds UDP sockets and sends probes on
//! the runner's command, through the host's [`SimNet`], records every datagram its sockets
//! receive, and hands registry requests to the host's client ([`super::client`]).

use super::client;
use super::expect::{Observation, Reply};
use crate::net::{SimNet, SimUdpSocket};
use crate::trace;
use crate::world::lock;
use pilot::net::{Network, UdpSocket};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// What the runner asks a host to do.
#[derive(Debug)]
pub(crate) enum Command {
    Bind {
        socket: String,
        port: u16,
    },
    Send {
        socket: String,
        to: SocketAddr,
        tag: String,
    },
    /// A registry request (probe hosts).
    Request(client::Request),
    /// Start the registry and beacon (rendezvous hosts).
    Start,
    /// Promote the standby registry (standby hosts).
    Promote,
    /// Report a digest of the registry's directory (rendezvous hosts) or the daemon's info
    /// (daemon hosts).
    Inspect,
    /// A daemon operation (daemon hosts).
    Daemon(super::daemon::DaemonRequest),
}

/// What all hosts report back.
#[derive(Debug, Default)]
pub(crate) struct Reports {
    pub observations: Mutex<Vec<Observation>>,
    pub errors: Mutex<Vec<String>>,
    /// Registry replies, in arrival order.
    pub replies: Mutex<Vec<Reply>>,
    /// Identity name to the node ID of its last successful registration.
    pub identities: Mutex<BTreeMap<String, u32>>,
    /// Rendezvous host to its directory digest, when asked (`None`: not running).
    pub states: Mutex<BTreeMap<String, Option<String>>>,
    /// Daemon host to its info document, when asked.
    pub daemon_info: Mutex<BTreeMap<String, serde_json::Value>>,
    /// Echo exchanges, in completion order.
    pub echoes: Mutex<Vec<super::daemon::EchoResult>>,
    /// Echo exchanges as their daemon took them on: tag, daemon host, when.
    pub echoes_issued: Mutex<Vec<(String, String, std::time::Duration)>>,
    /// Data-exchange sends, in completion order.
    pub sends: Mutex<Vec<super::exchange::SendRecord>>,
    /// Datagrams as daemons' listeners were handed them, in arrival order.
    pub datagrams: Mutex<Vec<super::datagram::DatagramRecord>>,
    /// Event-stream subscriptions, by tag.
    pub subscriptions: Mutex<BTreeMap<String, super::pubsub::SubscriptionRecord>>,
}

/// The commands of one host; they outlive its crashes, so the restarted agent takes them over.
pub(crate) type Commands = Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Command>>>;

/// Runs one incarnation of a host's agent.
pub(crate) async fn run(net: SimNet, commands: Commands, reports: Arc<Reports>) -> turmoil::Result {
    let name = net.world().node(net.node()).name.clone();
    let mut commands = commands.lock().await;
    let mut sockets: BTreeMap<String, Arc<SimUdpSocket>> = BTreeMap::new();
    let (requests, queue) = mpsc::unbounded_channel();
    tokio::spawn(client::run(net.clone(), queue, reports.clone()));
    while let Some(command) = commands.recv().await {
        match command {
            Command::Request(r) => {
                // The client task lives as long as this incarnation, which is still running.
                let _ = requests.send(r);
            }
            Command::Start | Command::Promote | Command::Inspect | Command::Daemon(_) => {
                lock(&reports.errors).push(format!("{name} runs no registry and no daemon"));
            }
            Command::Bind { socket, port } => {
                match net.bind_udp((Ipv4Addr::UNSPECIFIED, port).into()).await {
                    Ok(s) => {
                        let s = Arc::new(s);
                        tokio::spawn(listen(s.clone(), socket.clone(), reports.clone()));
                        sockets.insert(socket, s);
                    }
                    Err(e) => lock(&reports.errors)
                        .push(format!("bind {socket} on {name} port {port}: {e}")),
                }
            }
            Command::Send { socket, to, tag } => {
                let result = match sockets.get(&socket) {
                    Some(s) => s.send_to(tag.as_bytes(), to).await.map(|_| ()),
                    None => Err(std::io::Error::other(format!(
                        "socket {socket} is not bound on {name} (was the host restarted?)"
                    ))),
                };
                if let Err(e) = result {
                    lock(&reports.errors).push(format!("send {tag:?} from {socket}: {e}"));
                }
            }
        }
    }
    Ok(())
}

async fn listen(socket: Arc<SimUdpSocket>, name: String, reports: Arc<Reports>) {
    let mut buf = vec![0u8; 65_535];
    while let Ok((n, from)) = socket.recv_from(&mut buf).await {
        lock(&reports.observations).push(Observation {
            socket: name.clone(),
            tag: String::from_utf8_lossy(&buf[..n]).into_owned(),
            from,
            at: trace::now(),
        });
    }
}
