//! `register`, `rotate-key`: requests to the registry made directly, signed with the node's
//! identity file (no daemon needed).

use crate::pilotctl::args::Args;
use crate::pilotctl::directory;
use crate::pilotctl::output::{CliError, Code, Success};
use crate::pilotctl::Ctx;
use pilot::crypto::{to_base64, Identity};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// `--identity`, else the file `daemon start` uses.
fn identity_path(ctx: &Ctx, args: &Args) -> Result<PathBuf, CliError> {
    match args.string("identity") {
        Some(path) => Ok(PathBuf::from(path)),
        None => Ok(ctx.pilot_dir()?.join("identity.key")),
    }
}

fn identity_error(path: &Path, e: impl std::fmt::Display) -> CliError {
    CliError::new(Code::Internal, format!("identity {}: {e}", path.display()))
        .hint("the file must be the daemon's identity ({\"private_key\", \"public_key\"} JSON)")
}

/// Sends one request to the registry the settings name and returns its reply.
async fn ask_registry(ctx: &Ctx, request: Value) -> Result<Map<String, Value>, CliError> {
    let Value::Object(request) = request else {
        return Err(CliError::new(Code::Internal, "request is not an object"));
    };
    directory::ask(&ctx.registry(), &request, |message| {
        CliError::new(
            Code::ConnectionFailed,
            format!("registry refused: {message}"),
        )
    })
    .await
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// `register [listen_addr] [--identity path]`: registers the identity's key (creating the
/// identity if the file does not exist), signed to prove possession of the key.
pub async fn register(ctx: &Ctx, args: &Args) -> Result<Success, CliError> {
    args.expect_positional(0, 1)?;
    let listen_addr = args.arg(0).unwrap_or_default();
    let path = identity_path(ctx, args)?;
    let mut rng = pilot::net::os_seeded_rng()
        .map_err(|e| CliError::new(Code::Internal, format!("no randomness: {e}")))?;
    let identity =
        Identity::load_or_create(&path, &mut rng).map_err(|e| identity_error(&path, e))?;
    let public_key = to_base64(&identity.public_key());
    let now = unix_now();
    let challenge = format!("register:{public_key}:{now}");
    let mut request = json!({
        "type": "register",
        "public_key": public_key,
        "listen_addr": listen_addr,
        "timestamp": now,
        "signature": to_base64(&identity.sign(challenge.as_bytes())),
    });
    if let Some(owner) = ctx.config_string("owner") {
        request["owner"] = json!(owner);
    }
    let reply = ask_registry(ctx, request).await?;
    let human = format!(
        "Registered node {} ({}) with the key of {}",
        reply.get("node_id").cloned().unwrap_or_default(),
        reply
            .get("address")
            .and_then(Value::as_str)
            .unwrap_or_default(),
        path.display()
    );
    Ok(Success::new(Value::Object(reply), human))
}

/// `rotate-key <node_id> [owner] [--identity path]`: gives the node a new key. The request is
/// signed with the current key (the registry's only proof of ownership); the new identity is
/// written next to the old one first and replaces it once the registry accepted it.
pub async fn rotate_key(ctx: &Ctx, args: &Args) -> Result<Success, CliError> {
    args.expect_positional(1, 2)?;
    let node = crate::pilotctl::target::node_id("rotate-key", args.arg(0).unwrap_or_default())?;
    if args.arg(1).is_some() {
        ctx.note("note: the owner is not proof of ownership; signing with the node's current key");
    }
    let path = identity_path(ctx, args)?;
    if !path.exists() {
        return Err(
            CliError::new(Code::NotFound, format!("no identity at {}", path.display()))
                .hint("give the node's identity file with --identity path"),
        );
    }
    let mut rng = pilot::net::os_seeded_rng()
        .map_err(|e| CliError::new(Code::Internal, format!("no randomness: {e}")))?;
    let current =
        Identity::load_or_create(&path, &mut rng).map_err(|e| identity_error(&path, e))?;
    let mut staged = path.clone().into_os_string();
    staged.push(".new");
    let staged = PathBuf::from(staged);
    let fresh = Identity::generate(&mut rng);
    write_private(&staged, fresh.to_json().as_bytes())?;
    let new_key = to_base64(&fresh.public_key());
    let request = json!({
        "type": "rotate_key",
        "node_id": node,
        "new_public_key": new_key,
        "signature": to_base64(&current.sign(format!("rotate:{node}").as_bytes())),
    });
    let reply = match ask_registry(ctx, request).await {
        Ok(reply) => reply,
        Err(e) => {
            let _ = std::fs::remove_file(&staged);
            return Err(e);
        }
    };
    std::fs::rename(&staged, &path).map_err(|e| {
        CliError::new(
            Code::Internal,
            format!(
                "the registry has the new key, but {} could not replace {}: {e}",
                staged.display(),
                path.display()
            ),
        )
        .hint(format!(
            "move it by hand: mv {} {}",
            staged.display(),
            path.display()
        ))
    })?;
    let human = format!(
        "Node {node} has a new key ({new_key}), saved in {}.\nRestart the daemon so it uses it: pilotctl daemon stop; pilotctl daemon start",
        path.display()
    );
    Ok(Success::new(Value::Object(reply), human))
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        })
        .map_err(|e| {
            CliError::new(
                Code::Internal,
                format!("cannot write {}: {e}", path.display()),
            )
        })
}
