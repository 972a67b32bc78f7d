//! `set-webhook`, `clear-webhook`: the config file first (a daemon started later posts there),
//! then the running daemon, if there is one.

use crate::pilotctl::args::Args;
use crate::pilotctl::config;
use crate::pilotctl::output::{CliError, Code, Success};
use crate::pilotctl::Ctx;
use serde_json::json;

/// `set-webhook <url>`.
pub async fn set_webhook(ctx: &Ctx, args: &Args) -> Result<Success, CliError> {
    args.expect_positional(1, 1)?;
    let url = args.arg(0).unwrap_or_default();
    if url.is_empty() {
        return Err(
            CliError::new(Code::InvalidArgument, "the webhook URL is empty")
                .hint("to stop posting events, run: pilotctl clear-webhook"),
        );
    }
    pilot::services::webhook::check_url(url).map_err(|e| {
        CliError::new(Code::InvalidArgument, e)
            .hint("give a full URL, for example http://127.0.0.1:8080/events")
    })?;
    config::update(&ctx.pilot_dir()?, "webhook", Some(url))?;
    let applied = apply(ctx, url).await;
    let human = match &applied {
        Ok(()) => format!("Webhook set to {url}; the daemon posts there now."),
        Err(why) => format!("Webhook saved to the config; {why}."),
    };
    Ok(Success::new(report(url, &applied), human))
}

/// `clear-webhook`.
pub async fn clear_webhook(ctx: &Ctx, args: &Args) -> Result<Success, CliError> {
    args.expect_positional(0, 0)?;
    config::update(&ctx.pilot_dir()?, "webhook", None)?;
    let applied = apply(ctx, "").await;
    let human = match &applied {
        Ok(()) => "Webhook cleared; the daemon posts nothing now.".to_string(),
        Err(why) => format!("Webhook removed from the config; {why}."),
    };
    Ok(Success::new(report("", &applied), human))
}

/// `webhook, applied`, and why it was not applied when it was not.
fn report(url: &str, applied: &Result<(), String>) -> serde_json::Value {
    let mut data = json!({"webhook": url, "applied": applied.is_ok()});
    if let Err(why) = applied {
        data["not_applied"] = json!(why);
    }
    data
}

/// Tells the running daemon. Best effort: the config file is what counts, so a daemon that is
/// not running is not an error, only a reason printed beside the result.
async fn apply(ctx: &Ctx, url: &str) -> Result<(), String> {
    let driver = ctx
        .driver()
        .await
        .map_err(|_| "no daemon is running; it takes the webhook when it starts".to_string())?;
    driver
        .set_webhook(url)
        .await
        .map(drop)
        .map_err(|e| format!("the daemon refused it: {e}"))
}
