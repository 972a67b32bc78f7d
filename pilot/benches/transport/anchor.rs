//! The anchor: quinn-proto (QUIC, RFC 9000/9002 loss recovery, CUBIC) driven over the same
//! `LinkModel` path and seed as our transport, with windows and packet size set to ours so only
//! loss recovery and congestion control differ.

use super::Outcome;
use bytes::BytesMut;
use pilot::transport::link_model::{Dir, LinkConfig, LinkModel};
use quinn_proto::{
    ClientConfig, Connection, ConnectionHandle, DatagramEvent, Endpoint, EndpointConfig, Event,
    ServerConfig, StreamEvent, TransportConfig, VarInt,
};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::RootCertStore;

/// Our segment plus our 34-byte header: the same datagram size on the link.
const DATAGRAM: u16 = 4096 + 34;
/// Our default send and receive buffers.
const WINDOW: u32 = 1 << 20;

fn transport() -> Arc<TransportConfig> {
    let mut t = TransportConfig::default();
    t.initial_mtu(DATAGRAM)
        .mtu_discovery_config(None)
        .stream_receive_window(VarInt::from_u32(WINDOW))
        .receive_window(VarInt::from_u32(WINDOW))
        .send_window(u64::from(WINDOW))
        .max_idle_timeout(None);
    Arc::new(t)
}

fn configs() -> (ServerConfig, ClientConfig) {
    let key = rcgen::generate_simple_self_signed(vec!["bench".to_string()]).expect("self-signed");
    let cert = CertificateDer::from(key.cert.der().to_vec());
    let pkcs8 = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.signing_key.serialize_der()));
    let mut server = ServerConfig::with_single_cert(vec![cert.clone()], pkcs8).expect("server");
    server.transport_config(transport());
    let mut roots = RootCertStore::empty();
    roots.add(cert).expect("root");
    let mut client = ClientConfig::with_root_certificates(Arc::new(roots)).expect("client");
    client.transport_config(transport());
    (server, client)
}

struct Side {
    endpoint: Endpoint,
    conn: Option<(ConnectionHandle, Connection)>,
    addr: SocketAddr,
}

impl Side {
    fn events(&mut self) {
        let Some((ch, conn)) = self.conn.as_mut() else {
            return;
        };
        while let Some(ev) = conn.poll_endpoint_events() {
            if let Some(back) = self.endpoint.handle_event(*ch, ev) {
                conn.handle_event(back);
            }
        }
    }
}

