//! Persistence: no acknowledged change is lost at any crash point, torn tails are dropped, and
//! damaged stores are refused loudly and left untouched.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::{Signer, SigningKey};
use pilot::net::{MemStorage, Storage};
use pilot::registry::model::Change;
use pilot::registry::persist::snapshot::Snapshot;
use pilot::registry::persist::{PersistError, Store, LOG, SNAPSHOT};
use pilot::registry::ratelimit::{Rate, Rates};
use pilot::registry::{Config, Ctx, Data, Registry};
use serde_json::{json, Value};

const T0: u64 = 1_735_689_600_000;

fn sk(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}
fn pk(n: u8) -> String {
    STANDARD.encode(sk(n).verifying_key().to_bytes())
}
fn sig(n: u8, msg: &str) -> String {
    STANDARD.encode(sk(n).sign(msg.as_bytes()).to_bytes())
}

fn config() -> Config {
    Config {
        rates: Rates {
            new_registration: Rate::per_secs(1000, 1),
            ..Rates::default()
        },
        ..Config::default()
    }
}

/// A story touching every kind of persisted change.
fn scenario() -> Vec<Value> {
    vec![
        json!({"type":"register","public_key":pk(1),"owner":"a@x","hostname":"one","listen_addr":":4000"}),
        json!({"type":"register","public_key":pk(2),"listen_addr":":4001"}),
        json!({"type":"set_tags","node_id":1,"tags":["ai"],"signature":sig(1,"set_tags:1")}),
        json!({"type":"request_handshake","from_node_id":2,"to_node_id":1,"justification":"hi","signature":sig(2,"handshake:2:1")}),
        json!({"type":"report_trust","node_id":1,"peer_id":2,"signature":sig(1,"report_trust:1:2")}),
        json!({"type":"respond_handshake","node_id":1,"peer_id":2,"accept":true,"signature":sig(1,"respond:1:2")}),
        json!({"type":"set_visibility","node_id":2,"public":true,"signature":sig(2,"set_visibility:2")}),
        json!({"type":"register","public_key":pk(3),"owner":"c@x"}),
        json!({"type":"rotate_key","node_id":3,"new_public_key":pk(4),"signature":sig(3,"rotate:3")}),
        json!({"type":"poll_handshakes","node_id":2,"signature":sig(2,"poll_handshakes:2")}),
        json!({"type":"deregister","node_id":3,"signature":sig(4,"deregister:3")}),
        json!({"type":"set_hostname","node_id":2,"hostname":"two","signature":sig(2,"set_hostname:2")}),
    ]
}

fn canonical(data: &Data) -> String {
    serde_json::to_string(&Snapshot::from_data(data, 0)).unwrap()
}

fn ctx() -> Ctx {
    Ctx {
        peer: "192.0.2.1:5000".parse().unwrap(),
        now_ms: T0,
    }
}

/// Runs the scenario until the storage crashes; returns the acknowledged change batches and
/// the batch that was being committed when it crashed.
fn run(storage: &MemStorage, requests: &[Value]) -> (Vec<Vec<Change>>, Option<Vec<Change>>) {
    let Ok((mut store, loaded)) = Store::open(storage.clone(), T0) else {
        return (Vec::new(), None);
    };
    store.set_min_compact_bytes(600);
    let mut reg = Registry::from_data(config(), loaded.data, T0);
    let mut acked = Vec::new();
    for req in requests {
        let out = reg.handle_frame(req.as_object().unwrap(), &ctx());
        assert!(out.reply.get("error").is_none(), "{req}: {:?}", out.reply);
        if store.commit(&out.changes).is_err() {
            return (acked, Some(out.changes));
        }
        acked.push(out.changes);
        if store.needs_compaction() && store.compact(reg.data()).is_err() {
            return (acked, None);
        }
    }
    (acked, None)
}

