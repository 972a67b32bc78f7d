//! Requests made straight to the registry over its plaintext TCP protocol: the commands that
//! need no daemon (`lookup`, `register`, `rotate-key`), and the tags that `find`, `peers` and
//! `info` show beside what the daemon reports (a `lookup` reply carries them; the daemon's own
//! replies do not).

use crate::pilotctl::output::{CliError, Code};
use pilot::net::TokioNet;
use pilot::registry::client::{Client, ClientError};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// How long a direct registry request may take.
const REGISTRY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the tag lookups of a listing may take: tags are an extra, never worth a long wait.
const TAGS_TIMEOUT: Duration = Duration::from_secs(3);

/// The error of a registry that cannot be reached, with the settings that name it.
fn unreachable(registry: &str, why: impl std::fmt::Display) -> CliError {
    CliError::new(
        Code::ConnectionFailed,
        format!("registry {registry}: {why}"),
    )
    .hint("set the registry with PILOT_REGISTRY or: pilotctl config --set registry=host:port")
}

async fn resolve(registry: &str) -> Result<SocketAddr, CliError> {
    tokio::net::lookup_host(registry)
        .await
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| unreachable(registry, "cannot resolve the address"))
}

/// Sends one request to the registry and returns its reply; `refused` turns the registry's
/// error message into the command's error (a refused lookup is "not found", a refused
/// registration a failed connection).
pub async fn ask(
    registry: &str,
    request: &Map<String, Value>,
    refused: impl FnOnce(String) -> CliError,
) -> Result<Map<String, Value>, CliError> {
    let mut client = Client::new(TokioNet, resolve(registry).await?);
    match tokio::time::timeout(REGISTRY_TIMEOUT, client.request(request)).await {
        Err(_) => Err(unreachable(
            registry,
            format!("no answer within {REGISTRY_TIMEOUT:?}"),
        )),
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(ClientError::Registry(message))) => Err(refused(message)),
        Ok(Err(e)) => Err(unreachable(registry, e)),
    }
}

/// The tags in a `lookup` reply (absent when the node has none).
fn tags_in(record: &Map<String, Value>) -> Vec<String> {
    record
        .get("tags")
        .and_then(Value::as_array)
        .map(|tags| {
            tags.iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The tags of each node the registry could tell within [`TAGS_TIMEOUT`]; nodes it could not
/// (unknown, registry down, too slow) are left out, so callers show what they have.
pub async fn tags_of(registry: &str, nodes: &[u32]) -> BTreeMap<u32, Vec<String>> {
    let Ok(addr) = resolve(registry).await else {
        return BTreeMap::new();
    };
    let mut lookups = tokio::task::JoinSet::new();
    for &node in nodes {
        lookups.spawn(async move {
            let mut client = Client::new(TokioNet, addr);
            (node, client.lookup(node).await)
        });
    }
    let mut found = BTreeMap::new();
    let _ = tokio::time::timeout(TAGS_TIMEOUT, async {
        while let Some(done) = lookups.join_next().await {
            if let Ok((node, Ok(record))) = done {
                found.insert(node, tags_in(&record));
            }
        }
    })
    .await;
    found
}

/// Tags as a person reads them: `gpu, inference`, or `-` for none.
pub fn tags_text(tags: &[String]) -> String {
    if tags.is_empty() {
        "-".into()
    } else {
        tags.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tags_in_reads_the_array_and_skips_what_is_not_a_string() {
        let Value::Object(record) = json!({"node_id": 4, "tags": ["gpu", 7, "edge"]}) else {
            unreachable!()
        };
        assert_eq!(tags_in(&record), ["gpu", "edge"]);
        assert!(tags_in(&Map::new()).is_empty());
    }

    #[tokio::test]
    async fn tags_of_an_unreachable_registry_is_empty_not_an_error() {
        // A port nothing listens on: bind one, learn it, close it.
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let registry = free.local_addr().unwrap().to_string();
        drop(free);
        assert!(tags_of(&registry, &[1, 2]).await.is_empty());
        assert!(tags_of("not an address", &[1]).await.is_empty());
    }

    #[test]
    fn tags_text_marks_none() {
        assert_eq!(tags_text(&[]), "-");
        assert_eq!(tags_text(&["a".into(), "b".into()]), "a, b");
    }
}
