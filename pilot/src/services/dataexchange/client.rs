//! The SDK side of data exchange: send messages and files, read the replies.
//!
//! A file that fits in one frame goes as a reference FILE frame, so any daemon stores it.
//! A larger one uses the stream extension: the header goes first, and only after the peer
//! answers `READY` do the bytes follow; a reference daemon answers `ACK UNKNOWN(16)` and the
//! send fails with [`ClientError::Unsupported`] before any file data crossed the wire. Either
//! way the file is read from its source in chunks, never held whole.

use super::frame::{self, FrameError, FrameType, Header, Reply, HEADER_LEN, MAX_FRAME};
use super::DATA_EXCHANGE_PORT;
use crate::driver::{Driver, DriverError, Stream};
use crate::wire::Addr;
use std::io;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Size of the reads that move a file onto the stream.
const CHUNK: usize = 256 << 10;

/// Why a send failed.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The connection failed or ended.
    #[error("connection: {0}")]
    Io(#[from] io::Error),
    /// A frame could not be built or read.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The peer's daemon does not take files larger than one frame.
    #[error("the peer does not accept files over {MAX_FRAME} bytes (it answered {0:?})")]
    Unsupported(String),
    /// The peer refused the frame.
    #[error("the peer did not store it: {0}")]
    Refused(String),
    /// The source ended before the announced size.
    #[error("the file ended after {got} of {size} bytes")]
    ShortSource {
        /// Bytes read.
        got: u64,
        /// Bytes announced.
        size: u64,
    },
}

/// A data-exchange connection.
pub struct DataClient<S> {
    stream: S,
}

/// Opens a data-exchange connection to `addr` (port 1001).
pub async fn dial(driver: &Driver, addr: Addr) -> Result<DataClient<Stream>, DriverError> {
    Ok(DataClient::new(
        driver.dial(addr, DATA_EXCHANGE_PORT).await?,
    ))
}

impl<S: AsyncRead + AsyncWrite + Unpin> DataClient<S> {
    /// A client over an open stream to port 1001.
    pub fn new(stream: S) -> Self {
        DataClient { stream }
    }

    /// Sends one frame and reads the reply.
    pub async fn send(&mut self, kind: FrameType, payload: &[u8]) -> Result<Reply, ClientError> {
        let bytes = frame::encode(kind, payload)?;
        self.stream.write_all(&bytes).await?;
        self.stream.flush().await?;
        self.reply().await
    }

    /// Sends text.
    pub async fn send_text(&mut self, text: &str) -> Result<Reply, ClientError> {
        self.send(FrameType::Text, text.as_bytes()).await
    }

    /// Sends JSON text (not validated, as the reference).
    pub async fn send_json(&mut self, json: &str) -> Result<Reply, ClientError> {
        self.send(FrameType::Json, json.as_bytes()).await
    }

    /// Sends bytes.
    pub async fn send_binary(&mut self, data: &[u8]) -> Result<Reply, ClientError> {
        self.send(FrameType::Binary, data).await
    }

    /// Sends a file held in memory.
    pub async fn send_file(&mut self, name: &str, data: &[u8]) -> Result<Reply, ClientError> {
        self.send_file_from(name, data, data.len() as u64, |_| {})
            .await
    }

    /// Sends `size` bytes read from `source` as the file `name`; `progress` hears the bytes
    /// sent so far after each chunk. Fails with [`ClientError::Refused`] on an `ERR` reply.
    pub async fn send_file_from<R: AsyncRead + Unpin>(
        &mut self,
        name: &str,
        mut source: R,
        size: u64,
        mut progress: impl FnMut(u64),
    ) -> Result<Reply, ClientError> {
        let prefix = frame::file_prefix(name);
        let single = (prefix.len() as u64).saturating_add(size) <= MAX_FRAME as u64;
        if single {
            let header = Header {
                kind: FrameType::File,
                len: (prefix.len() as u64 + size) as u32,
            };
            // Header and payload as separate writes, as the reference writer does.
            self.stream.write_all(&header.encode()).await?;
            self.stream.write_all(&prefix).await?;
        } else {
            let header = frame::stream_header(name, size);
            let bytes = frame::encode(FrameType::FileStream, &header)?;
            self.stream.write_all(&bytes).await?;
            self.stream.flush().await?;
            match self.reply().await? {
                Reply::Ready => {}
                Reply::Err { message, .. } => return Err(ClientError::Refused(message)),
                other => return Err(ClientError::Unsupported(format!("{other:?}"))),
            }
        }
        let mut buf = vec![0u8; CHUNK.min(usize::try_from(size).unwrap_or(CHUNK)).max(1)];
        let mut sent = 0u64;
        while sent < size {
            let want = buf
                .len()
                .min(usize::try_from(size - sent).unwrap_or(usize::MAX));
            let n = source.read(&mut buf[..want]).await?;
            if n == 0 {
                return Err(ClientError::ShortSource { got: sent, size });
            }
            self.stream.write_all(&buf[..n]).await?;
            sent += n as u64;
            progress(sent);
        }
        self.stream.flush().await?;
        match self.reply().await? {
            Reply::Err { message, .. } => Err(ClientError::Refused(message)),
            reply => Ok(reply),
        }
    }

    /// Reads the next frame (a reply, or anything a custom server sends).
    pub async fn recv(&mut self) -> Result<(FrameType, Vec<u8>), ClientError> {
        let mut bytes = [0u8; HEADER_LEN];
        self.stream.read_exact(&mut bytes).await?;
        let header = Header::parse(bytes)?;
        let mut payload = Vec::new();
        (&mut self.stream)
            .take(u64::from(header.len))
            .read_to_end(&mut payload)
            .await?;
        if payload.len() != header.len as usize {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "reply cut short").into());
        }
        Ok((header.kind, payload))
    }

    async fn reply(&mut self) -> Result<Reply, ClientError> {
        let (_, payload) = self.recv().await?;
        Ok(Reply::parse(&String::from_utf8_lossy(&payload)))
    }

    /// Ends the connection.
    pub async fn close(mut self) -> Result<(), ClientError> {
        self.stream.shutdown().await?;
        Ok(())
    }
}
