//! `disconnect <conn_id>`: close one of the daemon's connections, whoever opened it.

use crate::pilotctl::args::Args;
use crate::pilotctl::output::{CliError, Code, Success};
use crate::pilotctl::Ctx;
use pilot::driver::DriverError;
use serde_json::json;

/// `disconnect <conn_id>` (IDs as `connections` lists them).
pub async fn disconnect(ctx: &Ctx, args: &Args) -> Result<Success, CliError> {
    args.expect_positional(1, 1)?;
    let text = args.arg(0).unwrap_or_default();
    let conn: u32 = text
        .parse()
        .ok()
        .filter(|_| text.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| {
            CliError::usage("disconnect", format!("invalid connection ID {text:?}"))
                .hint("connection IDs are the numbers pilotctl connections lists")
        })?;
    let driver = ctx.driver().await?;
    driver.disconnect(conn).await.map_err(|e| match e {
        DriverError::Daemon { message, .. } if message.contains("not found") => {
            CliError::new(Code::NotFound, format!("no connection {conn}"))
                .hint("list the open connections with: pilotctl connections")
        }
        other => other.into(),
    })?;
    Ok(Success::new(
        json!({"conn_id": conn}),
        format!("Connection {conn} closed"),
    ))
}
