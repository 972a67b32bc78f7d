//! The trust handshake from the CLI (`spec/services.md` §6.5): request, review, approve,
//! reject, list and revoke.

use crate::pilotctl::args::Args;
use crate::pilotctl::output::{format_unix_utc, table, CliError, Code, Success};
use crate::pilotctl::target::{self, parse_literal};
use crate::pilotctl::Ctx;
use pilot::driver::DriverError;
use serde_json::json;

/// Shortens a base64 key for tables.
fn short_key(key: &str) -> String {
    if key.is_empty() {
        "(unknown)".into()
    } else if key.chars().count() > 12 {
        format!("{}…", key.chars().take(12).collect::<String>())
    } else {
        key.into()
    }
}

/// `handshake <target> [justification]`.
pub async fn handshake(ctx: &Ctx, args: &Args) -> Result<Success, CliError> {
    args.expect_positional(1, 2)?;
    let target = args.arg(0).unwrap_or_default();
    let driver = ctx.driver().await?;
    let node = match parse_literal(target) {
        Some(addr) => addr.node,
        None => target::resolve(ctx, &driver, target).await?.node,
    };
    let reply = driver.handshake(node, args.arg(1).unwrap_or("")).await?;
    // Our own node ID makes the next step copy-pasteable; without it, say what to look up.
    let own = match driver.info().await {
        Ok(info) => info.node_id.to_string(),
        Err(_) => "<your node ID>".to_string(),
    };
    let human = format!(
        "Trust request sent to node {node}.\n\
         Next: node {node} approves it with `pilotctl approve {own}`;\n\
         check progress with `pilotctl trust`."
    );
    Ok(Success::new(
        json!({"status": reply.status, "node_id": reply.node_id}),
        human,
    ))
}

/// `pending`.
pub async fn pending(ctx: &Ctx, args: &Args) -> Result<Success, CliError> {
    args.expect_positional(0, 0)?;
    let list = ctx.driver().await?.pending().await?;
    let human = if list.is_empty() {
        "No pending trust requests.".to_string()
    } else {
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|p| {
                vec![
                    p.node_id.to_string(),
                    format_unix_utc(p.received_at),
                    short_key(&p.public_key),
                    p.justification.clone(),
                ]
            })
            .collect();
        let mut text = table(
            &["NODE ID", "RECEIVED", "KEY", "JUSTIFICATION"],
            &rows,
            usize::MAX,
        );
        text.push_str("\nApprove with: pilotctl approve <node_id>; reject with: pilotctl reject <node_id> [reason]");
        text
    };
    Ok(Success::new(json!({"pending": list}), human))
}

/// `approve <node_id>`.
pub async fn approve(ctx: &Ctx, args: &Args) -> Result<Success, CliError> {
    args.expect_positional(1, 1)?;
    let node = target::node_id("approve", args.arg(0).unwrap_or_default())?;
    let reply = ctx.driver().await?.approve(node).await?;
    Ok(Success::new(
        json!({"status": reply.status, "node_id": reply.node_id}),
        format!("Approved node {node}: it is now trusted."),
    ))
}

/// `reject <node_id> [reason]`.
pub async fn reject(ctx: &Ctx, args: &Args) -> Result<Success, CliError> {
    args.expect_positional(1, 2)?;
    let node = target::node_id("reject", args.arg(0).unwrap_or_default())?;
    let reply = ctx
        .driver()
        .await?
        .reject(node, args.arg(1).unwrap_or(""))
        .await?;
    Ok(Success::new(
        json!({"status": reply.status, "node_id": reply.node_id}),
        format!("Rejected the trust request of node {node}."),
    ))
}

/// `trust`: trusted peers.
pub async fn trusted(ctx: &Ctx, args: &Args) -> Result<Success, CliError> {
    args.expect_positional(0, 0)?;
    let list = ctx.driver().await?.trusted().await?;
    let human = if list.is_empty() {
        "No trusted peers. Ask for trust with: pilotctl handshake <target> \"reason\"".to_string()
    } else {
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|t| {
                vec![
                    t.node_id.to_string(),
                    if t.mutual { "yes" } else { "no" }.to_string(),
                    if t.network == 0 {
                        "-".into()
                    } else {
                        t.network.to_string()
                    },
                    format_unix_utc(t.approved_at),
                    short_key(&t.public_key),
                ]
            })
            .collect();
        table(
            &["NODE ID", "MUTUAL", "NETWORK", "APPROVED", "KEY"],
            &rows,
            usize::MAX,
        )
    };
    Ok(Success::new(json!({"trusted": list}), human))
}

/// `untrust <node_id>`.
pub async fn untrust(ctx: &Ctx, args: &Args) -> Result<Success, CliError> {
    args.expect_positional(1, 1)?;
    let node = target::node_id("untrust", args.arg(0).unwrap_or_default())?;
    match ctx.driver().await?.revoke(node).await {
        Ok(_) => Ok(Success::new(
            json!({"node_id": node}),
            format!("Revoked trust in node {node}."),
        )),
        Err(DriverError::Daemon { message, .. }) if message.contains("was not trusted") => Err(
            CliError::new(Code::NotFound, format!("node {node} was not trusted"))
                .hint("list trusted peers with: pilotctl trust"),
        ),
        Err(e) => Err(e.into()),
    }
}
