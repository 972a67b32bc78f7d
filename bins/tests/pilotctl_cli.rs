//! pilotctl as a user runs it: the real binary, against nothing or against a fake daemon.

mod pilotctl_support;

use pilot::ipc::{Command, HandshakeCommand};
use pilotctl_support::{pilotctl, FakeDaemon};
use serde_json::json;

#[tokio::test]
async fn no_arguments_prints_usage_and_exits_2() {
    let home = tempfile::tempdir().unwrap();
    let run = pilotctl(&[], home.path(), None, None).await;
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("usage: pilotctl"), "{run:?}");
}

#[tokio::test]
async fn unknown_commands_and_bad_arguments_are_invalid_argument() {
    let home = tempfile::tempdir().unwrap();
    let run = pilotctl(&["--json", "frobnicate"], home.path(), None, None).await;
    let err = run.error();
    assert_eq!(err["code"], "invalid_argument");
    assert_eq!(
        err["hint"],
        "run 'pilotctl context' for the full command list"
    );
    let run = pilotctl(&["frobnicate"], home.path(), None, None).await;
    assert_eq!(run.code, 2);

    for args in [
        &["send", "1", "80", "--bogus", "--json"][..],
        &["--json", "ping"],
        &["--json", "ping", "1", "--count", "many"],
        &["--json", "send", "1", "99999", "--data", "x"],
        &["--json", "approve", "not-a-node"],
        &["--json", "daemon", "restart"],
        &[
            "--json",
            "connect",
            "1",
            "--timeout",
            "soon",
            "--message",
            "x",
        ],
    ] {
        let err = pilotctl(args, home.path(), None, None).await.error();
        assert_eq!(err["code"], "invalid_argument", "{args:?}: {err}");
        assert!(
            err["hint"].as_str().is_some_and(|h| !h.is_empty()),
            "{args:?}: {err}"
        );
    }
}

#[tokio::test]
async fn an_unreachable_daemon_is_not_running_with_a_hint() {
    let home = tempfile::tempdir().unwrap();
    let socket = home.path().join("absent.sock");
    let err = pilotctl(&["info", "--json"], home.path(), Some(&socket), None)
        .await
        .error();
    assert_eq!(err["code"], "not_running");
    assert_eq!(err["hint"], "start the daemon with: pilotctl daemon start");
    let run = pilotctl(&["pending"], home.path(), Some(&socket), None).await;
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.starts_with("error: daemon is not running"),
        "{run:?}"
    );
    assert!(run
        .stderr
        .contains("hint:  start the daemon with: pilotctl daemon start"));
}

#[tokio::test]
async fn context_lists_every_command() {
    let home = tempfile::tempdir().unwrap();
    let data = pilotctl(&["context", "--json"], home.path(), None, None)
        .await
        .data();
    assert_eq!(data["version"], "1.2");
    for name in [
        "info",
        "handshake",
        "pending",
        "approve",
        "reject",
        "trust",
        "untrust",
        "find",
        "set-hostname",
        "set-public",
        "set-private",
        "ping",
        "bench",
        "connect",
        "send",
        "recv",
        "peers",
        "connections",
        "daemon start",
        "daemon stop",
        "daemon status",
        "context",
    ] {
        assert!(
            data["commands"][name]["description"].is_string(),
            "{name} missing"
        );
    }
    assert!(data["error_codes"]["not_running"].is_string());
    assert!(data["environment"]["PILOT_SOCKET"].is_string());
}

#[tokio::test]
async fn info_peers_and_connections() {
    for extended in [false, true] {
        let daemon = FakeDaemon::start(extended);
        let data = daemon.pilotctl(&["--json", "info"]).await.data();
        assert_eq!(data["node_id"], 42);
        assert_eq!(
            data["a_future_field"], "ignored",
            "info is passed through verbatim"
        );
        let run = daemon.pilotctl(&["info"]).await;
        assert!(
            run.stdout.contains("Address:      0:0000.0000.002A"),
            "{run:?}"
        );
        assert!(
            run.stdout.contains("198.51.100.7:5000"),
            "peer table: {run:?}"
        );

        let data = daemon
            .pilotctl(&["peers", "--search", "198.51", "--json"])
            .await
            .data();
        assert_eq!(data["total"], 1);
        assert_eq!(data["peers"][0]["node_id"], 77);
        let run = daemon.pilotctl(&["peers"]).await;
        assert!(run.stdout.starts_with("NODE ID"), "{run:?}");

        let data = daemon.pilotctl(&["connections", "--json"]).await.data();
        assert_eq!(data["total"], 1);
        assert_eq!(data["connections"][0]["state"], "ESTABLISHED");
    }
}

