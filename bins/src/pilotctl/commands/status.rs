//! `info`, `peers`, `connections`: views of the daemon's Info reply.

use crate::pilotctl::args::Args;
use crate::pilotctl::directory::{tags_of, tags_text};
use crate::pilotctl::output::{table, CliError, Success};
use crate::pilotctl::Ctx;
use pilot::driver::{ConnInfo, Info, PeerInfo};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Rows shown in human tables (the reference's limit).
const ROW_LIMIT: usize = 50;

async fn fetch(ctx: &Ctx) -> Result<(Value, Info), CliError> {
    let raw = ctx.driver().await?.info_json().await?;
    // Typed view for the human rendering; the JSON output stays verbatim.
    let info: Info = serde_json::from_value(raw.clone()).unwrap_or_default();
    Ok((raw, info))
}

/// The registry to ask for tags: the one the daemon is on (it may have failed over), else the
/// one the settings name (a Go daemon's Info does not say).
fn registry_of(ctx: &Ctx, info: &Info) -> String {
    if info.registry.is_empty() {
        ctx.registry()
    } else {
        info.registry.clone()
    }
}

/// Adds `tags` to each peer of the raw Info `peer_list` (`[]` where the registry had none or
/// did not answer).
fn tag_peer_list(raw: &mut Value, tags: &BTreeMap<u32, Vec<String>>) {
    let Some(list) = raw["peer_list"].as_array_mut() else {
        return;
    };
    for peer in list {
        let node = peer["node_id"].as_u64().unwrap_or_default() as u32;
        peer["tags"] = json!(tags.get(&node).cloned().unwrap_or_default());
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn peer_rows(peers: &[PeerInfo], tags: &BTreeMap<u32, Vec<String>>) -> Vec<Vec<String>> {
    peers
        .iter()
        .map(|p| {
            vec![
                p.node_id.to_string(),
                p.endpoint.clone(),
                yes_no(p.encrypted).into(),
                yes_no(p.authenticated).into(),
                tags_text(tags.get(&p.node_id).map_or(&[], Vec::as_slice)),
            ]
        })
        .collect()
}

const PEER_HEADER: &[&str] = &["NODE ID", "ENDPOINT", "ENCRYPTED", "AUTHENTICATED", "TAGS"];

fn conn_rows(conns: &[ConnInfo]) -> Vec<Vec<String>> {
    conns
        .iter()
        .map(|c| {
            vec![
                c.id.to_string(),
                c.local_port.to_string(),
                format!("{}:{}", c.remote_addr, c.remote_port),
                c.state.clone(),
                format!("{:.0}ms", c.srtt_ms),
                c.cong_win.to_string(),
                c.bytes_sent.to_string(),
                c.bytes_recv.to_string(),
                c.retransmits.to_string(),
            ]
        })
        .collect()
}

const CONN_HEADER: &[&str] = &[
    "ID", "LOCAL", "REMOTE", "STATE", "SRTT", "CWND", "SENT", "RECV", "RETX",
];

fn format_uptime(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{}s", s / 60, s % 60),
        _ => format!("{}h{}m", s / 3600, s % 3600 / 60),
    }
}

/// `info`: the daemon's status.
pub async fn info(ctx: &Ctx, args: &Args) -> Result<Success, CliError> {
    args.expect_positional(0, 0)?;
    let (mut raw, i) = fetch(ctx).await?;
    let nodes: Vec<u32> = std::iter::once(i.node_id)
        .chain(i.peer_list.iter().map(|p| p.node_id))
        .collect();
    let tags = tags_of(&registry_of(ctx, &i), &nodes).await;
    let own_tags = tags.get(&i.node_id).cloned().unwrap_or_default();
    tag_peer_list(&mut raw, &tags);
    let hostname = if i.hostname.is_empty() {
        "(none)"
    } else {
        &i.hostname
    };
    let mut text = format!(
        "Address:      {}\nNode ID:      {}\nHostname:     {hostname}\nUptime:       {}\n\
         Encryption:   {}\nIdentity:     {}\nPublic key:   {}\n",
        i.address,
        i.node_id,
        format_uptime(i.uptime_secs),
        if i.encrypt { "on" } else { "OFF" },
        if i.identity {
            "persistent"
        } else {
            "ephemeral (no identity file)"
        },
        i.public_key,
    );
    text.push_str(&format!("Tags:         {}\n", tags_text(&own_tags)));
    raw["tags"] = json!(own_tags);
    if !i.owner.is_empty() {
        text.push_str(&format!("Owner:        {}\n", i.owner));
    }
    text.push_str(&format!(
        "Ports:        {}\nPeers:        {} ({} encrypted, {} authenticated)\nConnections:  {}\n\
         Traffic:      {} bytes / {} packets sent, {} bytes / {} packets received\n",
        i.ports,
        i.peers,
        i.encrypted_peers,
        i.authenticated_peers,
        i.connections,
        i.bytes_sent,
        i.pkts_sent,
        i.bytes_recv,
        i.pkts_recv
    ));
    if !i.peer_list.is_empty() {
        text.push_str("\nPeers:\n");
        text.push_str(&table(
            PEER_HEADER,
            &peer_rows(&i.peer_list, &tags),
            ROW_LIMIT,
        ));
    }
    if !i.conn_list.is_empty() {
        text.push_str("\nConnections:\n");
        text.push_str(&table(CONN_HEADER, &conn_rows(&i.conn_list), ROW_LIMIT));
    }
    Ok(Success::new(raw, text))
}

/// `peers [--search q]`: tunnel peers.
pub async fn peers(ctx: &Ctx, args: &Args) -> Result<Success, CliError> {
    args.expect_positional(0, 0)?;
    let (mut raw, info) = fetch(ctx).await?;
    let nodes: Vec<u32> = info.peer_list.iter().map(|p| p.node_id).collect();
    let tags = tags_of(&registry_of(ctx, &info), &nodes).await;
    tag_peer_list(&mut raw, &tags);
    let search = args.string("search").unwrap_or("").to_lowercase();
    let raw_list = raw["peer_list"].as_array().cloned().unwrap_or_default();
    let keep = |p: &PeerInfo| {
        search.is_empty()
            || p.node_id.to_string().contains(&search)
            || p.endpoint.to_lowercase().contains(&search)
            || tags
                .get(&p.node_id)
                .is_some_and(|t| t.iter().any(|t| t.contains(&search)))
    };
    let (mut list, mut typed) = (Vec::new(), Vec::new());
    for (raw_peer, peer) in raw_list.into_iter().zip(info.peer_list) {
        if keep(&peer) {
            list.push(raw_peer);
            typed.push(peer);
        }
    }
    let human = if typed.is_empty() {
        "No peers.".to_string()
    } else {
        table(PEER_HEADER, &peer_rows(&typed, &tags), ROW_LIMIT)
    };
    let total = list.len();
    Ok(Success::new(json!({"peers": list, "total": total}), human))
}

/// `connections`: open connections.
pub async fn connections(ctx: &Ctx, args: &Args) -> Result<Success, CliError> {
    args.expect_positional(0, 0)?;
    let (raw, info) = fetch(ctx).await?;
    let list = raw["conn_list"].as_array().cloned().unwrap_or_default();
    let human = if info.conn_list.is_empty() {
        "No connections.".to_string()
    } else {
        table(CONN_HEADER, &conn_rows(&info.conn_list), ROW_LIMIT)
    };
    let total = list.len();
    Ok(Success::new(
        json!({"connections": list, "total": total}),
        human,
    ))
}
