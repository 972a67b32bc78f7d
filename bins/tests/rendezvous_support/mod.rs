//! `pilot-rendezvous` as a real process on ephemeral loopback ports, for integration tests.

// Each test binary that includes this module uses only part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A running `pilot-rendezvous`; killed when dropped.
pub struct Rendezvous {
    /// The process.
    pub child: Child,
    /// Its registry's TCP address.
    pub registry: SocketAddr,
    /// Its beacon's UDP address.
    pub beacon: SocketAddr,
}

impl Drop for Rendezvous {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary (with state in `store`, or in memory) and reads the addresses its ready
/// line reports.
pub fn start(store: Option<&Path>) -> Rendezvous {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pilot-rendezvous"));
    command.args([
        "-registry-addr",
        "127.0.0.1:0",
        "-beacon-addr",
        "127.0.0.1:0",
        "-log-level",
        "error",
    ]);
    if let Some(store) = store {
        command.arg("-store").arg(store);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start pilot-rendezvous");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("read the ready line");
    let field = |name: &str| -> SocketAddr {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {line:?}"))
            .parse()
            .unwrap()
    };
    let (registry, beacon) = (field("registry="), field("beacon="));
    Rendezvous {
        child,
        registry,
        beacon,
    }
}
