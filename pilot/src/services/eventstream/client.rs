//! The SDK side of the event stream: subscribe to a topic, publish on any topic, receive.
//!
//! An [`EventClient`] is one connection to port 1002: its first event (sent by
//! [`EventClient::over`]) is the subscription. [`EventClient::split`] separates the receiving
//! side ([`Subscription`]) from the publishing side ([`Publisher`]) so a program can do both
//! at once from different tasks.

use super::frame::{self, Event, FrameError};
use super::EVENT_STREAM_PORT;
use crate::daemon::DaemonHandle;
use crate::driver::{Driver, DriverError, Stream};
use crate::services::conn::ServiceStream;
use crate::wire::Addr;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};

/// Why an event-stream operation failed.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The connection could not be opened.
    #[error("dial: {0}")]
    Dial(String),
    /// An event could not be written or read (including a broken connection).
    #[error(transparent)]
    Frame(#[from] FrameError),
}

impl From<DriverError> for ClientError {
    fn from(e: DriverError) -> Self {
        ClientError::Dial(e.to_string())
    }
}

/// Subscribes to `topic` at `addr` (port 1002) through the daemon behind `driver`.
pub async fn subscribe(
    driver: &Driver,
    addr: Addr,
    topic: &str,
) -> Result<EventClient<Stream>, ClientError> {
    let stream = driver.dial(addr, EVENT_STREAM_PORT).await?;
    EventClient::over(stream, topic.as_bytes()).await
}

/// Subscribes to `topic` at `addr` from inside the daemon behind `handle` (in-process tools
/// and the simulator; applications use [`subscribe`]).
pub async fn subscribe_in_process(
    handle: &DaemonHandle,
    addr: Addr,
    topic: &str,
) -> Result<EventClient<ServiceStream>, ClientError> {
    let stream = ServiceStream::dial(handle, addr, EVENT_STREAM_PORT)
        .await
        .map_err(ClientError::Dial)?;
    EventClient::over(stream, topic.as_bytes()).await
}

/// One connection to an event stream, subscribed to one topic.
pub struct EventClient<S> {
    events: Subscription<ReadHalf<S>>,
    publisher: Publisher<WriteHalf<S>>,
}

impl<S: AsyncRead + AsyncWrite> EventClient<S> {
    /// Subscribes to `topic` over an open stream to port 1002 (sends the subscription event:
    /// the topic and an empty payload).
    pub async fn over(stream: S, topic: &[u8]) -> Result<Self, ClientError> {
        let (reader, writer) = tokio::io::split(stream);
        let mut publisher = Publisher { writer };
        publisher.send(topic, b"").await?;
        Ok(EventClient {
            events: Subscription { reader },
            publisher,
        })
    }

    /// Publishes `payload` on `topic` (any topic, not only the subscribed one).
    pub async fn publish(&mut self, topic: &str, payload: &[u8]) -> Result<(), ClientError> {
        self.publisher.publish(topic, payload).await
    }

    /// The next event for this subscription; `None` when the broker closed the connection.
    pub async fn recv(&mut self) -> Result<Option<Event>, ClientError> {
        self.events.recv().await
    }

    /// The receiving and the publishing side, to use from different tasks.
    pub fn split(self) -> (Subscription<ReadHalf<S>>, Publisher<WriteHalf<S>>) {
        (self.events, self.publisher)
    }

    /// Ends the connection (the broker then removes the subscription).
    pub async fn close(self) -> Result<(), ClientError> {
        self.publisher.close().await
    }
}

/// The receiving side: events on the subscribed topic from other connections.
pub struct Subscription<R> {
    reader: R,
}

impl<R: AsyncRead + Unpin> Subscription<R> {
    /// The next event; `None` when the connection ended.
    pub async fn recv(&mut self) -> Result<Option<Event>, ClientError> {
        Ok(frame::read_event(&mut self.reader).await?)
    }

    /// The events as a `Stream`, ending when the connection ends or after its first error.
    pub fn into_stream(self) -> impl futures_util::Stream<Item = Result<Event, ClientError>>
    where
        R: Send + 'static,
    {
        futures_util::stream::unfold(Some(self), |state| async move {
            let mut sub = state?;
            match sub.recv().await {
                Ok(Some(event)) => Some((Ok(event), Some(sub))),
                Ok(None) => None,
                Err(e) => Some((Err(e), None)),
            }
        })
    }
}

/// The publishing side.
pub struct Publisher<W> {
    writer: W,
}

impl<W: AsyncWrite + Unpin> Publisher<W> {
    /// Publishes `payload` on `topic`, the whole event in one write.
    pub async fn publish(&mut self, topic: &str, payload: &[u8]) -> Result<(), ClientError> {
        self.send(topic.as_bytes(), payload).await
    }

    /// Publishes on a topic given as bytes.
    pub async fn send(&mut self, topic: &[u8], payload: &[u8]) -> Result<(), ClientError> {
        Ok(frame::write_event(&mut self.writer, topic, payload).await?)
    }

    /// Ends the connection.
    pub async fn close(mut self) -> Result<(), ClientError> {
        self.writer.shutdown().await.map_err(FrameError::from)?;
        Ok(())
    }
}
