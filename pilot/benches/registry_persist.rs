//! Persistence cost per change at 1 000 and at 100 000 nodes: it should be flat.
//!
//! Each change is a signed `set_visibility` handled by the registry and committed through the
//! store (one fsynced log append). Compaction (a snapshot of the whole state) is timed on its
//! own and amortised over the changes that share it. Bytes written counts log records and
//! snapshots. Run: `cargo bench -p pilot --bench registry_persist`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::{Signer, SigningKey};
use pilot::net::{DiskStorage, MemStorage, Storage};
use pilot::registry::model::{Change, Node, StoredNode};
use pilot::registry::persist::{Store, MIN_COMPACT_BYTES};
use pilot::registry::ratelimit::{Rate, Rates};
use pilot::registry::{Config, Ctx, Data, Registry};
use serde_json::json;
use std::time::Instant;

const T0: u64 = 1_735_689_600_000;
const ACTIVE: u32 = 64;
const CHANGES: usize = 4000;

fn populated(nodes: u32) -> (Data, Vec<SigningKey>) {
    let mut data = Data::new(T0);
    let mut keys = Vec::new();
    for id in 1..=nodes {
        let key = if id <= ACTIVE {
            let sk = SigningKey::from_bytes(&[id as u8; 32]);
            let pk = sk.verifying_key().to_bytes();
            keys.push(sk);
            pk
        } else {
            let mut k = [0u8; 32];
            k[..4].copy_from_slice(&id.to_be_bytes());
            k
        };
        let mut node = Node::fresh(key, None, T0);
        node.real_addr = Some(
            format!("198.51.100.{}:{}", id % 250, 4000 + id % 1000)
                .parse()
                .unwrap(),
        );
        node.hostname = Some(format!("node-{id}").into());
        data.apply(&Change::Node(StoredNode::from_node(id, &node)));
        data.apply(&Change::Key {
            key: STANDARD.encode(key),
            id: Some(id),
        });
    }
    data.next_node = nodes + 1;
    (data, keys)
}

fn measure<S: Storage + Clone>(label: &str, storage: S, nodes: u32) {
    let (data, keys) = populated(nodes);
    // Seed the store with the populated state (one snapshot), outside the measurement.
    {
        let (mut store, _) = Store::open(storage.clone(), T0).unwrap();
        store.compact(&data).unwrap();
    }
    let (mut store, loaded) = Store::open(storage, T0).unwrap();
    let cfg = Config {
        rates: Rates {
            request: Rate::per_secs(u32::MAX, 1),
            ..Rates::default()
        },
        ..Config::default()
    };
    let mut reg = Registry::from_data(cfg, loaded.data, T0);
    let requests: Vec<_> = (0..CHANGES)
        .map(|i| {
            let id = (i as u32 % ACTIVE) + 1;
            let sig = STANDARD.encode(keys[id as usize - 1].sign(format!("set_visibility:{id}").as_bytes()).to_bytes());
            json!({"type":"set_visibility","node_id":id,"public":(i / ACTIVE as usize) % 2 == 0,"signature":sig})
        })
        .collect();
    let ctx = Ctx {
        peer: "192.0.2.1:1".parse().unwrap(),
        now_ms: T0,
    };
    // Appends only (compaction measured separately below, then amortised).
    store.set_min_compact_bytes(u64::MAX);
    let written_before = store.bytes_written();
    let start = Instant::now();
    for req in &requests {
        let out = reg.handle_frame(req.as_object().unwrap(), &ctx);
        assert!(out.reply.get("error").is_none(), "{:?}", out.reply);
        store.commit(&out.changes).unwrap();
    }
    let append_us = start.elapsed().as_secs_f64() * 1e6 / CHANGES as f64;
    let append_bytes = (store.bytes_written() - written_before) as f64 / CHANGES as f64;
    let before = store.bytes_written();
    let start = Instant::now();
    store.compact(reg.data()).unwrap();
    let compact_us = start.elapsed().as_secs_f64() * 1e6;
    let snapshot_bytes = (store.bytes_written() - before) as f64;
    // The log is folded once it outgrows the snapshot (and 256 KiB): that many changes share
    // one compaction.
    let every = snapshot_bytes.max(MIN_COMPACT_BYTES as f64) / append_bytes;
    println!(
        "{label:<6} {nodes:>7} nodes: append {append_us:>7.1} µs + {append_bytes:.0} B per change; \
         compaction {:.1} ms + {:.1} MB every {every:.0} changes; \
         amortised {:>7.1} µs + {:.0} B per change",
        compact_us / 1000.0,
        snapshot_bytes / 1e6,
        append_us + compact_us / every,
        append_bytes + snapshot_bytes / every,
    );
}

fn main() {
    for nodes in [1_000, 100_000] {
        measure("memory", MemStorage::new(), nodes);
        let dir = tempfile::tempdir().unwrap();
        measure("disk", DiskStorage::open(dir.path()).unwrap(), nodes);
    }
}
