//! pilotctl's node and probe commands on real processes: lookup, tags (and where they show),
//! hostnames, deregister, traceroute, listen, and broadcast to trusted peers with one of them
//! offline.

mod process_support;
mod rendezvous_support;

use process_support::*;

fn address(node: &Node) -> String {
    ctl(node, &["info"])["address"]
        .as_str()
        .unwrap()
        .to_string()
}

fn node_id(node: &Node) -> String {
    ctl(node, &["info"])["node_id"]
        .as_u64()
        .unwrap()
        .to_string()
}

#[test]
fn tags_hostnames_traceroute_broadcast_deregister() {
    let servers = rendezvous_support::start(None);
    let dir = tempfile::tempdir().unwrap();
    let (registry, beacon) = (servers.registry, servers.beacon);
    let mut a = daemon(dir.path(), "a", registry, beacon);
    let mut b = daemon(dir.path(), "b", registry, beacon);
    let mut c = daemon(dir.path(), "c", registry, beacon);
    let (a_id, b_id, c_id) = (node_id(&a), node_id(&b), node_id(&c));
    make_trust(&mut a, &mut b, &a_id, &b_id);
    make_trust(&mut a, &mut c, &a_id, &c_id);

    let lookup = |id: &str| {
        let out = pilotctl(&a)
            .env("PILOT_REGISTRY", registry.to_string())
            .args(["--json", "lookup", id])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(if out.status.success() {
            &out.stdout
        } else {
            &out.stderr
        })
        .unwrap();
        v
    };
    let record = lookup(&b_id);
    assert_eq!(record["data"]["node_id"].to_string(), b_id, "{record}");
    assert_eq!(lookup("999999")["code"], "not_found");

    let tags = ctl(&a, &["set-tags", "gpu", "eu-west", "batch"]);
    assert_eq!(tags["tags"], serde_json::json!(["gpu", "eu-west", "batch"]));
    let err = ctl_fails(&a, &["set-tags", "a", "b", "c", "d"]);
    assert!(err.contains("at most 3"), "{err}");
    assert_eq!(ctl(&a, &["clear-tags"])["tags"], serde_json::json!([]));

    let config = || std::fs::read_to_string(a.home.join(".pilot/config.json")).unwrap_or_default();
    ctl(&a, &["set-hostname", "alpha-node"]);
    assert!(config().contains("alpha-node"));
    assert_eq!(ctl(&a, &["clear-hostname"])["hostname"], "");
    assert!(!config().contains("alpha-node"), "{}", config());

    let trace = ctl(&a, &["traceroute", &b_id]);
    let samples = trace["rtt_samples"].as_array().unwrap();
    assert_eq!(samples.len(), 3, "{trace}");
    assert!(samples.iter().all(|s| s["bytes"] == 7), "{trace}");
    assert!(trace["setup_ms"].as_f64().unwrap() > 0.0);
    let err = ctl_fails(&a, &["traceroute", "some-hostname"]);
    assert!(err.contains("invalid_argument"), "{err}");

    // Tags show wherever nodes are listed: `info`, a peer's row in `peers`, and `find`.
    ctl(&b, &["set-tags", "edge"]);
    ctl(&b, &["set-hostname", "bravo-node"]);
    assert_eq!(ctl(&b, &["info"])["tags"], serde_json::json!(["edge"]));
    let found = ctl(&a, &["find", "bravo-node"]);
    assert_eq!(found["tags"], serde_json::json!(["edge"]), "{found}");
    let peers = ctl(&a, &["peers", "--search", "edge"]);
    assert_eq!(peers["total"], 1, "{peers}");
    assert_eq!(peers["peers"][0]["node_id"].to_string(), b_id, "{peers}");
    assert_eq!(peers["peers"][0]["tags"], serde_json::json!(["edge"]));

    // listen: unbounded, one line per datagram as it arrives.
    let mut listen = pilotctl(&b);
    listen.args(["listen", "5300"]);
    let mut listener = Proc::spawn(listen);
    listener.wait_for(&["listening for datagrams on port 5300"]);
    // Datagrams are best effort (a loaded machine may drop one), so a sender repeats them,
    // numbered, until the listener has printed two.
    let b_addr: pilot::wire::Addr = ctl(&b, &["info"])["address"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let socket = a.socket.clone();
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let sender = std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let driver = pilot::driver::Driver::connect(&socket).await.unwrap();
            for n in 0.. {
                let text = format!("datagram {n}");
                driver.send_to(b_addr, 5300, text.as_bytes()).await.unwrap();
                if stopped
                    .recv_timeout(std::time::Duration::from_millis(100))
                    .is_ok()
                {
                    return;
                }
            }
        })
    });
    let first = listener.wait_for(&["datagram "]);
    let second = listener.wait_for(&["datagram "]);
    assert_ne!(first, second);
    assert!(first.contains(&format!("[{}:", address(&a))), "{first}");
    stop.send(()).unwrap();
    sender.join().unwrap();
    drop(listener);
    let quiet = ctl(&b, &["listen", "5301", "--count", "1", "--timeout", "1s"]);
    assert_eq!(quiet, serde_json::json!({"messages": [], "timeout": true}));

    // C goes away: the broadcast still reaches B and reports C.
    drop(c);
    let sent = ctl(&a, &["broadcast", "0", "to everyone", "--timeout", "5s"]);
    assert_eq!(sent["delivered"], 1, "{sent}");
    assert_eq!(sent["failed"], 1, "{sent}");
    let peers = sent["peers"].as_array().unwrap();
    let status = |id: &str| {
        peers
            .iter()
            .find(|p| p["node_id"].as_u64() == id.parse().ok())
            .map(|p| p["status"].clone())
    };
    assert_eq!(status(&b_id).unwrap(), "delivered");
    assert_eq!(status(&c_id).unwrap(), "failed");
    let inbox = ctl(&b, &["inbox"]);
    assert!(inbox.to_string().contains("to everyone"), "{inbox}");
    let err = ctl_fails(&a, &["broadcast", "7", "nobody there"]);
    assert!(err.contains("no trusted peer on network 7"), "{err}");
    let err = ctl_fails(&a, &["broadcast", "x", "y"]);
    assert!(err.contains("network ID"), "{err}");

    assert_eq!(ctl(&a, &["deregister"])["type"], "deregister_ok");
}

#[test]
fn a_daemon_started_with_its_primary_down_runs_on_the_standby() {
    let servers = rendezvous_support::start(None);
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens here: the primary refuses every connection.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let standby = format!("-standby-registry={}", servers.registry);
    let a = daemon_with(dir.path(), "a", dead, servers.beacon, &[&standby]);
    let status = ctl(&a, &["daemon", "status"]);
    assert_eq!(status["registry"], servers.registry.to_string());
    assert_eq!(status["registry_standby"], true);
    let human = pilotctl(&a).args(["daemon", "status"]).output().unwrap();
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.contains("(standby"), "{text}");
    assert!(!node_id(&a).is_empty());
}
