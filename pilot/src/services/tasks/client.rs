//! The SDK side of task submit: one frame per connection, as the daemon reads exactly one.
//! Dial over a [`Driver`] (applications, the CLI) or in-process with [`ServiceStream::dial`]
//! (the daemon telling a submitter about a cancelled or expired task).

use super::frame::{
    Frame, FrameError, Header, SendResults, StatusUpdate, SubmitRequest, SubmitResponse, HEADER_LEN,
};
use super::TASK_PORT;
use crate::daemon::DaemonHandle;
use crate::driver::{Driver, DriverError, Stream};
use crate::services::conn::ServiceStream;
use crate::wire::Addr;
use std::io;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Why a task message failed.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The connection failed or ended.
    #[error("connection: {0}")]
    Io(#[from] io::Error),
    /// A frame could not be built or read.
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// Opens a connection to `addr`'s port 1003 through the daemon behind `driver`.
pub async fn dial(driver: &Driver, addr: Addr) -> Result<TaskClient<Stream>, DriverError> {
    Ok(TaskClient::new(driver.dial(addr, TASK_PORT).await?))
}

/// Opens a connection to `addr`'s port 1003 from inside a daemon.
pub async fn dial_local(
    handle: &DaemonHandle,
    addr: Addr,
) -> Result<TaskClient<ServiceStream>, String> {
    Ok(TaskClient::new(
        ServiceStream::dial(handle, addr, TASK_PORT).await?,
    ))
}

/// One task connection.
pub struct TaskClient<S> {
    stream: S,
}

impl<S: AsyncRead + AsyncWrite + Unpin> TaskClient<S> {
    /// A client over an open stream to port 1003.
    pub fn new(stream: S) -> Self {
        TaskClient { stream }
    }

    async fn write(&mut self, frame: &Frame) -> Result<(), ClientError> {
        let bytes = frame.encode()?;
        self.stream.write_all(&bytes).await?;
        self.stream.flush().await?;
        Ok(())
    }

    /// Submits a task and reads the 200/400 reply.
    pub async fn submit(mut self, request: SubmitRequest) -> Result<SubmitResponse, ClientError> {
        self.write(&Frame::Submit(request)).await?;
        let mut bytes = [0u8; HEADER_LEN];
        self.stream.read_exact(&mut bytes).await?;
        let header = Header::parse(bytes)?;
        let mut payload = vec![0u8; header.len as usize];
        self.stream.read_exact(&mut payload).await?;
        let _ = self.stream.shutdown().await;
        Ok(Frame::decode_response(header.kind, &payload)?)
    }

    /// Sends a status update (no reply) and closes.
    pub async fn status_update(mut self, update: StatusUpdate) -> Result<(), ClientError> {
        self.write(&Frame::StatusUpdate(update)).await?;
        self.finish().await
    }

    /// Sends results (no reply) and closes.
    pub async fn send_results(mut self, results: SendResults) -> Result<(), ClientError> {
        self.write(&Frame::SendResults(results)).await?;
        self.finish().await
    }

    /// Waits for the daemon to close the connection: it does so once the frame was handled
    /// (closing first would end the connection both ways and lose that signal).
    async fn finish(mut self) -> Result<(), ClientError> {
        let mut rest = Vec::new();
        let _ = self.stream.read_to_end(&mut rest).await;
        let _ = self.stream.shutdown().await;
        Ok(())
    }
}
