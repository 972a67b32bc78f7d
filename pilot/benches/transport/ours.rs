//! Our stream transport between two `Connection`s over a `LinkModel` path, handshake included.

use super::Outcome;
use pilot::transport::link_model::{Dir, LinkConfig, LinkModel};
use pilot::transport::{Config, Connection, ReadError};
use pilot::wire::{Addr, Packet, SocketAddr};
use std::time::{Duration, Instant};

/// Sends `total` bytes A→B over a path of `link` (seeded by `seed`) and reports the goodput in
/// simulated time: bytes over the time from the dial to the last byte read.
pub fn run(link: LinkConfig, seed: u64, total: usize, limit: Duration) -> Outcome {
    let t0 = Instant::now();
    let mut now = t0;
    let mut path = LinkModel::new(link, seed);
    let a_sock = SocketAddr::new(Addr::new(0, 1), 49152);
    let b_sock = SocketAddr::new(Addr::new(0, 2), 1000);
    let config = Config::default();
    let mut a = Connection::connect(config.clone(), a_sock, b_sock, 0x1234_5678, now);
    let mut b: Option<Connection> = None;
    let chunk = vec![0x5a; 64 * 1024];
    let mut sink = vec![0; 64 * 1024];
    let mut buf = Vec::with_capacity(8192);
    let (mut written, mut read) = (0usize, 0usize);
    let mut first_byte = None;
    while read < total && now - t0 < limit {
        while written < total {
            match a.write(&chunk[..chunk.len().min(total - written)]) {
                Ok(n) => written += n,
                Err(_) => break,
            }
        }
        if let Some(b) = b.as_mut() {
            loop {
                match b.read(&mut sink) {
                    Ok(0) | Err(ReadError::WouldBlock) => break,
                    Ok(n) => {
                        first_byte.get_or_insert(now - t0);
                        read += n
                    }
                    Err(e) => panic!(
                        "stream failed: {e}; sender {:?} {:?} {:?}",
                        a.state(),
                        a.close_reason(),
                        a.stats()
                    ),
                }
            }
        }
        for (dir, conn) in [(Dir::AtoB, Some(&mut a)), (Dir::BtoA, b.as_mut())] {
            let Some(conn) = conn else { continue };
            loop {
                buf.clear();
                if conn.poll_transmit(now, &mut buf).is_none() {
                    break;
                }
                path.send(now, dir, &buf);
            }
        }
        let next = [
            path.next_delivery(),
            a.poll_timeout(),
            b.as_ref().and_then(|b| b.poll_timeout()),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(next) = next else { break };
        now = now.max(next);
        while let Some((dir, bytes)) = path.pop_due(now) {
            let p = Packet::decode(&bytes).expect("connections emit valid packets");
            match dir {
                Dir::AtoB => match b.as_mut() {
                    Some(b) => b.handle_packet(now, &p),
                    None => {
                        b = Some(Connection::accept(
                            config.clone(),
                            b_sock,
                            &p.header,
                            0x9abc_def0,
                            now,
                        ))
                    }
                },
                Dir::BtoA => a.handle_packet(now, &p),
            }
            path.recycle(bytes);
        }
        for conn in [Some(&mut a), b.as_mut()].into_iter().flatten() {
            if conn.poll_timeout().is_some_and(|t| t <= now) {
                conn.handle_timeout(now);
            }
        }
    }
    let s = a.stats();
    Outcome {
        goodput: read as f64 / (now - t0).as_secs_f64(),
        complete: read >= total,
        first_byte,
        repairs: s.retransmits,
        timeouts: Some(s.timeouts),
        link: path.stats(),
    }
}