#[test]
fn every_crash_point_keeps_every_acknowledged_change() {
    let requests = scenario();
    let probe = MemStorage::new();
    let (all, none) = run(&probe, &requests);
    assert!(none.is_none() && all.len() == requests.len());
    let total_steps = probe.steps_taken();
    let mut compactions_seen = false;
    for crash_at in 0..=total_steps {
        let storage = MemStorage::new();
        storage.crash_after_steps(crash_at);
        let (acked, inflight) = run(&storage, &requests);
        storage.restart();
        let (_, loaded) = Store::open(storage.clone(), T0)
            .unwrap_or_else(|e| panic!("crash after {crash_at} steps: store refused: {e}"));
        let mut expect = Data::new(T0);
        for c in acked.iter().flatten() {
            expect.apply(c);
        }
        let got = canonical(&loaded.data);
        let mut alt = None;
        if let Some(batch) = &inflight {
            let mut with = Data::new(T0);
            for c in acked.iter().flatten().chain(batch) {
                with.apply(c);
            }
            alt = Some(canonical(&with));
        }
        assert!(
            got == canonical(&expect) || Some(&got) == alt.as_ref(),
            "crash after {crash_at} steps: {} acknowledged batches not all recovered",
            acked.len()
        );
        compactions_seen |= storage.read(LOG).unwrap().is_none() && acked.len() > 3;
    }
    assert!(compactions_seen, "the sweep must cover compaction");
}

#[test]
fn restart_replays_the_log_and_keeps_healthy_nodes_fresh() {
    let storage = MemStorage::new();
    let (acked, _) = run(&storage, &scenario()[..3]);
    assert_eq!(acked.len(), 3);
    let later = T0 + 3_600_000;
    let (_, loaded) = Store::open(storage.clone(), later).unwrap();
    let mut reg = Registry::from_data(config(), loaded.data, later);
    assert_eq!(reg.data().nodes[&1].tags.len(), 1);
    // An hour after the last persisted change, nobody is reaped at the first tick.
    assert!(reg.tick(later + 60_000).is_empty());
}

#[test]
fn corrupt_stores_are_refused_and_left_untouched() {
    let storage = MemStorage::new();
    run(&storage, &scenario()[..2]);
    // A log record damaged before the tail.
    let (mut store, _) = Store::open(storage.clone(), T0).unwrap();
    store
        .commit(&[Change::NextNode { next: 50 }])
        .and_then(|_| store.commit(&[Change::NextNode { next: 51 }]))
        .unwrap();
    let mut log = storage.read(LOG).unwrap().unwrap();
    log[12] ^= 0x20;
    storage.replace(LOG, &log).unwrap();
    let before = (storage.read(SNAPSHOT).unwrap(), storage.read(LOG).unwrap());
    let err = Store::open(storage.clone(), T0).err().expect("must refuse");
    assert!(matches!(err, PersistError::Log(_)), "{err}");
    assert!(err.to_string().contains("left untouched"));
    assert_eq!(
        before,
        (storage.read(SNAPSHOT).unwrap(), storage.read(LOG).unwrap())
    );

    // A truncated snapshot.
    let storage = MemStorage::new();
    run(&storage, &scenario()[..2]);
    let snap = storage.read(SNAPSHOT).unwrap().unwrap();
    storage.replace(SNAPSHOT, &snap[..snap.len() / 2]).unwrap();
    assert!(matches!(
        Store::open(storage.clone(), T0),
        Err(PersistError::Snapshot(_))
    ));
    assert_eq!(
        storage.read(SNAPSHOT).unwrap().unwrap(),
        &snap[..snap.len() / 2]
    );

    // A snapshot with a malformed key (Q-28).
    let storage = MemStorage::new();
    storage
        .replace(
            SNAPSHOT,
            br#"{"next_node":2,"nodes":{"1":{"id":1,"public_key":""}}}"#,
        )
        .unwrap();
    let err = Store::open(storage, T0).err().expect("must refuse");
    assert!(err.to_string().contains("public key"), "{err}");
}