#[tokio::test]
async fn trust_commands() {
    let daemon = FakeDaemon::start(false);
    let data = daemon.pilotctl(&["--json", "pending"]).await.data();
    assert_eq!(data["pending"][0]["node_id"], 9);
    assert_eq!(data["pending"][0]["justification"], "let me in");
    let run = daemon.pilotctl(&["pending"]).await;
    assert!(run.stdout.contains("2026-01-15 12:34:56 UTC"), "{run:?}");
    assert!(run.stdout.contains("let me in"));

    let data = daemon.pilotctl(&["trust", "--json"]).await.data();
    assert_eq!(data["trusted"][0]["mutual"], true);
    assert!(daemon.pilotctl(&["trust"]).await.stdout.contains("MUTUAL"));

    // A hostname target is resolved, then the node ID is asked.
    let data = daemon
        .pilotctl(&["--json", "handshake", "alice", "we work together"])
        .await
        .data();
    assert_eq!(data["status"], "sent");
    assert_eq!(data["node_id"], 5);
    assert!(daemon
        .commands()
        .contains(&Command::Handshake(HandshakeCommand::Send {
            node: 5,
            justification: "we work together".into()
        })));

    let run = daemon.pilotctl(&["handshake", "0:0000.0000.0005"]).await;
    assert!(run.stdout.contains("pilotctl approve 42"), "{run:?}");

    assert_eq!(
        daemon.pilotctl(&["--json", "approve", "9"]).await.data()["status"],
        "approved"
    );
    assert_eq!(
        daemon
            .pilotctl(&["--json", "reject", "9", "no"])
            .await
            .data()["status"],
        "rejected"
    );
    assert_eq!(
        daemon.pilotctl(&["--json", "untrust", "7"]).await.data()["node_id"],
        7
    );
    let err = daemon.pilotctl(&["--json", "untrust", "99"]).await.error();
    assert_eq!(err["code"], "not_found");
}

#[tokio::test]
async fn names_and_visibility() {
    let daemon = FakeDaemon::start(true);
    let data = daemon.pilotctl(&["--json", "find", "alice"]).await.data();
    assert_eq!(data["address"], "0:0000.0000.0005");
    let err = daemon.pilotctl(&["--json", "find", "bob"]).await.error();
    assert_eq!(err["code"], "not_found");
    assert_eq!(
        err["hint"],
        "establish trust first: pilotctl handshake bob \"reason\""
    );

    let data = daemon
        .pilotctl(&["--json", "set-hostname", "carol"])
        .await
        .data();
    assert_eq!(data["hostname"], "carol");
    let config = std::fs::read_to_string(daemon.home().join(".pilot/config.json")).unwrap();
    assert!(config.contains("\"hostname\": \"carol\""), "{config}");

    let data = daemon.pilotctl(&["--json", "set-public"]).await.data();
    assert_eq!(data["visibility"], "public");
    let data = daemon.pilotctl(&["--json", "set-private"]).await.data();
    assert_eq!(data["visibility"], "private");
}

#[tokio::test]
async fn webhooks_are_saved_then_applied_best_effort() {
    let daemon = FakeDaemon::start(true);
    let config = || std::fs::read_to_string(daemon.home().join(".pilot/config.json")).unwrap();
    let url = "http://127.0.0.1:8080/events";
    let data = daemon
        .pilotctl(&["--json", "set-webhook", url])
        .await
        .data();
    assert_eq!(data, json!({"webhook": url, "applied": true}));
    assert!(
        config().contains(&format!("\"webhook\": \"{url}\"")),
        "{}",
        config()
    );
    assert!(daemon.commands().contains(&Command::SetWebhook(url.into())));

    // The daemon refuses: the config still holds the URL, and the reason is reported.
    let refused = "http://refused.example/";
    let data = daemon
        .pilotctl(&["--json", "set-webhook", refused])
        .await
        .data();
    assert_eq!(data["applied"], false);
    assert!(
        data["not_applied"].as_str().unwrap().contains("refused"),
        "{data}"
    );
    assert!(config().contains(refused), "{}", config());

    let data = daemon.pilotctl(&["--json", "clear-webhook"]).await.data();
    assert_eq!(data, json!({"webhook": "", "applied": true}));
    assert!(!config().contains("webhook"), "{}", config());
    assert!(daemon
        .commands()
        .contains(&Command::SetWebhook(String::new())));

    for bad in ["ftp://x/", "not a url", ""] {
        let err = daemon
            .pilotctl(&["--json", "set-webhook", bad])
            .await
            .error();
        assert_eq!(err["code"], "invalid_argument", "{bad:?}: {err}");
    }
    assert!(
        !config().contains("webhook"),
        "bad URLs never reach the config"
    );
}

#[tokio::test]
async fn set_webhook_without_a_daemon_only_saves_it() {
    let home = tempfile::tempdir().unwrap();
    let socket = home.path().join("absent.sock");
    let url = "https://hooks.example/pilot";
    let data = pilotctl(
        &["--json", "set-webhook", url],
        home.path(),
        Some(&socket),
        None,
    )
    .await
    .data();
    assert_eq!(data["webhook"], url);
    assert_eq!(data["applied"], false);
    assert!(data["not_applied"].as_str().unwrap().contains("no daemon"));
    let config = std::fs::read_to_string(home.path().join(".pilot/config.json")).unwrap();
    assert!(config.contains(url), "{config}");
}

