//! `-no-echo`, `-no-dataexchange`, `-no-eventstream` on the real binary: the port is left
//! unbound, so a trusted peer's connection is refused, while the same peer reaches the
//! services of a daemon that keeps them.

mod process_support;
mod rendezvous_support;

use process_support::{ctl, ctl_fails, trusted_pair_with};

#[test]
fn disabled_services_refuse_connections() {
    let servers = rendezvous_support::start(None);
    let dir = tempfile::tempdir().unwrap();
    let switches = ["-no-echo", "-no-dataexchange", "-no-eventstream"];
    let (a, b, a_id, b_id) =
        trusted_pair_with(dir.path(), servers.registry, servers.beacon, &switches);

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
