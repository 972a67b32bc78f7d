//! Targets (`spec/services.md` §9 rule 6): an address, a decimal node ID on the backbone, or a
//! hostname the registry resolves.

use super::output::{CliError, Code};
use super::Ctx;
use pilot::driver::Driver;
use pilot::wire::Addr;

/// Parses `text` as an address or a node ID, without asking the daemon.
pub fn parse_literal(text: &str) -> Option<Addr> {
    if let Ok(addr) = text.parse::<Addr>() {
        return Some(addr);
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<u32>().ok().map(Addr::backbone);
    }
    None
}

/// Whether `text` could be a hostname (so it is worth asking the registry).
fn looks_like_hostname(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 253
        && !text.contains(':')
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
}

/// Resolves a target to an address, asking the daemon for hostnames.
pub async fn resolve(ctx: &Ctx, driver: &Driver, text: &str) -> Result<Addr, CliError> {
    if let Some(addr) = parse_literal(text) {
        return Ok(addr);
    }
    if !looks_like_hostname(text) {
        return Err(
            CliError::new(Code::InvalidArgument, format!("invalid target {text:?}"))
                .hint("a target is an address (0:0000.0000.002A), a node ID (42) or a hostname"),
        );
    }
    match driver.resolve_hostname(text).await {
        Ok(found) => {
            let addr = found
                .address
                .parse::<Addr>()
                .unwrap_or(Addr::backbone(found.node_id));
            ctx.note(&format!("resolved \"{text}\" → {addr}"));
            Ok(addr)
        }
        Err(pilot::driver::DriverError::Daemon { message, .. }) => Err(CliError::new(
            Code::NotFound,
            format!("cannot resolve {text:?}: {message}"),
        )
        .hint("check the hostname with: pilotctl find <hostname>")),
        Err(e) => Err(e.into()),
    }
}

/// Parses a node ID argument (`<node_id>`); an address gives its node.
pub fn node_id(command: &str, text: &str) -> Result<u32, CliError> {
    parse_literal(text)
        .map(|a| a.node)
        .ok_or_else(|| CliError::usage(command, format!("invalid node ID {text:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals() {
        assert_eq!(parse_literal("42"), Some(Addr::backbone(42)));
        assert_eq!(parse_literal("1:0001.0000.0005"), Some(Addr::new(1, 5)));
        assert_eq!(parse_literal("alice"), None);
        assert_eq!(parse_literal("99999999999"), None);
        assert!(looks_like_hostname("alice-2.example"));
        assert!(!looks_like_hostname("1:0001.zz"));
        assert!(node_id("approve", "x y").is_err());
    }
}
