//! `pilot-rendezvous` as a real process: the library's registry client registers, resolves and
//! relays a handshake over real TCP; then the process is killed with SIGKILL and restarted on
//! the same store, and nothing it acknowledged is lost.

use pilot::crypto::{to_base64, Identity};
use pilot::net::TokioNet;
use pilot::registry::client::{Client, Signer};
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;

mod rendezvous_support;
use rendezvous_support::start;

fn client(addr: SocketAddr, identity: &Identity) -> Client<TokioNet> {
    let identity = identity.clone();
    let signer: Signer =
        Arc::new(move |challenge: &str| to_base64(&identity.sign(challenge.as_bytes())));
    Client::new(TokioNet, addr).with_signer(signer)
}

#[tokio::test]
async fn survives_sigkill_with_nothing_acknowledged_lost() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let alice_id = Identity::from_seed(&[1; 32]);
    let bob_id = Identity::from_seed(&[2; 32]);
    let alice_key = to_base64(&alice_id.public_key());
    let bob_key = to_base64(&bob_id.public_key());

    let mut server = start(Some(&store));
    let mut alice = client(server.registry, &alice_id);
    let mut bob = client(server.registry, &bob_id);
    let a = alice
        .register(&alice_key, ":4000", "", "alice")
        .await
        .unwrap();
    let b = bob.register(&bob_key, ":4001", "", "").await.unwrap();
    assert_eq!(a.hostname.as_deref(), Some("alice"));

    // Alice is private: Bob may not resolve her until both sides agree to trust.
    assert!(bob.resolve(b.node_id, a.node_id).await.is_err());
    bob.request_handshake(b.node_id, a.node_id, "let's talk")
        .await
        .unwrap();
    let polled = alice.poll_handshakes(a.node_id).await.unwrap();
    assert_eq!(
        polled.requests.len(),
        1,
        "the relayed request reached Alice"
    );
    alice
        .respond_handshake(a.node_id, b.node_id, true)
        .await
        .unwrap();
    assert_eq!(
        bob.resolve(b.node_id, a.node_id).await.unwrap(),
        "127.0.0.1:4000",
        "after mutual agreement Bob resolves Alice's endpoint"
    );

    // SIGKILL: no chance to flush anything that was not already durable.
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let mut server = start(Some(&store));
    let mut alice = client(server.registry, &alice_id);
    let mut bob = client(server.registry, &bob_id);

    let lookup = alice.lookup(a.node_id).await.unwrap();
    assert_eq!(
        lookup.get("hostname").and_then(|v| v.as_str()),
        Some("alice")
    );
    let again = alice.register(&alice_key, ":4000", "", "").await.unwrap();
    assert_eq!(again.node_id, a.node_id, "the same key keeps its node ID");
    assert_eq!(
        bob.resolve(b.node_id, a.node_id).await.unwrap(),
        "127.0.0.1:4000",
        "the trust pair survived the crash"
    );
    let polled = bob.poll_handshakes(b.node_id).await.unwrap();
    assert_eq!(
        polled.responses.len(),
        1,
        "Alice's acceptance is still queued for Bob"
    );

    // SIGTERM is a graceful stop: sessions closed, state flushed, exit status 0.
    let pid = server.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    assert!(server.child.wait().unwrap().success());
}

#[test]
fn bad_flags_and_unusable_stores_are_clear_errors() {
    let out = Command::new(env!("CARGO_BIN_EXE_pilot-rendezvous"))
        .arg("--no-such-flag")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-such-flag"));

    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    std::fs::create_dir(&store).unwrap();
    std::fs::write(store.join("registry.json"), b"{ torn").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pilot-rendezvous"))
        .args([
            "--registry-addr",
            "127.0.0.1:0",
            "--beacon-addr",
            "",
            "--store",
        ])
        .arg(&store)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("error:"), "{stderr}");
    assert!(stderr.contains("hint:"), "{stderr}");
    assert_eq!(
        std::fs::read(store.join("registry.json")).unwrap(),
        b"{ torn",
        "left untouched"
    );
}
