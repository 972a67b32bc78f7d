//! The secure channel over any byte stream: the key exchange, then a [`SecureStream`] that
//! implements `AsyncRead` and `AsyncWrite` with one record per write.

use super::record::{channel_key, Opener, RecordError, Role, Sealer, MAX_PLAINTEXT};
use crate::crypto::agreement::AgreementKeyPair;
use crate::net::Rng;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// How long the key exchange may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn invalid(e: RecordError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Dials' side: sends our ephemeral key first, then reads the server's.
pub async fn client<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    rng: &mut Rng,
) -> io::Result<SecureStream<S>> {
    handshake(stream, rng, Role::Client).await
}

/// Accepting side: reads the client's key, then sends ours.
pub async fn server<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    rng: &mut Rng,
) -> io::Result<SecureStream<S>> {
    handshake(stream, rng, Role::Server).await
}

async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    rng: &mut Rng,
    role: Role,
) -> io::Result<SecureStream<S>> {
    let own = AgreementKeyPair::generate(rng);
    let exchange = async {
        let mut peer = [0u8; 32];
        if role == Role::Client {
            stream.write_all(&own.public_key()).await?;
            stream.flush().await?;
            stream.read_exact(&mut peer).await?;
        } else {
            stream.read_exact(&mut peer).await?;
            stream.write_all(&own.public_key()).await?;
            stream.flush().await?;
        }
        Ok::<_, io::Error>(peer)
    };
    let peer = tokio::time::timeout(HANDSHAKE_TIMEOUT, exchange)
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                "secure channel: no key exchange within 10 s",
            )
        })??;
    let shared = own
        .shared_secret(&peer)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let key = channel_key(&shared);
    Ok(SecureStream {
        inner: stream,
        sealer: Sealer::new(&key, role),
        opener: Opener::new(&key, role),
        out: Vec::new(),
        out_pos: 0,
        incoming: Vec::new(),
        plain: Vec::new(),
        plain_pos: 0,
        failed: None,
    })
}

/// An encrypted stream. Reads return plaintext in order; each write becomes one record (of
/// at most 256 KiB of plaintext).
pub struct SecureStream<S> {
    inner: S,
    sealer: Sealer,
    opener: Opener,
    /// A sealed record not yet fully written.
    out: Vec<u8>,
    out_pos: usize,
    /// Raw bytes received and not yet a whole record.
    incoming: Vec<u8>,
    /// Plaintext of the last record not yet read.
    plain: Vec<u8>,
    plain_pos: usize,
    /// A bad record ends the stream for good.
    failed: Option<RecordError>,
}

impl<S> SecureStream<S> {
    /// The underlying stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncWrite + Unpin> SecureStream<S> {
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.out_pos < self.out.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.out[self.out_pos..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out_pos += n;
        }
        self.out.clear();
        self.out_pos = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SecureStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.plain_pos < this.plain.len() {
                let n = buf.remaining().min(this.plain.len() - this.plain_pos);
                buf.put_slice(&this.plain[this.plain_pos..this.plain_pos + n]);
                this.plain_pos += n;
                return Poll::Ready(Ok(()));
            }
            if let Some(e) = &this.failed {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    e.to_string(),
                )));
            }
            match Opener::record_len(&this.incoming) {
                Err(e) => {
                    this.failed = Some(e.clone());
                    return Poll::Ready(Err(invalid(e)));
                }
                Ok(Some(len)) if this.incoming.len() >= len => {
                    let mut record: Vec<u8> = this.incoming.drain(..len).collect();
                    match this.opener.open(&mut record) {
                        Ok(plain) => {
                            let plain_len = plain.len();
                            // The plaintext sits after the length and nonce.
                            record.drain(..16);
                            record.truncate(plain_len);
                            this.plain = record;
                            this.plain_pos = 0;
                            // An empty record carries nothing: read on.
                        }
                        Err(e) => {
                            this.failed = Some(e.clone());
                            return Poll::Ready(Err(invalid(e)));
                        }
                    }
                }
                Ok(need) => {
                    // Read at most the rest of this record, so memory stays one record.
                    let want = need.map_or(4, |len| len - this.incoming.len()).max(1);
                    let start = this.incoming.len();
                    this.incoming.resize(start + want.min(64 << 10), 0);
                    let mut read = ReadBuf::new(&mut this.incoming[start..]);
                    let result = Pin::new(&mut this.inner).poll_read(cx, &mut read);
                    let got = read.filled().len();
                    this.incoming.truncate(start + got);
                    ready!(result)?;
                    if got == 0 {
                        return if this.incoming.is_empty() {
                            Poll::Ready(Ok(())) // clean end between records
                        } else {
                            Poll::Ready(Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "secure channel: stream ended inside a record",
                            )))
                        };
                    }
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SecureStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        let n = buf.len().min(MAX_PLAINTEXT);
        this.sealer
            .seal(&buf[..n], &mut this.out)
            .map_err(invalid)?;
        // Start sending now; what does not fit goes out on the next write or flush.
        if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}