/// Sends `total` bytes client→server on one unidirectional stream; goodput as for ours.
pub fn run(link: LinkConfig, seed: u64, total: usize, limit: Duration) -> Outcome {
    let t0 = Instant::now();
    let mut now = t0;
    let mut path = LinkModel::new(link, seed);
    let (server_config, client_config) = configs();
    let endpoint_config = Arc::new(EndpointConfig::default());
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut client = Side {
        endpoint: Endpoint::new(endpoint_config.clone(), None, false, Some(seed_bytes)),
        conn: None,
        addr: "10.0.0.1:4433".parse().unwrap(),
    };
    seed_bytes[8] = 1;
    let mut server = Side {
        endpoint: Endpoint::new(
            endpoint_config,
            Some(Arc::new(server_config)),
            false,
            Some(seed_bytes),
        ),
        conn: None,
        addr: "10.0.0.2:4433".parse().unwrap(),
    };
    client.conn = Some(
        client
            .endpoint
            .connect(now, client_config, server.addr, "bench")
            .expect("connect"),
    );
    let chunk = vec![0x5a; 64 * 1024];
    let mut buf = Vec::with_capacity(1 << 16);
    let mut response = Vec::new();
    let (mut written, mut read) = (0usize, 0usize);
    let mut send_stream = None;
    let mut recv_stream = None;
    let mut first_byte = None;
    while read < total && now - t0 < limit {
        // Application: the client opens one stream once connected and keeps it full.
        if let Some((_, conn)) = client.conn.as_mut() {
            while let Some(ev) = conn.poll() {
                if matches!(ev, Event::Connected) {
                    send_stream = conn.streams().open(quinn_proto::Dir::Uni);
                }
            }
            if let Some(id) = send_stream {
                while written < total {
                    let n = chunk.len().min(total - written);
                    match conn.send_stream(id).write(&chunk[..n]) {
                        Ok(k) => written += k,
                        Err(_) => break,
                    }
                }
            }
        }
        if let Some((_, conn)) = server.conn.as_mut() {
            while let Some(ev) = conn.poll() {
                if let Event::Stream(StreamEvent::Opened { .. }) = ev {
                    recv_stream = recv_stream.or(conn.streams().accept(quinn_proto::Dir::Uni));
                }
            }
            if let Some(id) = recv_stream {
                let mut stream = conn.recv_stream(id);
                let chunks = stream.read(true);
                if let Ok(mut chunks) = chunks {
                    while let Ok(Some(c)) = chunks.next(usize::MAX) {
                        first_byte.get_or_insert(now - t0);
                        read += c.bytes.len();
                    }
                    let _ = chunks.finalize();
                }
            }
        }
        client.events();
        server.events();
        for (dir, side) in [(Dir::AtoB, &mut client), (Dir::BtoA, &mut server)] {
            let Some((_, conn)) = side.conn.as_mut() else {
                continue;
            };
            loop {
                buf.clear();
                match conn.poll_transmit(now, 1, &mut buf) {
                    Some(t) => {
                        path.send(now, dir, &buf[..t.size]);
                    }
                    None => break,
                }
            }
        }
        let timeouts = [client.conn.as_mut(), server.conn.as_mut()]
            .into_iter()
            .flatten()
            .filter_map(|(_, c)| c.poll_timeout())
            .min();
        let Some(next) = [path.next_delivery(), timeouts].into_iter().flatten().min() else {
            break;
        };
        now = now.max(next);
        while let Some((dir, bytes)) = path.pop_due(now) {
            let (to, from_addr) = match dir {
                Dir::AtoB => (&mut server, client.addr),
                Dir::BtoA => (&mut client, server.addr),
            };
            response.clear();
            let data = BytesMut::from(&bytes[..]);
            path.recycle(bytes);
            match to
                .endpoint
                .handle(now, from_addr, None, None, data, &mut response)
            {
                Some(DatagramEvent::NewConnection(incoming)) => {
                    response.clear();
                    match to.endpoint.accept(incoming, now, &mut response, None) {
                        Ok(conn) => to.conn = Some(conn),
                        Err(e) => {
                            if let Some(t) = e.response {
                                path.send(now, dir_back(dir), &response[..t.size]);
                            }
                        }
                    }
                }
                Some(DatagramEvent::ConnectionEvent(_, ev)) => {
                    if let Some((_, conn)) = to.conn.as_mut() {
                        conn.handle_event(ev);
                    }
                }
                Some(DatagramEvent::Response(t)) => {
                    path.send(now, dir_back(dir), &response[..t.size]);
                }
                None => {}
            }
        }
        for side in [&mut client, &mut server] {
            if let Some((_, conn)) = side.conn.as_mut() {
                if conn.poll_timeout().is_some_and(|t| t <= now) {
                    conn.handle_timeout(now);
                }
            }
        }
    }
    let stats = client.conn.as_ref().map(|(_, c)| c.stats());
    Outcome {
        goodput: read as f64 / (now - t0).as_secs_f64(),
        complete: read >= total,
        first_byte,
        repairs: stats.map_or(0, |s| s.path.lost_packets),
        timeouts: None,
        link: path.stats(),
    }
}

fn dir_back(dir: Dir) -> Dir {
    match dir {
        Dir::AtoB => Dir::BtoA,
        Dir::BtoA => Dir::AtoB,
    }
}
