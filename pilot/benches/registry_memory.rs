//! Registry memory per registered node at 100 000 nodes, counted by a wrapping allocator.
//!
//! Nodes are registered through the state machine exactly as over the wire (key index,
//! endpoint, backbone membership), once without and once with a hostname and two tags. Run:
//! `cargo bench -p pilot --bench registry_memory`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use pilot::registry::model::{Change, StoredNode};
use pilot::registry::ratelimit::{Rate, Rates};
use pilot::registry::{Config, Ctx, Registry};
use serde_json::json;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - layout.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const NODES: u32 = 100_000;

fn measure(with_attributes: bool) {
    let cfg = Config {
        rates: Rates {
            new_registration: Rate::per_secs(u32::MAX, 1),
            ..Rates::default()
        },
        ..Config::default()
    };
    let before = LIVE.load(Ordering::Relaxed);
    let mut reg = Registry::new(cfg, 1_735_689_600_000);
    for i in 0..NODES {
        let mut key = [7u8; 32];
        key[..4].copy_from_slice(&i.to_be_bytes());
        let req = json!({"type":"register","public_key":STANDARD.encode(key),
            "listen_addr":"0.0.0.0:4000"});
        let ctx = Ctx {
            peer: std::net::SocketAddr::from((
                [10, (i >> 16) as u8, (i >> 8) as u8, i as u8],
                40000,
            )),
            now_ms: 1_735_689_600_000,
        };
        let out = reg.handle_frame(req.as_object().unwrap(), &ctx);
        assert!(out.reply.get("error").is_none());
        if with_attributes {
            let id = i + 1;
            let mut node = reg.data().nodes[&id].clone();
            node.hostname = Some(format!("agent-{id:06}").into());
            node.tags = vec!["assistant".into(), "web".into()].into();
            reg.apply_replicated(
                &[Change::Node(StoredNode::from_node(id, &node))],
                ctx.now_ms,
            );
        }
    }
    let after = LIVE.load(Ordering::Relaxed);
    println!(
        "registry memory, {NODES} nodes{}: {:.0} bytes/node",
        if with_attributes {
            " with hostname + 2 tags"
        } else {
            ""
        },
        (after - before) as f64 / f64::from(NODES)
    );
    drop(reg);
}

fn main() {
    measure(false);
    measure(true);
}