#[test]
fn go_reference_snapshot_loads() {
    let storage = MemStorage::new();
    let go = json!({"next_node":10,"next_net":1,
        "nodes":{"7":{"id":7,"owner":"alice@example.com","public_key":"mcFcuwjIH9lBJK8Mhgd+HrOmBDz1yAvPwGf5c2md6/Y=",
        "real_addr":"203.0.113.5:4000","networks":[0],"last_seen":"2025-01-01T00:00:00Z",
        "hostname":"alice-agent","tags":["x"],"polo_score":3}},
        "networks":{"0":{"id":0,"name":"backbone","join_rule":"open","members":[7],
        "created":"2025-01-01T00:00:00Z"}},"trust_pairs":["7:9"],
        "handshake_inbox":{"7":[{"from_node_id":9,"justification":"hi","timestamp":"2025-01-01T00:00:00.5Z"}]}});
    storage
        .replace(SNAPSHOT, &serde_json::to_vec(&go).unwrap())
        .unwrap();
    let (_, loaded) = Store::open(storage, T0).unwrap();
    let d = &loaded.data;
    assert_eq!(d.next_node, 10);
    assert_eq!(d.nodes[&7].hostname.as_deref(), Some("alice-agent"));
    assert_eq!(d.nodes[&7].polo, 3);
    assert!(d.trust.contains(&(7, 9)));
    assert_eq!(d.inbox[&7].requests[0].at_ms, T0 + 500);
    assert_eq!(d.owner_idx.get("alice@example.com"), Some(&7));
    // Q-14: a missing counter never re-issues an ID.
    let storage = MemStorage::new();
    storage
        .replace(SNAPSHOT, br#"{"nodes":{"7":{"id":7,"public_key":"mcFcuwjIH9lBJK8Mhgd+HrOmBDz1yAvPwGf5c2md6/Y="}}}"#)
        .unwrap();
    assert_eq!(Store::open(storage, T0).unwrap().1.data.next_node, 8);
}

#[test]
fn fresh_store_on_a_missing_directory_persists() {
    // Q-14: the first start creates what it needs and the first change is durable.
    let dir = tempfile::tempdir().unwrap();
    let storage = pilot::net::DiskStorage::open(dir.path().join("a/b")).unwrap();
    let (mut store, loaded) = Store::open(storage.clone(), T0).unwrap();
    let mut reg = Registry::from_data(config(), loaded.data, T0);
    let out = reg.handle_frame(scenario()[0].as_object().unwrap(), &ctx());
    store.commit(&out.changes).unwrap();
    let (_, again) = Store::open(storage, T0).unwrap();
    assert_eq!(again.data.nodes.len(), 1);
}

/// Q-15: the owner index survives a restart, also for deregistered nodes.
#[test]
fn owner_bindings_survive_restart() {
    let storage = MemStorage::new();
    let reqs = [
        json!({"type":"register","public_key":pk(1),"owner":"a@x"}),
        json!({"type":"deregister","node_id":1,"signature":sig(1,"deregister:1")}),
    ];
    let (acked, _) = run(&storage, &reqs);
    assert_eq!(acked.len(), 2);
    let (mut store, loaded) = Store::open(storage.clone(), T0).unwrap();
    assert_eq!(loaded.data.owner_idx.get("a@x"), Some(&1));
    let mut reg = Registry::from_data(config(), loaded.data, T0);
    // Someone else claiming the owner gets a new node without it.
    let out = reg.handle_frame(
        json!({"type":"register","public_key":pk(2),"owner":"a@x"})
            .as_object()
            .unwrap(),
        &ctx(),
    );
    assert_eq!(out.reply["node_id"], 2);
    store.commit(&out.changes).unwrap();
    assert_eq!(reg.data().nodes[&2].owner, None);
    // The key comes back to its ID, with its owner.
    let out = reg.handle_frame(
        json!({"type":"register","public_key":pk(1),"owner":"a@x"})
            .as_object()
            .unwrap(),
        &ctx(),
    );
    assert_eq!(out.reply["node_id"], 1);
    assert_eq!(reg.data().nodes[&1].owner.as_deref(), Some("a@x"));
}
