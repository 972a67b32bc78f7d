//! `find`, `set-hostname`, `set-public`, `set-private`: the registry through the daemon.

use crate::pilotctl::args::Args;
use crate::pilotctl::config;
use crate::pilotctl::output::{CliError, Code, Success};
use crate::pilotctl::Ctx;
use pilot::driver::DriverError;
use serde_json::json;

/// `find <hostname>`.
pub async fn find(ctx: &Ctx, args: &Args) -> Result<Success, CliError> {
    args.expect_positional(1, 1)?;
    let hostname = args.arg(0).unwrap_or_default();
    let driver = ctx.driver().await?;
    let found = driver
        .resolve_hostname(hostname)
        .await
        .map_err(|e| match e {
            DriverError::Daemon { message, .. } => CliError::new(
                Code::NotFound,
                format!("cannot find {hostname:?}: {message}"),
            )
            .hint(format!(
                "establish trust first: pilotctl handshake {hostname} \"reason\""
            )),
            other => other.into(),
        })?;
    let human = format!(
        "{hostname} → {} (node {}, {})",
        found.address,
        found.node_id,
        if found.public { "public" } else { "private" }
    );
    Ok(Success::new(
        json!({"hostname": hostname, "node_id": found.node_id, "address": found.address,
               "public": found.public}),
        human,
    ))
}

/// `set-hostname <name>`: registry, then the config file so a restarted daemon keeps it.
pub async fn set_hostname(ctx: &Ctx, args: &Args) -> Result<Success, CliError> {
    args.expect_positional(1, 1)?;
    let name = args.arg(0).unwrap_or_default();
    let reply = ctx.driver().await?.set_hostname(name).await?;
    config::update(
        &ctx.pilot_dir()?,
        "hostname",
        Some(name).filter(|n| !n.is_empty()),
    )?;
    let node_id = reply.get("node_id").cloned().unwrap_or(json!(null));
    let hostname = reply
        .get("hostname")
        .and_then(|h| h.as_str())
        .unwrap_or(name)
        .to_string();
    let human = format!("Hostname set to {hostname:?}");
    Ok(Success::new(
        json!({"hostname": hostname, "node_id": node_id}),
        human,
    ))
}

/// `set-public` / `set-private`.
pub async fn set_visibility(ctx: &Ctx, args: &Args, public: bool) -> Result<Success, CliError> {
    args.expect_positional(0, 0)?;
    let reply = ctx.driver().await?.set_visibility(public).await?;
    let human = if public {
        "This node is now public: anyone can resolve its endpoint."
    } else {
        "This node is now private: only trusted peers can resolve its endpoint."
    };
    Ok(Success::new(reply, human))
}
