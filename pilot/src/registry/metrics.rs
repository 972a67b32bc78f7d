//! Metrics and status documents of `spec/registry.md` §12: Prometheus text, `/api/stats` JSON,
//! badges. Pure functions of the registry state plus the request-duration histograms the
//! server keeps; labels come only from the known request kinds.

use super::request::Kind;
use super::state::Registry;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// Upper bounds of the duration buckets, in seconds (the reference's 13).
pub const BUCKETS: [f64; 13] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// A node counts as online this long after its last refresh (3 min).
pub const ONLINE_MS: u64 = 180_000;

/// Request durations per kind.
#[derive(Clone, Debug, Default)]
pub struct Durations {
    per_kind: BTreeMap<Kind, Histogram>,
}

#[derive(Clone, Debug, Default)]
struct Histogram {
    counts: [u64; 13],
    count: u64,
    sum: f64,
}

impl Durations {
    /// Records one request of `kind` that took `secs`.
    pub fn observe(&mut self, kind: Kind, secs: f64) {
        let h = self.per_kind.entry(kind).or_default();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// Live nodes seen within [`ONLINE_MS`] of `now_ms`.
fn online(reg: &Registry, now_ms: u64) -> usize {
    reg.data()
        .nodes
        .values()
        .filter(|n| !n.dormant && now_ms.saturating_sub(n.last_seen_ms) <= ONLINE_MS)
        .count()
}

/// The Prometheus text exposition (format 0.0.4).
pub fn prometheus(reg: &Registry, durations: &Durations, now_ms: u64) -> String {
    let mut out = String::new();
    let c = reg.counters();
    for (name, help, map) in [
        (
            "pilot_requests_total",
            "Requests handled, by type.",
            &c.requests,
        ),
        ("pilot_errors_total", "Error replies, by type.", &c.errors),
    ] {
        family(&mut out, name, "counter", help);
        for (kind, n) in map {
            let _ = writeln!(out, "{name}{{type=\"{}\"}} {n}", kind.as_str());
        }
    }
    let name = "pilot_request_duration_seconds";
    family(
        &mut out,
        name,
        "histogram",
        "Request handling time, by type.",
    );
    for (kind, h) in &durations.per_kind {
        let t = kind.as_str();
        for (i, bound) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{type=\"{t}\",le=\"{bound}\"}} {}",
                h.counts[i]
            );
        }
        let _ = writeln!(out, "{name}_bucket{{type=\"{t}\",le=\"+Inf\"}} {}", h.count);
        let _ = writeln!(out, "{name}_sum{{type=\"{t}\"}} {}", number(h.sum));
        let _ = writeln!(out, "{name}_count{{type=\"{t}\"}} {}", h.count);
    }
    let data = reg.data();
    let gauges = [
        (
            "pilot_nodes_online",
            "Nodes seen in the last 3 minutes.",
            online(reg, now_ms) as u64,
        ),
        (
            "pilot_nodes_total",
            "Registered nodes.",
            data.live_count() as u64,
        ),
        ("pilot_trust_links", "Trust pairs.", data.trust.len() as u64),
        (
            "pilot_task_executors",
            "Nodes that execute tasks.",
            data.nodes
                .values()
                .filter(|n| !n.dormant && n.task_exec)
                .count() as u64,
        ),
        (
            "pilot_uptime_seconds",
            "Seconds since the registry started.",
            now_ms.saturating_sub(reg.started_ms()) / 1000,
        ),
    ];
    for (name, help, v) in gauges {
        family(&mut out, name, "gauge", help);
        let _ = writeln!(out, "{name} {v}");
    }
    let counters = [
        (
            "pilot_registrations_total",
            "Successful registrations.",
            c.registrations,
        ),
        (
            "pilot_deregistrations_total",
            "Deregistrations.",
            c.deregistrations,
        ),
        (
            "pilot_trust_reports_total",
            "Trust reports.",
            c.trust_reports,
        ),
        (
            "pilot_trust_revocations_total",
            "Trust revocations.",
            c.trust_revocations,
        ),
        (
            "pilot_handshake_requests_total",
            "Relayed handshake requests.",
            c.handshake_requests,
        ),
    ];
    for (name, help, v) in counters {
        family(&mut out, name, "counter", help);
        let _ = writeln!(out, "{name} {v}");
    }
    out
}

/// The `/api/stats` document. No IPs, keys or hostnames; unlike the reference, no trust-graph
/// `edges` either: who trusts whom is not public.
pub fn stats(reg: &Registry, now_ms: u64) -> Value {
    let data = reg.data();
    let mut trust_links: BTreeMap<u32, u64> = BTreeMap::new();
    for (a, b) in &data.trust {
        *trust_links.entry(*a).or_default() += 1;
        if a != b {
            *trust_links.entry(*b).or_default() += 1;
        }
    }
    let mut tags = BTreeSet::new();
    let mut nodes = Vec::new();
    let mut online_members = 0;
    for id in data.sorted_ids() {
        let n = &data.nodes[&id];
        if n.dormant {
            continue;
        }
        let is_online = now_ms.saturating_sub(n.last_seen_ms) <= ONLINE_MS;
        online_members += usize::from(is_online);
        tags.extend(n.tags.iter().map(|t| t.to_string()));
        nodes.push(json!({
            "address": crate::wire::Addr::backbone(id).to_string(),
            "tags": n.tags,
            "online": is_online,
            "trust_links": trust_links.get(&id).copied().unwrap_or(0),
            "task_exec": n.task_exec,
            "polo_score": n.polo,
        }));
    }
    // Addresses have a fixed width, so sorting by ID is sorting by address text.
    let mut networks = vec![json!({"id": 0, "name": "backbone", "members": nodes.len(),
        "online_members": online_members})];
    for net in data.networks.values() {
        let on = net
            .members
            .iter()
            .filter(|m| {
                data.live(**m)
                    .is_some_and(|n| now_ms.saturating_sub(n.last_seen_ms) <= ONLINE_MS)
            })
            .count();
        networks.push(
            json!({"id": net.id, "name": net.name, "members": net.members.len(),
            "online_members": on}),
        );
    }
    let c = reg.counters();
    json!({
        "total_nodes": nodes.len(),
        "active_nodes": online_members,
        "total_trust_links": data.trust.len(),
        "total_requests": c.requests.values().sum::<u64>(),
        "unique_tags": tags.len(),
        "task_executors": data.nodes.values().filter(|n| !n.dormant && n.task_exec).count(),
        "uptime_secs": now_ms.saturating_sub(reg.started_ms()) / 1000,
        "networks": networks,
        "nodes": nodes,
        "edges": [],
    })
}

/// The value a badge shows: counts of 1000 and more as `1.2K`, `3.4M`, `1.0B`.
pub fn badge_count(n: u64) -> String {
    let scaled = |d: f64, s: &str| format!("{:.1}{s}", n as f64 / d);
    match n {
        0..=999 => n.to_string(),
        1_000..=999_999 => scaled(1e3, "K"),
        1_000_000..=999_999_999 => scaled(1e6, "M"),
        _ => scaled(1e9, "B"),
    }
}

/// A shields-style SVG badge; grey when the count is 0.
pub fn badge(label: &str, n: u64) -> String {
    let value = badge_count(n);
    let colour = if n == 0 { "#9f9f9f" } else { "#4c1" };
    let (lw, vw) = (6 * label.len() as u32 + 10, 7 * value.len() as u32 + 10);
    let w = lw + vw;
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"20\" role=\"img\" aria-label=\"{label}: {value}\">\
<rect width=\"{lw}\" height=\"20\" fill=\"#555\"/><rect x=\"{lw}\" width=\"{vw}\" height=\"20\" fill=\"{colour}\"/>\
<g fill=\"#fff\" text-anchor=\"middle\" font-family=\"Verdana,Geneva,sans-serif\" font-size=\"11\">\
<text x=\"{}\" y=\"14\">{label}</text><text x=\"{}\" y=\"14\">{value}</text></g></svg>",
        lw / 2,
        lw + vw / 2
    )
}

