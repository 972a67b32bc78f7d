//! `broadcast <network_id> <message>`: the message to the inbox of every trusted peer of a
//! network, through data exchange (port 1001), all at once. Each peer's ACK (or why there was
//! none) is reported; an offline peer is a line in the report, not a failure of the command.
//! The reference only answers `unavailable`.

use super::messages::ack_text;
use crate::pilotctl::args::Args;
use crate::pilotctl::output::{CliError, Code, Success};
use crate::pilotctl::Ctx;
use pilot::driver::Driver;
use pilot::services::dataexchange::{self, Reply};
use pilot::wire::Addr;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::task::JoinSet;

/// `broadcast <network_id> <message> [--timeout 30s]`.
pub async fn broadcast(ctx: &Ctx, args: &Args) -> Result<Success, CliError> {
    args.expect_positional(2, 2)?;
    let network: u16 =
        args.arg(0).unwrap_or_default().parse().map_err(|_| {
            CliError::usage("broadcast", "the network ID is a number from 0 to 65535")
        })?;
    let message = args.arg(1).unwrap_or_default();
    if message.is_empty() {
        return Err(CliError::usage("broadcast", "the message is empty"));
    }
    let timeout = args.duration("timeout", Duration::from_secs(30))?;
    let driver = ctx.driver().await?;
    // Network 0 is the backbone every node is on: all trusted peers.
    let peers: Vec<u32> = driver
        .trusted()
        .await?
        .into_iter()
        .filter(|p| network == 0 || p.network == network)
        .map(|p| p.node_id)
        .collect();
    if peers.is_empty() {
        return Err(CliError::new(
            Code::NotFound,
            format!("no trusted peer on network {network}"),
        )
        .hint("list trusted peers with: pilotctl trust"));
    }
    ctx.note(&format!("broadcasting to {} peers", peers.len()));
    let mut sends = JoinSet::new();
    for node in peers {
        let (driver, message) = (driver.clone(), message.to_string());
        sends.spawn(async move {
            let result = tokio::time::timeout(timeout, deliver(&driver, node, &message)).await;
            (node, result.unwrap_or_else(|_| Err("timeout".into())))
        });
    }
    let mut report: Vec<(u32, Result<Reply, String>)> = Vec::new();
    while let Some(joined) = sends.join_next().await {
        report.push(joined.map_err(|e| CliError::new(Code::Internal, e.to_string()))?);
    }
    report.sort_by_key(|(node, _)| *node);
    Ok(summary(network, message, &report))
}

/// One peer: dial its data exchange, send the text, read the ACK.
async fn deliver(driver: &Driver, node: u32, message: &str) -> Result<Reply, String> {
    let mut client = dataexchange::dial(driver, Addr::backbone(node))
        .await
        .map_err(|e| e.to_string())?;
    match client.send_text(message).await.map_err(|e| e.to_string())? {
        ack @ Reply::Ack { .. } => Ok(ack),
        other => Err(ack_text(&other)),
    }
}

fn summary(network: u16, message: &str, report: &[(u32, Result<Reply, String>)]) -> Success {
    let mut lines = Vec::new();
    let peers: Vec<Value> = report
        .iter()
        .map(|(node, result)| match result {
            Ok(reply) => {
                lines.push(format!("  {node}: delivered"));
                json!({"node_id": node, "status": "delivered", "ack": ack_text(reply)})
            }
            Err(error) => {
                lines.push(format!("  {node}: not delivered: {error}"));
                json!({"node_id": node, "status": "failed", "error": error})
            }
        })
        .collect();
    let delivered = report.iter().filter(|(_, r)| r.is_ok()).count();
    let human = format!(
        "Broadcast on network {network}: {delivered} of {} peers\n{}",
        report.len(),
        lines.join("\n")
    );
    Success::new(
        json!({"network_id": network, "message": message, "delivered": delivered,
               "failed": report.len() - delivered, "peers": peers}),
        human,
    )
}
