//! `init`, `config`: the settings file `$HOME/.pilot/config.json`; `lookup`: a node's
//! registry record, asked directly (no daemon needed).

use crate::pilotctl::args::Args;
use crate::pilotctl::config;
use crate::pilotctl::directory;
use crate::pilotctl::output::{CliError, Code, Success};
use crate::pilotctl::{Ctx, DEFAULT_BEACON, DEFAULT_REGISTRY};
use serde_json::{json, Map, Value};

/// Keys pilotctl and `daemon start` read; `config --set` takes only these.
const KEYS: &[&str] = &[
    "registry",
    "standby_registry",
    "beacon",
    "socket",
    "hostname",
    "webhook",
    "owner",
];

/// Checks one setting's value, so a typo is refused now rather than at the next start.
fn check(key: &str, value: &str) -> Result<(), CliError> {
    let bad = |why: String| CliError::new(Code::InvalidArgument, format!("{key}: {why}"));
    match key {
        "registry" | "standby_registry" | "beacon" if !is_host_port(value) => {
            Err(bad(format!("{value:?} is not host:port")).hint(format!(
                "for example: pilotctl config --set {key}=127.0.0.1:9000"
            )))
        }
        "webhook" => pilot::services::webhook::check_url(value).map_err(bad),
        _ if !KEYS.contains(&key) => Err(CliError::new(
            Code::InvalidArgument,
            format!("unknown setting {key:?}"),
        )
        .hint(format!("settings: {}", KEYS.join(", ")))),
        _ => Ok(()),
    }
}

/// `host:port` with a non-empty host and a numeric port.
fn is_host_port(value: &str) -> bool {
    value
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
}

/// `init [--registry a] [--beacon a] [--hostname h] [--socket p]`: writes the given settings
/// (and the defaults for registry and beacon when the file has none) into the config file.
pub async fn init(ctx: &Ctx, args: &Args) -> Result<Success, CliError> {
    args.expect_positional(0, 0)?;
    let dir = ctx.pilot_dir()?;
    let current = config::load(&dir);
    let chosen = |key: &str, default: Option<&str>| {
        args.string(key)
            .map(str::to_string)
            .or_else(|| current.get(key).and_then(Value::as_str).map(str::to_string))
            .or_else(|| default.map(str::to_string))
    };
    let mut settings = Map::new();
    for (key, default) in [
        ("registry", Some(DEFAULT_REGISTRY)),
        ("beacon", Some(DEFAULT_BEACON)),
        ("socket", None),
        ("hostname", None),
    ] {
        if let Some(value) = chosen(key, default) {
            check(key, &value)?;
            settings.insert(key.into(), json!(value));
        }
    }
    for (key, value) in &settings {
        config::update(&dir, key, value.as_str())?;
    }
    let path = dir.join("config.json");
    let socket = ctx.socket();
    let mut data = json!({"config_path": path.display().to_string(),
                          "socket": socket.display().to_string(),
                          "hostname": settings.get("hostname").cloned().unwrap_or(json!(""))});
    for key in ["registry", "beacon"] {
        data[key] = settings[key].clone();
    }
    let human = format!(
        "Wrote {}\n  registry: {}\n  beacon:   {}\nNext: pilotctl daemon start",
        path.display(),
        data["registry"].as_str().unwrap_or_default(),
        data["beacon"].as_str().unwrap_or_default()
    );
    Ok(Success::new(data, human))
}

/// `config [--set key=value]`.
pub async fn show_or_set(ctx: &Ctx, args: &Args) -> Result<Success, CliError> {
    args.expect_positional(0, 0)?;
    let dir = ctx.pilot_dir()?;
    if let Some(assignment) = args.string("set") {
        let (key, value) = assignment.split_once('=').ok_or_else(|| {
            CliError::usage(
                "config",
                format!("--set {assignment:?}: expected key=value"),
            )
        })?;
        check(key, value)?;
        config::update(&dir, key, Some(value).filter(|v| !v.is_empty()))?;
        let human = format!("{key} = {value:?}");
        return Ok(Success::new(json!({"key": key, "value": value}), human));
    }
    let mut data = Value::Object(config::load(&dir));
    data["config_path"] = json!(dir.join("config.json").display().to_string());
    data["pid_file"] = json!(dir.join("pilot.pid").display().to_string());
    data["log_file"] = json!(dir.join("pilot.log").display().to_string());
    if data.get("registry").is_none() {
        data["registry"] = json!(ctx.registry());
    }
    if data.get("socket").is_none() {
        data["socket"] = json!(ctx.socket().display().to_string());
    }
    Ok(Success::json(data))
}

/// `lookup <node_id>`: the registry's public record of a node.
pub async fn lookup(ctx: &Ctx, args: &Args) -> Result<Success, CliError> {
    args.expect_positional(1, 1)?;
    let node = crate::pilotctl::target::node_id("lookup", args.arg(0).unwrap_or_default())?;
    let mut request = Map::new();
    request.insert("type".into(), json!("lookup"));
    request.insert("node_id".into(), json!(node));
    let record = directory::ask(&ctx.registry(), &request, |message| {
        CliError::new(Code::NotFound, format!("node {node}: {message}"))
    })
    .await?;
    Ok(Success::json(Value::Object(record)))
}
