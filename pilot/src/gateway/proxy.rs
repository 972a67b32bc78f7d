//! One proxied connection: a local TCP connection joined to a pilot stream, bytes copied both
//! ways through fixed-size buffers.

use crate::driver::Driver;
use crate::wire::Addr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bytes buffered per direction; a slow side makes the other side wait instead of queueing.
pub const COPY_BUFFER: usize = 16 * 1024;

/// How long dialling the pilot address may take before the local connection is dropped.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(30);

/// What one proxied connection carried.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Carried {
    /// Bytes from the local program to the pilot peer.
    pub up: u64,
    /// Bytes from the pilot peer to the local program.
    pub down: u64,
}

/// Dials `addr:port` through `driver` and joins the stream to `tcp` until the peer's side
/// ends. Failures are logged: the local program sees its connection closed.
pub async fn serve_connection(tcp: TcpStream, driver: Driver, addr: Addr, port: u16) {
    let local = tcp.peer_addr().ok();
    let stream = match tokio::time::timeout(DIAL_TIMEOUT, driver.dial(addr, port)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            tracing::warn!(%addr, port, error = %e, "gateway: dial failed");
            return;
        }
        Err(_) => {
            tracing::warn!(%addr, port, "gateway: dial timed out");
            return;
        }
    };
    let _ = tcp.set_nodelay(true);
    match bridge(tcp, stream).await {
        Ok(carried) => {
            tracing::debug!(?local, %addr, port, up = carried.up, down = carried.down, "gateway: connection done")
        }
        Err(e) => tracing::debug!(?local, %addr, port, error = %e, "gateway: connection failed"),
    }
}

/// Copies `local` → `remote` and `remote` → `local`. The local side ending its writes (a
/// half-close) stops only that direction, since a request may be answered after it; the
/// remote side ending ends the whole connection, because pilot streams cannot half-close.
/// Both are closed when this returns (dropping a pilot stream closes it).
pub async fn bridge<L, R>(local: L, remote: R) -> std::io::Result<Carried>
where
    L: AsyncRead + AsyncWrite + Unpin,
    R: AsyncRead + AsyncWrite + Unpin,
{
    let (mut local_rd, mut local_wr) = tokio::io::split(local);
    let (mut remote_rd, mut remote_wr) = tokio::io::split(remote);
    let (mut up_bytes, mut down_bytes) = (0, 0);
    let result = {
        let up = copy(&mut local_rd, &mut remote_wr, &mut up_bytes);
        let down = async {
            let result = copy(&mut remote_rd, &mut local_wr, &mut down_bytes).await;
            let _ = local_wr.shutdown().await;
            result
        };
        tokio::pin!(up, down);
        let mut up_done = false;
        loop {
            tokio::select! {
                biased;
                result = &mut down => break result,
                result = &mut up, if !up_done => {
                    up_done = true;
                    if result.is_err() {
                        break result;
                    }
                }
            }
        }
    };
    result.map(|()| Carried {
        up: up_bytes,
        down: down_bytes,
    })
}

/// Copies until end of file through one fixed buffer, counting into `count`.
async fn copy<R, W>(rd: &mut R, wr: &mut W, count: &mut u64) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; COPY_BUFFER];
    loop {
        let n = rd.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        wr.write_all(&buf[..n]).await?;
        wr.flush().await?;
        *count += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    #[tokio::test]
    async fn a_request_after_a_half_close_still_gets_its_answer() {
        let (local, mut program) = duplex(64);
        let (remote, mut peer) = duplex(64);
        let proxy = tokio::spawn(bridge(local, remote));
        program.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
        program.shutdown().await.unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 18];
        peer.read_exact(&mut buf).await.unwrap();
        request.extend_from_slice(&buf);
        assert_eq!(request, b"GET / HTTP/1.0\r\n\r\n");
        // More than the duplex buffers hold: the copy must wait for the reader, not queue.
        let body = vec![b'x'; 100_000];
        let writer = async {
            peer.write_all(&body).await.unwrap();
            drop(peer);
        };
        let mut answer = Vec::new();
        let reader = program.read_to_end(&mut answer);
        let ((), read) = tokio::join!(writer, reader);
        read.unwrap();
        assert_eq!(answer, body);
        let carried = proxy.await.unwrap().unwrap();
        assert_eq!(
            carried,
            Carried {
                up: 18,
                down: 100_000
            }
        );
    }

    #[tokio::test]
    async fn the_remote_end_closing_closes_the_local_side() {
        let (local, mut program) = duplex(64);
        let (remote, peer) = duplex(64);
        let proxy = tokio::spawn(bridge(local, remote));
        drop(peer);
        let mut rest = Vec::new();
        program.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
        assert_eq!(proxy.await.unwrap().unwrap(), Carried::default());
    }
}