#[tokio::test]
async fn init_and_config_write_checked_settings() {
    let home = tempfile::tempdir().unwrap();
    let run = |args: &'static [&'static str]| pilotctl(args, home.path(), None, None);
    let data = run(&[
        "--json",
        "init",
        "--registry",
        "10.0.0.1:9000",
        "--hostname",
        "agent-7",
    ])
    .await
    .data();
    assert_eq!(data["registry"], "10.0.0.1:9000");
    assert_eq!(data["beacon"], "127.0.0.1:9001");
    assert_eq!(data["hostname"], "agent-7");
    let path = home.path().join(".pilot/config.json");
    assert_eq!(data["config_path"], path.display().to_string());

    let data = run(&["--json", "config", "--set", "webhook=http://127.0.0.1:1/x"])
        .await
        .data();
    assert_eq!(
        data,
        json!({"key": "webhook", "value": "http://127.0.0.1:1/x"})
    );
    let shown = run(&["--json", "config"]).await.data();
    assert_eq!(shown["registry"], "10.0.0.1:9000");
    assert_eq!(shown["webhook"], "http://127.0.0.1:1/x");
    assert!(shown["pid_file"]
        .as_str()
        .unwrap()
        .ends_with(".pilot/pilot.pid"));

    let before = std::fs::read_to_string(&path).unwrap();
    for bad in [
        &["--json", "config", "--set", "registry=nohost"][..],
        &["--json", "config", "--set", "webhook=ftp://x/"],
        &["--json", "config", "--set", "colour=blue"],
        &["--json", "config", "--set", "registry"],
        &["--json", "init", "--beacon", "9001"],
    ] {
        let err = pilotctl(bad, home.path(), None, None).await.error();
        assert_eq!(err["code"], "invalid_argument", "{bad:?}: {err}");
    }
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        before,
        "refused settings change nothing"
    );
}

#[tokio::test]
async fn send_connect_and_recv() {
    for extended in [false, true] {
        let daemon = FakeDaemon::start(extended);
        let data = daemon
            .pilotctl(&[
                "--json",
                "send",
                "0:0000.0000.0005",
                "1000",
                "--data",
                "hi there",
            ])
            .await
            .data();
        assert_eq!(data["response"], "got: hi there");
        assert_eq!(data["target"], "0:0000.0000.0005");

        let data = daemon
            .pilotctl(&["--json", "connect", "alice", "--message", "yo"])
            .await
            .data();
        assert_eq!(
            (data["port"].as_u64(), data["response"].as_str()),
            (Some(1000), Some("got: yo"))
        );

        let run = pilotctl(
            &["--json", "connect", "5", "2000"],
            &daemon.home(),
            Some(daemon.socket()),
            Some("line one\nline two\n"),
        )
        .await;
        assert_eq!(run.data()["sent"], "line one\nline two");
        let err = pilotctl(
            &["--json", "connect", "5"],
            &daemon.home(),
            Some(daemon.socket()),
            Some(""),
        )
        .await
        .error();
        assert_eq!(err["code"], "invalid_argument");

        let data = daemon.pilotctl(&["--json", "recv", "5000"]).await.data();
        assert_eq!(data["messages"][0]["data"], "hello from peer");
        assert_eq!(data["messages"][0]["port"], 5000);
        assert_eq!(data["timeout"], false);

        let err = daemon
            .pilotctl(&["--json", "send", "nobody", "80", "--data", "x"])
            .await
            .error();
        assert_eq!(err["code"], "not_found", "{err}");
        let err = daemon
            .pilotctl(&["--json", "send", "bad:target", "80", "--data", "x"])
            .await
            .error();
        assert_eq!(err["code"], "invalid_argument", "{err}");

        let err = daemon
            .pilotctl(&["--json", "send", "404", "80", "--data", "x"])
            .await
            .error();
        assert_eq!(err["code"], "connection_failed");
        assert!(
            err["message"]
                .as_str()
                .unwrap()
                .contains("no route to host"),
            "{err}"
        );
    }
}

#[tokio::test]
async fn ping_and_bench_against_the_echo_port() {
    for extended in [false, true] {
        let daemon = FakeDaemon::start(extended);
        let data = daemon
            .pilotctl(&["--json", "ping", "5", "--count", "3", "--interval", "0"])
            .await
            .data();
        assert_eq!(data["results"].as_array().unwrap().len(), 3);
        assert_eq!(data["received"], 3);
        assert_eq!(data["results"][0]["bytes"], 6, "the probe is ping-1");
        assert!(data["min_ms"].as_f64().unwrap() <= data["max_ms"].as_f64().unwrap());
        let run = daemon.pilotctl(&["ping", "alice", "--count=1"]).await;
        assert_eq!(run.code, 0, "{run:?}");
        assert!(run.stdout.contains("rtt min/avg/max"), "{run:?}");

        let data = daemon
            .pilotctl(&["--json", "bench", "0:0000.0000.0005", "2"])
            .await
            .data();
        assert_eq!(data["sent_bytes"], 2 << 20);
        assert_eq!(data["recv_bytes"], 2 << 20);
        assert!(data["total_mbps"].as_f64().unwrap() > 0.0);

        let err = daemon
            .pilotctl(&["--json", "ping", "404", "--count", "1"])
            .await
            .error();
        assert_eq!(err["code"], "connection_failed");
    }
}
