//! Requests with JSON replies: status, trust, and the registry operations the daemon proxies.

use super::error::{DriverError, Result};
use super::info::{
    Info, PendingList, PendingRequest, Resolved, TrustReply, TrustedList, TrustedPeer,
};
use super::request::Reply;
use super::Driver;
use crate::ipc::message::code;
use crate::ipc::{Command, Event, HandshakeCommand};
use serde::de::DeserializeOwned;
use serde_json::Value;

impl Driver {
    /// Sends `cmd` and returns the raw JSON reply.
    async fn json_bytes(&self, cmd: Command, reply: u8, op: &'static str) -> Result<Vec<u8>> {
        match self.inner.shared.request(&cmd, reply, op).await? {
            Reply::Event(Event::Json { json, .. }) => Ok(json),
            _ => Err(DriverError::Malformed {
                op,
                detail: "unexpected reply type".into(),
            }),
        }
    }

    async fn typed<T: DeserializeOwned>(
        &self,
        cmd: Command,
        reply: u8,
        op: &'static str,
    ) -> Result<T> {
        let json = self.json_bytes(cmd, reply, op).await?;
        serde_json::from_slice(&json).map_err(|e| DriverError::Malformed {
            op,
            detail: format!("invalid JSON: {e}"),
        })
    }

    async fn handshake_op<T: DeserializeOwned>(
        &self,
        cmd: HandshakeCommand,
        op: &'static str,
    ) -> Result<T> {
        self.typed(Command::Handshake(cmd), code::HANDSHAKE_OK, op)
            .await
    }

    /// Closes connection `conn` of the daemon, whichever client owns it (our daemon's
    /// extension; a reference daemon answers `unknown command: 0x26`).
    pub async fn disconnect(&self, conn: u32) -> Result<()> {
        let cmd = Command::Disconnect { conn };
        match self
            .inner
            .shared
            .request(&cmd, code::DISCONNECT_OK, "disconnect")
            .await?
        {
            Reply::Event(Event::DisconnectOk { .. }) => Ok(()),
            _ => Err(DriverError::Malformed {
                op: "disconnect",
                detail: "unexpected reply type".into(),
            }),
        }
    }

    /// The daemon's status.
    pub async fn info(&self) -> Result<Info> {
        self.typed(Command::Info, code::INFO_OK, "info").await
    }

    /// The daemon's status exactly as it sent it (fields this SDK does not know included).
    pub async fn info_json(&self) -> Result<Value> {
        self.typed(Command::Info, code::INFO_OK, "info").await
    }

    /// Asks `node` to trust this node. Returns once the request is sent (or relayed); the
    /// answer arrives later and shows in [`Self::trusted`].
    pub async fn handshake(&self, node: u32, justification: &str) -> Result<TrustReply> {
        let cmd = HandshakeCommand::Send {
            node,
            justification: justification.into(),
        };
        self.handshake_op(cmd, "handshake").await
    }

    /// Approves the pending trust request of `node`.
    pub async fn approve(&self, node: u32) -> Result<TrustReply> {
        self.handshake_op(HandshakeCommand::Approve { node }, "approve")
            .await
    }

    /// Rejects the pending trust request of `node`.
    pub async fn reject(&self, node: u32, reason: &str) -> Result<TrustReply> {
        let cmd = HandshakeCommand::Reject {
            node,
            reason: reason.into(),
        };
        self.handshake_op(cmd, "reject").await
    }

    /// Trust requests waiting for approval.
    pub async fn pending(&self) -> Result<Vec<PendingRequest>> {
        let list: PendingList = self
            .handshake_op(HandshakeCommand::Pending, "pending")
            .await?;
        Ok(list.pending)
    }

    /// Trusted peers.
    pub async fn trusted(&self) -> Result<Vec<TrustedPeer>> {
        let list: TrustedList = self
            .handshake_op(HandshakeCommand::Trusted, "trusted")
            .await?;
        Ok(list.trusted)
    }

    /// Revokes trust in `node` (and tells it, best effort).
    pub async fn revoke(&self, node: u32) -> Result<TrustReply> {
        self.handshake_op(HandshakeCommand::Revoke { node }, "revoke")
            .await
    }

    /// Looks a hostname up in the registry.
    pub async fn resolve_hostname(&self, hostname: &str) -> Result<Resolved> {
        let cmd = Command::ResolveHostname(hostname.into());
        self.typed(cmd, code::RESOLVE_HOSTNAME_OK, "resolve_hostname")
            .await
    }

    /// Sets this node's hostname ("" clears it). Returns the registry's reply.
    pub async fn set_hostname(&self, hostname: &str) -> Result<Value> {
        let cmd = Command::SetHostname(hostname.into());
        self.typed(cmd, code::SET_HOSTNAME_OK, "set_hostname").await
    }

    /// Makes this node public (endpoint resolvable by anyone) or private. Returns the
    /// registry's reply.
    pub async fn set_visibility(&self, public: bool) -> Result<Value> {
        let cmd = Command::SetVisibility(public);
        self.typed(cmd, code::SET_VISIBILITY_OK, "set_visibility")
            .await
    }

    /// Sets this node's tags (at most 3). Returns the registry's reply.
    pub async fn set_tags(&self, tags: &[String]) -> Result<Value> {
        let json = serde_json::to_vec(tags).unwrap_or_else(|_| b"[]".to_vec());
        self.typed(Command::SetTags(json), code::SET_TAGS_OK, "set_tags")
            .await
    }

    /// Enables or disables task execution. Returns the registry's reply.
    pub async fn set_task_exec(&self, enabled: bool) -> Result<Value> {
        let cmd = Command::SetTaskExec(enabled);
        self.typed(cmd, code::SET_TASK_EXEC_OK, "set_task_exec")
            .await
    }

    /// Sets the webhook URL ("" disables). Returns `{"webhook": url}`.
    pub async fn set_webhook(&self, url: &str) -> Result<Value> {
        let cmd = Command::SetWebhook(url.into());
        self.typed(cmd, code::SET_WEBHOOK_OK, "set_webhook").await
    }

    /// Removes this node from the registry (the daemon keeps running and re-registers after
    /// three failed heartbeats). Returns the registry's reply.
    pub async fn deregister(&self) -> Result<Value> {
        self.typed(Command::Deregister, code::DEREGISTER_OK, "deregister")
            .await
    }
}
