//! The daemon side of data exchange: frames in, entries stored, one reply per frame.
//!
//! Every frame is read incrementally (a peer that announces 16 MiB and sends little holds
//! little memory), file data goes to the mailbox as it arrives, and the reply goes out only
//! after the mailbox made the entry durable. A frame that cannot be stored (quota, full disk,
//! unusable name) is still read to its end, so the connection stays in step, and answered
//! with `ERR`.

use super::frame::{self, FrameError, FrameType, Header, Reply, HEADER_LEN, READY};
use super::names;
use super::quota::{PeerQuota, QuotaConfig};
use super::store::{Mailbox, MailboxError};
use crate::net::WallClock;
use crate::services::conn::ServiceListener;
use crate::services::Notify;
use crate::wire::SocketAddr;
use serde_json::json;
use std::io;
use std::sync::{Arc, Mutex};
use thiserror::Error;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Size of the reads that move file data to the mailbox.
const CHUNK: usize = 64 << 10;
/// Longest FILE_STREAM header payload: size, name length, name.
const MAX_STREAM_HEADER: u32 = 10 + frame::MAX_NAME as u32;

/// What the service needs: where to store, what time it is, whom to tell, and the quotas.
pub struct Exchange {
    mailbox: Arc<dyn Mailbox>,
    clock: Arc<dyn WallClock>,
    notify: Notify,
    quota: Mutex<PeerQuota>,
}

impl Exchange {
    /// A service storing into `mailbox`.
    pub fn new(
        mailbox: Arc<dyn Mailbox>,
        clock: Arc<dyn WallClock>,
        notify: Notify,
        quota: QuotaConfig,
    ) -> Self {
        Exchange {
            mailbox,
            clock,
            notify,
            quota: Mutex::new(PeerQuota::new(quota)),
        }
    }

    fn charge(&self, peer: u32, bytes: u64) -> Result<(), String> {
        let mut quota = self.quota.lock().unwrap_or_else(|e| e.into_inner());
        quota
            .charge(peer, bytes, tokio::time::Instant::now())
            .map_err(|left| format!("quota exceeded: this peer may store {left} more bytes now"))
    }

    fn refund(&self, peer: u32, bytes: u64) {
        let mut quota = self.quota.lock().unwrap_or_else(|e| e.into_inner());
        quota.refund(peer, bytes);
    }
}

/// Why a connection ended before its peer closed it cleanly.
#[derive(Debug, Error)]
pub enum ConnError {
    /// A frame header was invalid.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The stream ended inside a frame, or failed.
    #[error("connection: {0}")]
    Io(#[from] io::Error),
}

/// Serves a listener bound to port 1001 until the daemon stops.
pub async fn run(mut listener: ServiceListener, exchange: Arc<Exchange>) {
    while let Some((stream, remote)) = listener.accept().await {
        let exchange = exchange.clone();
        tokio::spawn(async move {
            if let Err(e) = serve(stream, remote, &exchange).await {
                tracing::debug!(%remote, error = %e, "data exchange connection ended");
            }
        });
    }
}

/// Serves one connection: frames until the peer ends the stream.
pub async fn serve<S>(
    mut stream: S,
    remote: SocketAddr,
    exchange: &Exchange,
) -> Result<(), ConnError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let result = serve_frames(&mut stream, remote, exchange).await;
    let _ = stream.shutdown().await;
    result
}

async fn serve_frames<S>(
    stream: &mut S,
    remote: SocketAddr,
    exchange: &Exchange,
) -> Result<(), ConnError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        let Some(header) = read_header(stream).await? else {
            return Ok(());
        };
        let reply = match header.kind {
            FrameType::Text | FrameType::Binary | FrameType::Json => {
                let payload = read_payload(stream, header.len).await?;
                save_message(exchange, remote, header.kind, &payload)
            }
            FrameType::File => receive_file(stream, remote, exchange, header.len).await?,
            FrameType::FileStream => receive_stream(stream, remote, exchange, header.len).await?,
            FrameType::Other(_) => {
                drain(stream, u64::from(header.len)).await?;
                Reply::ack(header.kind, u64::from(header.len))
            }
        };
        write_text(stream, &reply).await?;
    }
}

