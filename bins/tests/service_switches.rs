//! `-no-echo`, `-no-dataexchange`, `-no-eventstream` on the real binary: the port is left
//! unbound, so a trusted peer's connection is refused, while the same peer reaches the
//! services of a daemon that keeps them.

mod process_support;
mod rendezvous_support;

use process_support::*;

#[test]
fn disabled_services_refuse_connections() {
    let servers = rendezvous_support::start(None);
    let dir = tempfile::tempdir().unwrap();
    let mut a = daemon(dir.path(), "a", servers.registry, servers.beacon);
    let switches = ["-no-echo", "-no-dataexchange", "-no-eventstream"];
    let mut b = daemon_with(dir.path(), "b", servers.registry, servers.beacon, &switches);
    let a_id = ctl(&a, &["info"])["node_id"].as_u64().unwrap().to_string();
    let b_id = ctl(&b, &["info"])["node_id"].as_u64().unwrap().to_string();
    make_trust(&mut a, &mut b, &a_id, &b_id);

    for port in ["7", "1001", "1002"] {
        let err = ctl_fails(
            &a,
            &["connect", &b_id, port, "--message", "x", "--timeout", "10s"],
        );
        assert!(err.contains("refused"), "port {port}: {err}");
    }
    let err = ctl_fails(&a, &["send-message", &b_id, "--data", "x"]);
    assert!(err.contains("refused"), "{err}");

    // The other way round every service answers: the refusals above are the switches.
    let echoed = ctl(&b, &["connect", &a_id, "7", "--message", "still here"]);
    assert_eq!(echoed["response"], "still here");
    let sent = ctl(&b, &["send-message", &a_id, "--data", "x"]);
    assert!(
        sent["ack"].as_str().unwrap().starts_with("ACK TEXT"),
        "{sent}"
    );
}
