//! The IP gateway between real processes: `pilot-rendezvous`, two trusted `pilot-daemon`s, an
//! HTTP server on B's virtual port (through the SDK), `pilotctl gateway` on A, and a real HTTP
//! client (reqwest) reaching B through a local IP; then map, unmap, list, stop and their
//! errors. Also `register`, `rotate-key` and `disconnect` with the JSON keys they print.

mod process_support;
mod rendezvous_support;

use process_support::{ctl, pilotctl, trusted_pair, Node, Proc};
use serde_json::Value;
use std::process::{Command, Stdio};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The virtual port of the HTTP server on B (the gateway listens on the same local port).
const HTTP_PORT: u16 = 8080;

/// A loopback subnet of its own per test process, so parallel runs do not share addresses
/// (Linux answers all of 127.0.0.0/8 on lo without setup).
fn loopback_subnet() -> String {
    format!("127.{}.0.0/16", 100 + std::process::id() % 100)
}

/// Runs pilotctl `--json` and returns (success, the envelope).
fn run(mut cmd: Command, args: &[&str]) -> (bool, Value) {
    let out = cmd
        .arg("--json")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = if out.status.success() {
        &out.stdout
    } else {
        &out.stderr
    };
    let value = serde_json::from_slice(text).unwrap_or_else(|e| {
        panic!(
            "pilotctl {args:?}: not JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), value)
}

/// The error code of a failing `pilotctl --json` run on `node`.
fn error_code(node: &Node, args: &[&str]) -> (String, Value) {
    let (ok, value) = run(pilotctl(node), args);
    assert!(!ok, "pilotctl {args:?} should fail: {value}");
    (
        value["code"].as_str().unwrap_or_default().to_string(),
        value,
    )
}

/// An HTTP/1.x server on `port` of the daemon at `socket`: answers every request with its
/// path in the body, then closes.
async fn http_server(socket: std::path::PathBuf, port: u16) {
    let driver = pilot::driver::Driver::connect(&socket).await.unwrap();
    let mut listener = driver.listen(port).await.unwrap();
    loop {
        let mut stream = listener.accept().await.unwrap();
        tokio::spawn(async move {
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let text = String::from_utf8_lossy(&request);
            let path = text.split_whitespace().nth(1).unwrap_or("?").to_string();
            let body = format!("hello from pilot, you asked for {path}");
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.flush().await;
            let _ = stream.shutdown().await;
        });
    }
}

/// A plain-HTTP reqwest client. reqwest's TLS backend here (shared with the library's webhook
/// client) needs an explicit crypto provider even when no TLS is spoken.
fn http_client() -> reqwest::Client {
    use tokio_rustls::rustls;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .build()
        .unwrap()
}

#[test]
fn curl_reaches_a_remote_agent_through_the_gateway() {
    let servers = rendezvous_support::start(None);
    let dir = tempfile::tempdir().unwrap();
    let (a, b, _a_id, b_id) = trusted_pair(dir.path(), servers.registry, servers.beacon);
    let b_addr = ctl(&b, &["info"])["address"].as_str().unwrap().to_string();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.spawn(http_server(b.socket.clone(), HTTP_PORT));

    // Not running yet: map, list, unmap and stop say so.
    for args in [
        &["gateway", "list"][..],
        &["gateway", "map", &b_addr],
        &["gateway", "unmap", "127.0.0.1"],
        &["gateway", "stop"],
    ] {
        assert_eq!(error_code(&a, args).0, "not_running", "{args:?}");
    }
    // Bad arguments are refused before anything runs.
    for args in [
        &["gateway", "start", "--subnet", "10.4.0.0/40"][..],
        &["gateway", "start", "--ports", "80,http"],
        &["gateway", "start", "not-an-address"],
        &["gateway", "frobnicate"],
    ] {
        assert_eq!(error_code(&a, args).0, "invalid_argument", "{args:?}");
    }
    // An address that is not on this machine: a clear error and the command that fixes it.
    let (code, err) = error_code(
        &a,
        &[
            "gateway",
            "start",
            "--subnet",
            "192.0.2.0/24",
            "--ports",
            "8080",
            &b_addr,
        ],
    );
    assert_eq!(code, "invalid_argument", "{err}");
    assert!(
        err["hint"]
            .as_str()
            .unwrap()
            .contains("ip addr add 192.0.2.1/32 dev lo"),
        "{err}"
    );

    let subnet = loopback_subnet();
    let mut start = pilotctl(&a);
    start.args([
        "--json",
        "gateway",
        "start",
        "--subnet",
        &subnet,
        "--ports",
        &HTTP_PORT.to_string(),
        &b_addr,
    ]);
    let mut gateway = Proc::spawn(start);
    let line = gateway.wait_for(&["\"status\":\"ok\""]);
    let started: Value = serde_json::from_str(&line).unwrap();
    let data = &started["data"];
    assert_eq!(data["subnet"], subnet.as_str());
    assert_eq!(data["pid"], gateway.child.id());
    let local_ip = data["mappings"][0]["local_ip"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(data["mappings"][0]["pilot_addr"], b_addr.as_str());
    assert_eq!(data["mappings"][0]["ports"], serde_json::json!([HTTP_PORT]));
    assert!(local_ip.ends_with(".0.1"), "{local_ip}");
    let pid_file = a.home.join(".pilot/gateway.pid");
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        gateway.child.id().to_string()
    );

    // A real HTTP client, twice (each request is its own proxied connection).
    let client = http_client();
    for path in ["/", "/status"] {
        let url = format!("http://{local_ip}:{HTTP_PORT}{path}");
        let body = runtime.block_on(async {
            let response = client.get(&url).send().await.unwrap();
            assert_eq!(response.status(), 200);
            response.text().await.unwrap()
        });
        assert_eq!(body, format!("hello from pilot, you asked for {path}"));
    }

    // A second start is refused while this one runs.
    assert_eq!(
        error_code(&a, &["gateway", "start", "--subnet", &subnet]).0,
        "already_exists"
    );

    // Map B again under a chosen address: refused (B has one); map by node ID is the same node.
    let base = subnet.trim_end_matches(".0.0/16");
    let chosen = format!("{base}.0.9");
    assert_eq!(
        error_code(&a, &["gateway", "map", &b_id, &chosen]).0,
        "already_exists"
    );
    let again = ctl(&a, &["gateway", "map", &b_id]);
    assert_eq!(again["local_ip"], local_ip.as_str());
    // A second node (A itself, through its own daemon) under the chosen address.
    let a_addr = ctl(&a, &["info"])["address"].as_str().unwrap().to_string();
    let mapped = ctl(&a, &["gateway", "map", &a_addr, &chosen]);
    assert_eq!(mapped["local_ip"], chosen.as_str());
    assert_eq!(mapped["pilot_addr"], a_addr.as_str());
    assert_eq!(
        error_code(&a, &["gateway", "map", &a_addr, "10.9.9.9"]).0,
        "already_exists"
    );
    assert_eq!(
        error_code(&a, &["gateway", "map", "0:0000.0000.0F00", "10.9.9.9"]).0,
        "invalid_argument"
    );
    assert_eq!(
        error_code(&a, &["gateway", "map", "zz", ""]).0,
        "invalid_argument"
    );
    assert_eq!(
        error_code(&a, &["gateway", "unmap", "not-an-ip"]).0,
        "invalid_argument"
    );

    let list = ctl(&a, &["gateway", "list"]);
    assert_eq!(list["total"], 2, "{list}");
    assert_eq!(list["mappings"][0]["local_ip"], local_ip.as_str());
    assert_eq!(list["mappings"][1]["local_ip"], chosen.as_str());

    let unmapped = ctl(&a, &["gateway", "unmap", &chosen]);
    assert_eq!(unmapped["unmapped"], chosen.as_str());
    assert_eq!(
        error_code(&a, &["gateway", "unmap", &chosen]).0,
        "not_found"
    );
    assert_eq!(ctl(&a, &["gateway", "list"])["total"], 1);
    // The unmapped address no longer accepts connections.
    assert!(std::net::TcpStream::connect((chosen.as_str(), HTTP_PORT)).is_err());

    // Raw HTTP/1.0 with a half-close still gets its answer.
    let mut raw = std::net::TcpStream::connect((local_ip.as_str(), HTTP_PORT)).unwrap();
    use std::io::{Read, Write};
    raw.write_all(b"GET /raw HTTP/1.0\r\n\r\n").unwrap();
    raw.shutdown(std::net::Shutdown::Write).unwrap();
    let mut answer = String::new();
    raw.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.ends_with("you asked for /raw"), "{answer}");

    let stopped = ctl(&a, &["gateway", "stop"]);
    assert_eq!(stopped["pid"], gateway.child.id());
    assert!(gateway.child.wait().unwrap().success());
    assert!(!pid_file.exists());
    assert!(!a.home.join(".pilot/gateway.sock").exists());
    assert_eq!(error_code(&a, &["gateway", "list"]).0, "not_running");
    assert!(std::net::TcpStream::connect((local_ip.as_str(), HTTP_PORT)).is_err());
    drop(runtime);
}

/// pilotctl without a daemon, against the registry only.
fn registry_ctl(home: &std::path::Path, registry: std::net::SocketAddr) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pilotctl"));
    cmd.env("HOME", home)
        .env("PILOT_REGISTRY", registry.to_string())
        .env_remove("PILOT_SOCKET")
        .env_remove("RUST_LOG");
    cmd
}

#[test]
fn register_and_rotate_key_against_the_registry() {
    let servers = rendezvous_support::start(None);
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let ctl = |args: &[&str]| run(registry_ctl(home, servers.registry), args);

    // rotate-key needs the node's identity.
    let (ok, err) = ctl(&["rotate-key", "1"]);
    assert!(!ok);
    assert_eq!(err["code"], "not_found", "{err}");

    let (ok, registered) = ctl(&["register", "127.0.0.1:4000"]);
    assert!(ok, "{registered}");
    let data = &registered["data"];
    assert_eq!(data["type"], "register_ok", "{data}");
    let node = data["node_id"].as_u64().unwrap();
    assert!(
        data["address"].as_str().unwrap().starts_with("0:"),
        "{data}"
    );
    let old_key = data["public_key"].as_str().unwrap().to_string();
    let identity = home.join(".pilot/identity.key");
    assert!(std::fs::read_to_string(&identity)
        .unwrap()
        .contains(&old_key));
    let (ok, rotated) = ctl(&["rotate-key", &node.to_string(), "alice@example.com"]);
    assert!(ok, "{rotated}");
    let data = &rotated["data"];
    assert_eq!(data["type"], "rotate_key_ok", "{data}");
    assert_eq!(data["node_id"], node);
    assert!(data["address"].is_string(), "{data}");
    let new_key = data["public_key"].as_str().unwrap().to_string();
    assert_ne!(new_key, old_key);
    assert!(std::fs::read_to_string(&identity)
        .unwrap()
        .contains(&new_key));
    assert!(!home.join(".pilot/identity.key.new").exists());
    let (_, looked_up) = ctl(&["lookup", &node.to_string()]);
    assert_eq!(looked_up["data"]["public_key"], new_key.as_str());

    // Another node's key cannot be rotated with this identity; the file is left alone.
    let other = tempfile::tempdir().unwrap();
    let (_, other_reg) = run(registry_ctl(other.path(), servers.registry), &["register"]);
    let other_id = other_reg["data"]["node_id"].as_u64().unwrap();
    let (ok, refused) = ctl(&["rotate-key", &other_id.to_string()]);
    assert!(!ok);
    assert_eq!(refused["code"], "connection_failed", "{refused}");
    assert!(std::fs::read_to_string(&identity)
        .unwrap()
        .contains(&new_key));
    let (ok, bad) = ctl(&["rotate-key", "x"]);
    assert!(!ok);
    assert_eq!(bad["code"], "invalid_argument", "{bad}");

    // A corrupt identity file is an error, never replaced.
    std::fs::write(&identity, "garbage").unwrap();
    let (ok, corrupt) = ctl(&["register"]);
    assert!(!ok);
    assert_eq!(corrupt["code"], "internal", "{corrupt}");
    assert_eq!(std::fs::read_to_string(&identity).unwrap(), "garbage");
}

#[test]
fn disconnect_closes_a_connection_another_client_opened() {
    let servers = rendezvous_support::start(None);
    let dir = tempfile::tempdir().unwrap();
    let (a, b, _a_id, _b_id) = trusted_pair(dir.path(), servers.registry, servers.beacon);
    let b_addr: pilot::wire::Addr = ctl(&b, &["info"])["address"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let driver = runtime
        .block_on(pilot::driver::Driver::connect(&a.socket))
        .unwrap();
    let mut stream = runtime.block_on(driver.dial(b_addr, 7)).unwrap();
    let conn = stream.conn_id();
    let listed = ctl(&a, &["connections"]);
    assert!(
        listed["connections"]
            .to_string()
            .contains(&format!("\"id\":{conn}")),
        "{listed}"
    );

    let closed = ctl(&a, &["disconnect", &conn.to_string()]);
    assert_eq!(closed["conn_id"], conn);
    // The owner sees its stream end.
    let mut rest = Vec::new();
    runtime.block_on(stream.read_to_end(&mut rest)).unwrap();
    assert!(rest.is_empty());

    assert_eq!(error_code(&a, &["disconnect", "4000000000"]).0, "not_found");
    assert_eq!(error_code(&a, &["disconnect", "-1"]).0, "invalid_argument");
    assert_eq!(error_code(&a, &["disconnect"]).0, "invalid_argument");
    drop(stream);
    drop(driver);
}