/// The next header; `None` when the stream ends cleanly between frames.
async fn read_header<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Option<Header>, ConnError> {
    let mut bytes = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        let n = stream.read(&mut bytes[got..]).await?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(truncated("frame header"))
            };
        }
        got += n;
    }
    Ok(Some(Header::parse(bytes)?))
}

fn truncated(what: &str) -> ConnError {
    ConnError::Io(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("stream ended inside a {what}"),
    ))
}

/// Reads `len` bytes, growing the buffer only as they arrive.
async fn read_payload<S: AsyncRead + Unpin>(
    stream: &mut S,
    len: u32,
) -> Result<Vec<u8>, ConnError> {
    let mut payload = Vec::new();
    (&mut *stream)
        .take(u64::from(len))
        .read_to_end(&mut payload)
        .await?;
    if payload.len() != len as usize {
        return Err(truncated("frame"));
    }
    Ok(payload)
}

async fn drain<S: AsyncRead + Unpin>(stream: &mut S, len: u64) -> Result<(), ConnError> {
    let copied = tokio::io::copy(&mut (&mut *stream).take(len), &mut tokio::io::sink()).await?;
    if copied != len {
        return Err(truncated("frame"));
    }
    Ok(())
}

async fn write_text<S: AsyncWrite + Unpin>(stream: &mut S, text: &str) -> Result<(), ConnError> {
    let bytes = frame::encode(FrameType::Text, text.as_bytes())?;
    stream.write_all(&bytes).await?;
    stream.flush().await?;
    Ok(())
}

fn rfc3339(at: std::time::SystemTime) -> String {
    OffsetDateTime::from(at)
        .format(&Rfc3339)
        .unwrap_or_default()
}

fn save_message(
    exchange: &Exchange,
    remote: SocketAddr,
    kind: FrameType,
    payload: &[u8],
) -> String {
    let size = payload.len() as u64;
    if let Err(e) = exchange.charge(remote.addr.node, size) {
        return Reply::save_failed(kind, &e);
    }
    let now = exchange.clock.now();
    let entry = json!({
        "bytes": size,
        "data": String::from_utf8_lossy(payload),
        "from": remote.addr.to_string(),
        "received_at": rfc3339(now),
        "type": kind.name(),
    });
    let stem = format!("{}-{}", kind.name(), names::stamp(now));
    match exchange
        .mailbox
        .save_message(&stem, entry.to_string().as_bytes())
    {
        Ok(_) => {
            (exchange.notify)(
                "message.received",
                json!({"type": kind.name(), "from": remote.addr.to_string(), "size": size}),
            );
            Reply::ack(kind, size)
        }
        Err(e) => {
            exchange.refund(remote.addr.node, size);
            tracing::warn!(%remote, error = %e, "inbox entry not saved");
            Reply::save_failed(kind, &e.to_string())
        }
    }
}

/// A FILE frame: name prefix, then data streamed to the mailbox.
async fn receive_file<S>(
    stream: &mut S,
    remote: SocketAddr,
    exchange: &Exchange,
    len: u32,
) -> Result<String, ConnError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let kind = FrameType::File;
    if len < 2 {
        drain(stream, u64::from(len)).await?;
        return Ok(Reply::ack(kind, u64::from(len)));
    }
    let mut prefix = [0u8; 2];
    stream.read_exact(&mut prefix).await?;
    let name_len = u32::from(u16::from_be_bytes(prefix));
    if name_len == 0 || name_len + 2 > len {
        // No usable name: the whole payload is data, and nothing is stored (as the reference).
        drain(stream, u64::from(len - 2)).await?;
        let data = if name_len == 0 { len - 2 } else { len };
        return Ok(Reply::ack(kind, u64::from(data)));
    }
    let raw_name = read_payload(stream, name_len).await?;
    let size = u64::from(len - 2 - name_len);
    store_file(stream, remote, exchange, &raw_name, size).await
}

