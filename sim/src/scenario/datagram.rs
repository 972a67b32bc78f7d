//! Datagrams in scenarios: a daemon listens on some ports and records every datagram it is
//! handed; another sends numbered datagrams to those ports. Each datagram says, in its own
//! bytes, which send it belongs to, its number and the port it was sent to, and the rest of its
//! bytes follow from those, so the receiver's record alone shows a corrupted datagram or one
//! handed to the wrong port. Datagrams may be lost; that is not judged unless `at_least` asks.

use super::agent::Reports;
use super::daemon::peer_id;
use crate::net::SimNet;
use crate::trace;
use crate::world::lock;
use pilot::daemon::{ClientEvent, ClientOptions, DaemonHandle};
use pilot::wire::Addr;
use std::time::Duration;

/// The gap between two datagrams of one send (they would otherwise all leave at one instant).
const PACE: Duration = Duration::from_millis(20);

/// One send of datagrams, as the script asks for it.
#[derive(Clone, Debug)]
pub(crate) struct DatagramPlan {
    pub tag: String,
    pub from: String,
    pub to: String,
    /// Datagram `i` goes to `ports[i % ports.len()]`.
    pub ports: Vec<u16>,
    pub count: u32,
    pub size: usize,
}

/// One datagram as the receiving daemon handed it over.
#[derive(Clone, Debug)]
pub struct DatagramRecord {
    /// The receiving daemon host.
    pub host: String,
    /// The port the daemon delivered it on.
    pub port: u16,
    /// The sender's node.
    pub from_node: u32,
    /// The bytes.
    pub data: Vec<u8>,
}

/// A datagram's bytes: a header naming the send, the number and the port, then a pattern.
pub(crate) fn payload(tag: &str, seq: u32, port: u16, size: usize) -> Vec<u8> {
    let mut bytes = header(tag, seq, port).into_bytes();
    let start = bytes.len();
    bytes.extend((start..size.max(start)).map(|i| pattern(seq, i)));
    bytes
}

fn header(tag: &str, seq: u32, port: u16) -> String {
    format!("dg {tag} {seq} {port};")
}

fn pattern(seq: u32, i: usize) -> u8 {
    ((seq as usize * 31 + i * 7) % 251) as u8
}

/// What a received datagram claims to be: its send's tag, number and intended port, if its
/// header parses and the rest of its bytes are the pattern that header implies.
pub(crate) fn parse(data: &[u8]) -> Option<(String, u32, u16)> {
    let end = data.iter().position(|&b| b == b';')?;
    let head = std::str::from_utf8(&data[..end]).ok()?;
    let mut words = head.split(' ');
    let (Some("dg"), Some(tag), Some(seq), Some(port), None) = (
        words.next(),
        words.next(),
        words.next(),
        words.next(),
        words.next(),
    ) else {
        return None;
    };
    let (seq, port) = (seq.parse().ok()?, port.parse().ok()?);
    let intact = data[end + 1..]
        .iter()
        .enumerate()
        .all(|(i, &b)| b == pattern(seq, end + 1 + i));
    intact.then(|| (tag.to_string(), seq, port))
}

/// Listens on `ports` and records what arrives until the daemon stops.
pub(crate) async fn listen(
    net: SimNet,
    handle: DaemonHandle,
    reports: std::sync::Arc<Reports>,
    ports: Vec<u16>,
    action: usize,
) {
    let name = net.world().node(net.node()).name.clone();
    let mut session = match handle.session(ClientOptions::default()).await {
        Ok(s) => s,
        Err(e) => return failed(&reports, action, &name, format!("no session: {e}")),
    };
    for &port in &ports {
        if let Err(e) = session.listen(port).await {
            let why = format!("cannot listen on {port}: {e}");
            return failed(&reports, action, &name, why);
        }
    }
    let text = format!("daemon listening for datagrams on {ports:?}");
    net.world().trace().note_at(trace::now(), &name, text);
    while let Some(event) = session.next_event().await {
        if let ClientEvent::Datagram {
            src,
            dst_port,
            data,
        } = event
        {
            lock(&reports.datagrams).push(DatagramRecord {
                host: name.clone(),
                port: dst_port,
                from_node: src.addr.node,
                data,
            });
        }
    }
}