/// The values of the five badges, by path suffix.
pub fn badge_value(reg: &Registry, which: &str, now_ms: u64) -> Option<(&'static str, u64)> {
    let data = reg.data();
    Some(match which {
        "nodes" => ("nodes", online(reg, now_ms) as u64),
        "trust" => ("trust links", data.trust.len() as u64),
        "requests" => ("requests", reg.counters().requests.values().sum()),
        "tags" => (
            "tags",
            data.nodes
                .values()
                .filter(|n| !n.dormant)
                .flat_map(|n| n.tags.iter())
                .collect::<BTreeSet<_>>()
                .len() as u64,
        ),
        "task-executors" => (
            "task executors",
            data.nodes
                .values()
                .filter(|n| !n.dormant && n.task_exec)
                .count() as u64,
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn badge_counts() {
        assert_eq!(badge_count(999), "999");
        assert_eq!(badge_count(1_234), "1.2K");
        assert_eq!(badge_count(3_400_000), "3.4M");
        assert_eq!(badge_count(2_000_000_000), "2.0B");
        assert!(badge("nodes", 0).contains("#9f9f9f"));
    }

    #[test]
    fn histogram_is_cumulative() {
        let mut d = Durations::default();
        d.observe(Kind::Lookup, 0.0003);
        d.observe(Kind::Lookup, 2.0);
        let reg = Registry::new(Default::default(), 0);
        let text = prometheus(&reg, &d, 0);
        assert!(text
            .contains("pilot_request_duration_seconds_bucket{type=\"lookup\",le=\"0.00025\"} 0"));
        assert!(
            text.contains("pilot_request_duration_seconds_bucket{type=\"lookup\",le=\"0.0005\"} 1")
        );
        assert!(
            text.contains("pilot_request_duration_seconds_bucket{type=\"lookup\",le=\"+Inf\"} 2")
        );
        assert!(text.contains("pilot_request_duration_seconds_count{type=\"lookup\"} 2"));
        assert!(text.contains("# TYPE pilot_nodes_online gauge\npilot_nodes_online 0\n"));
    }
}
