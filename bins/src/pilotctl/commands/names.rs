//! `find`, `set-hostname`, `set-public`, `set-private`: the registry through the daemon.

use crate::pilotctl::args::Args;
use crate::pilotctl::config;
use crate::pilotctl::directory;
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
    let registry = match driver.info().await {
        Ok(info) if !info.registry.is_empty() => info.registry,
        _ => ctx.registry(),
    };
    let tags = directory::tags_of(&registry, &[found.node_id])
        .await
        .remove(&found.node_id)
        .unwrap_or_default();
    let human = format!(
        "{hostname} → {} (node {}, {}, tags: {})",
        found.address,
        found.node_id,
        if found.public { "public" } else { "private" },
        directory::tags_text(&tags)
    );
    Ok(Success::new(
        json!({"hostname": hostname, "node_id": found.node_id, "address": found.address,
               "public": found.public, "tags": tags}),
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

/// `clear-hostname`: the registry forgets it, and so does the config file.
pub async fn clear_hostname(ctx: &Ctx, args: &Args) -> Result<Success, CliError> {
    args.expect_positional(0, 0)?;
    ctx.driver().await?.set_hostname("").await?;
    config::update(&ctx.pilot_dir()?, "hostname", None)?;
    Ok(Success::new(json!({"hostname": ""}), "Hostname cleared"))
}

/// Tags a node may carry (the registry enforces the same bound).
const MAX_TAGS: usize = 3;

/// `set-tags <t1> [t2] [t3]`.
pub async fn set_tags(ctx: &Ctx, args: &Args) -> Result<Success, CliError> {
    let count = (0..).take_while(|i| args.arg(*i).is_some()).count();
    if count > MAX_TAGS {
        return Err(CliError::new(
            Code::InvalidArgument,
            format!("{count} tags given; a node has at most {MAX_TAGS}"),
        )
        .hint("usage: pilotctl set-tags <t1> [t2] [t3]"));
    }
    args.expect_positional(1, MAX_TAGS)?;
    let tags: Vec<String> = (0..count)
        .filter_map(|i| args.arg(i))
        .map(String::from)
        .collect();
    tags_reply(ctx, &tags).await
}

/// `clear-tags`.
pub async fn clear_tags(ctx: &Ctx, args: &Args) -> Result<Success, CliError> {
    args.expect_positional(0, 0)?;
    tags_reply(ctx, &[]).await
}

async fn tags_reply(ctx: &Ctx, tags: &[String]) -> Result<Success, CliError> {
    let reply = ctx.driver().await?.set_tags(tags).await?;
    // The registry leaves an empty list out (or null); report what is set either way.
    let tags = reply
        .get("tags")
        .filter(|t| t.is_array())
        .cloned()
        .unwrap_or_else(|| json!(tags));
    let node_id = reply.get("node_id").cloned().unwrap_or(json!(null));
    let human = match tags.as_array().map(Vec::len) {
        Some(0) | None => "Tags cleared".to_string(),
        Some(_) => format!("Tags set: {}", tags),
    };
    Ok(Success::new(
        json!({"node_id": node_id, "tags": tags}),
        human,
    ))
}

/// `deregister`: this node leaves the registry until the daemon registers again.
pub async fn deregister(ctx: &Ctx, args: &Args) -> Result<Success, CliError> {
    args.expect_positional(0, 0)?;
    let reply = ctx.driver().await?.deregister().await?;
    Ok(Success::new(
        json!({"type": reply.get("type").cloned().unwrap_or(json!("deregister_ok"))}),
        "Deregistered: peers can no longer look this node up",
    ))
}