/// Sends `plan`'s datagrams, [`PACE`] apart.
pub(crate) async fn send(
    net: SimNet,
    handle: DaemonHandle,
    reports: std::sync::Arc<Reports>,
    plan: DatagramPlan,
    action: usize,
) {
    let run = async {
        let node = peer_id(&reports, &plan.to)?;
        let session = handle.session(ClientOptions::default()).await?;
        for seq in 0..plan.count {
            let port = plan.ports[seq as usize % plan.ports.len()];
            let data = payload(&plan.tag, seq, port, plan.size);
            // A datagram that cannot leave (no route yet) is one lost datagram.
            let _ = session.send_to(Addr::backbone(node), port, data).await;
            tokio::time::sleep(PACE).await;
        }
        Ok::<(), String>(())
    };
    let name = net.world().node(net.node()).name.clone();
    let text = match run.await {
        Ok(()) => format!("daemon {} sent {} datagrams", plan.tag, plan.count),
        Err(e) => {
            let text = format!("daemon {} error: {e}", plan.tag);
            failed(&reports, action, &name, e);
            text
        }
    };
    net.world().trace().note_at(trace::now(), &name, text);
}

/// Records an operation's error as the runner records the others (tolerated when the scenario
/// says so).
fn failed(reports: &Reports, action: usize, name: &str, why: String) {
    lock(&reports.errors).push(format!("action #{action} on {name}: {why}"));
}

/// Judges `datagrams-intact`: every datagram `to` received on a listening port is one that was
/// sent, intact, on the port it was sent to, from `from`; and at least `at_least` of `tag`'s
/// arrived. Returns (passed, detail).
pub(crate) fn judge(
    records: &[DatagramRecord],
    plan: Option<&DatagramPlan>,
    from_node: Option<u32>,
    at_least: u32,
) -> (bool, String) {
    let Some(plan) = plan else {
        return (false, "no send-datagrams action has this tag".to_string());
    };
    let mut seen = std::collections::BTreeSet::new();
    let mut wrong = Vec::new();
    for r in records.iter().filter(|r| r.host == plan.to) {
        match parse(&r.data) {
            None => wrong.push(format!(
                "{} bytes on port {} are corrupted",
                r.data.len(),
                r.port
            )),
            Some((tag, _, _)) if tag != plan.tag => {}
            Some((_, seq, port)) if port != r.port || seq >= plan.count => wrong.push(format!(
                "datagram {seq} sent to port {port} was handed over on port {}",
                r.port
            )),
            Some((_, seq, _)) if from_node.is_some_and(|n| n != r.from_node) => {
                wrong.push(format!("datagram {seq} came from node {}", r.from_node))
            }
            Some((_, seq, _)) => {
                seen.insert(seq);
            }
        }
    }
    let enough = seen.len() as u32 >= at_least;
    let mut detail = format!("{} of {} arrived", seen.len(), plan.count);
    if !wrong.is_empty() {
        detail.push_str(&format!("; {}", wrong.join("; ")));
    }
    (wrong.is_empty() && enough, detail)
}

/// How many datagrams of `plan` its receiver was handed (intact or not).
pub(crate) fn received(records: &[DatagramRecord], plan: Option<&DatagramPlan>) -> usize {
    let Some(plan) = plan else { return 0 };
    records
        .iter()
        .filter(|r| r.host == plan.to)
        .filter(|r| parse(&r.data).is_some_and(|(tag, _, _)| tag == plan.tag))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_parses_back_and_any_changed_byte_does_not() {
        let p = payload("g1", 7, 5001, 300);
        assert_eq!(p.len(), 300);
        assert_eq!(parse(&p), Some(("g1".to_string(), 7, 5001)));
        for i in [0, 3, 12, 299] {
            let mut bad = p.clone();
            bad[i] ^= 1;
            assert_ne!(parse(&bad), Some(("g1".to_string(), 7, 5001)), "byte {i}");
        }
        assert_eq!(parse(b"garbage"), None);
    }

    #[test]
    fn the_judge_flags_wrong_ports_and_corruption_but_not_loss() {
        let plan = DatagramPlan {
            tag: "g1".into(),
            from: "a".into(),
            to: "b".into(),
            ports: vec![5000, 5001],
            count: 4,
            size: 64,
        };
        let rec = |port, data| DatagramRecord {
            host: "b".into(),
            port,
            from_node: 9,
            data,
        };
        let good = [
            rec(5000, payload("g1", 0, 5000, 64)),
            rec(5001, payload("g1", 1, 5001, 64)),
        ];
        assert!(judge(&good, Some(&plan), Some(9), 1).0);
        assert!(!judge(&good, Some(&plan), Some(9), 3).0, "too few arrived");
        assert!(
            !judge(&good, Some(&plan), Some(8), 0).0,
            "from another node"
        );
        let misdelivered = [rec(5000, payload("g1", 1, 5001, 64))];
        assert!(!judge(&misdelivered, Some(&plan), Some(9), 0).0);
        let mut bytes = payload("g1", 2, 5000, 64);
        bytes[40] ^= 0x80;
        assert!(!judge(&[rec(5000, bytes)], Some(&plan), Some(9), 0).0);
    }
}