/// The stream extension: header, READY, then the bytes.
async fn receive_stream<S>(
    stream: &mut S,
    remote: SocketAddr,
    exchange: &Exchange,
    len: u32,
) -> Result<String, ConnError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if len > MAX_STREAM_HEADER {
        return Err(FrameError::BadStreamHeader("longer than a name allows").into());
    }
    let payload = read_payload(stream, len).await?;
    let (raw_name, size) = frame::parse_stream_header(&payload)?;
    let kind = FrameType::FileStream;
    // Refuse before the sender starts: it sends the bytes only after READY.
    let name = match names::sanitize(raw_name) {
        Some(name) => name,
        None => return Ok(Reply::save_failed(kind, "invalid file name")),
    };
    if let Err(e) = exchange.charge(remote.addr.node, size) {
        return Ok(Reply::save_failed(kind, &e));
    }
    let spool = match exchange.mailbox.begin_file(size) {
        Ok(spool) => spool,
        Err(e) => {
            exchange.refund(remote.addr.node, size);
            return Ok(Reply::save_failed(kind, &e.to_string()));
        }
    };
    write_text(stream, READY).await?;
    let result = copy_to_spool(stream, spool, size).await?;
    Ok(finish_file(exchange, remote, &name, size, result))
}

/// Stores `size` bytes from the stream under the sanitised `raw_name`.
async fn store_file<S>(
    stream: &mut S,
    remote: SocketAddr,
    exchange: &Exchange,
    raw_name: &[u8],
    size: u64,
) -> Result<String, ConnError>
where
    S: AsyncRead + Unpin,
{
    let kind = FrameType::File;
    let Some(name) = names::sanitize(raw_name) else {
        drain(stream, size).await?;
        return Ok(Reply::save_failed(kind, "invalid file name"));
    };
    if let Err(e) = exchange.charge(remote.addr.node, size) {
        drain(stream, size).await?;
        return Ok(Reply::save_failed(kind, &e));
    }
    let spool = match exchange.mailbox.begin_file(size) {
        Ok(spool) => spool,
        Err(e) => {
            exchange.refund(remote.addr.node, size);
            drain(stream, size).await?;
            return Ok(Reply::save_failed(kind, &e.to_string()));
        }
    };
    let result = copy_to_spool(stream, spool, size).await?;
    Ok(finish_file(exchange, remote, &name, size, result))
}

/// Moves `size` bytes into the spool. A spool error does not stop the reading (the frame
/// must be consumed); it is returned once the bytes are in.
async fn copy_to_spool<S: AsyncRead + Unpin>(
    stream: &mut S,
    mut spool: Box<dyn super::store::Spool>,
    size: u64,
) -> Result<Result<Box<dyn super::store::Spool>, MailboxError>, ConnError> {
    let mut buf = vec![0u8; CHUNK];
    let mut left = size;
    let mut failed = None;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = stream.read(&mut buf[..want]).await?;
        if n == 0 {
            return Err(truncated("file"));
        }
        left -= n as u64;
        if failed.is_none() {
            if let Err(e) = spool.write(&buf[..n]) {
                failed = Some(e);
            }
        }
    }
    Ok(match failed {
        Some(e) => Err(e),
        None => Ok(spool),
    })
}

fn finish_file(
    exchange: &Exchange,
    remote: SocketAddr,
    name: &str,
    size: u64,
    spool: Result<Box<dyn super::store::Spool>, MailboxError>,
) -> String {
    let kind = FrameType::File;
    let (stem, ext) = names::stored_file(name, exchange.clock.now());
    match spool.and_then(|spool| spool.commit(&stem, &ext)) {
        Ok(path) => {
            (exchange.notify)(
                "file.received",
                json!({"filename": name, "size": size, "path": path}),
            );
            Reply::ack(kind, size)
        }
        Err(e) => {
            exchange.refund(remote.addr.node, size);
            tracing::warn!(%remote, error = %e, "received file not saved");
            Reply::save_failed(kind, &e.to_string())
        }
    }
}
