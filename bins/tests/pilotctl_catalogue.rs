//! The command catalogue as the real binary sees it: docs/PILOTCTL.md against `context`, the
//! command lines of `spec/services.md` §11 parse, and every kind of bad input is a clear
//! usage error with a hint and the documented exit status, never a panic.

mod pilotctl_support;

use pilotctl_support::{pilotctl, pilotctl_env, Run};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;

/// Runs pilotctl where no daemon answers and no registry listens (a refused local port), so
/// nothing leaves the machine.
async fn offline(args: &[&str], home: &Path) -> Run {
    let socket = home.join("absent.sock");
    pilotctl_env(
        args,
        home,
        Some(&socket),
        None,
        &[
            ("PILOT_REGISTRY", "127.0.0.1:9"),
            ("PILOT_DAEMON_BIN", "/nonexistent/pilot-daemon"),
        ],
    )
    .await
}

async fn context_commands(home: &Path) -> serde_json::Map<String, Value> {
    let data = pilotctl(&["context", "--json"], home, None, None)
        .await
        .data();
    data["commands"].as_object().cloned().unwrap()
}

#[tokio::test]
async fn the_doc_lists_exactly_the_commands_of_context() {
    let home = tempfile::tempdir().unwrap();
    let in_context: BTreeSet<String> = context_commands(home.path())
        .await
        .keys()
        .cloned()
        .collect();
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/PILOTCTL.md"))
        .unwrap();
    let catalogue = doc
        .split("## Commands")
        .nth(1)
        .expect("docs/PILOTCTL.md has a Commands section");
    let in_doc: BTreeSet<String> = catalogue
        .lines()
        .take_while(|l| !l.starts_with("## "))
        .filter_map(|l| l.strip_prefix("| `")?.split('`').next())
        .map(str::to_string)
        .collect();
    assert!(in_context.len() >= 40, "{in_context:?}");
    let missing: Vec<_> = in_context.difference(&in_doc).collect();
    let extra: Vec<_> = in_doc.difference(&in_context).collect();
    assert!(
        missing.is_empty(),
        "in context, not in the doc: {missing:?}"
    );
    assert!(extra.is_empty(), "in the doc, not in context: {extra:?}");
    assert!(doc.contains("### Exit codes"), "exit codes are documented");
}

/// The command lines of `spec/services.md` §11 (the "Args / flags (defaults)" column, with its
/// placeholders filled in), one per command form.
const SPEC_COMMAND_LINES: &[&str] = &[
    "init --registry 127.0.0.1:9 --beacon 127.0.0.1:9001 --hostname alice --socket /tmp/pilot.sock",
    "config",
    "config --set hostname=alice",
    "context",
    "daemon start",
    "daemon stop",
    "daemon status",
    "daemon status --check",
    "lookup 42",
    "set-public",
    "set-private",
    "deregister",
    "find alice",
    "set-hostname alice",
    "clear-hostname",
    "set-tags t1 t2 t3",
    "clear-tags",
    "enable-tasks",
    "disable-tasks",
    "set-webhook https://example.com/hook",
    "clear-webhook",
    "connect alice 1000 --message m --timeout 30s",
    "send alice 1000 --data d --timeout 30s",
    "recv 1000 --count 1 --timeout 30s",
    "send-file alice /etc/hostname",
    "send-message alice --data d --type text",
    "send-message alice --data d --type json",
    "subscribe alice topic --count 0 --timeout 0",
    "publish alice topic --data d",
    "listen 1000 --count 0 --timeout 0",
    "broadcast 0 message",
    "task submit alice --task d",
    "task accept --id 3f1c2a9e-5b7d-4c1e-8a2b-0123456789ab",
    "task decline --id 3f1c2a9e-5b7d-4c1e-8a2b-0123456789ab --justification j",
    "task execute",
    "task send-results --id 3f1c2a9e-5b7d-4c1e-8a2b-0123456789ab --results t",
    "task send-results --id 3f1c2a9e-5b7d-4c1e-8a2b-0123456789ab --file /etc/hostname",
    "task list",
    "task list --type received",
    "task queue",
    "handshake 42 justification",
    "approve 42",
    "reject 42 reason",
    "untrust 42",
    "pending",
    "trust",
    "connections",
    "info",
    "peers --search q",
    "ping alice --count 4 --timeout 30s",
    "traceroute 0:0000.0000.002A --timeout 30s",
    "bench alice 1 --timeout 120s",
    "received",
    "received --clear",
    "inbox",
    "inbox --clear",
    "register 127.0.0.1:4000",
    "rotate-key 42 owner@example.com",
    "disconnect 7",
    "gateway list",
    "gateway map 0:0000.0000.002A",
    "gateway unmap 10.4.0.9",
    "gateway stop",
    // The reference's single-dash spelling of the same flags.
    "ping alice -count 4 -timeout 30s",
    "-json info",
];

#[tokio::test]
async fn the_spec_command_lines_parse() {
    let home = tempfile::tempdir().unwrap();
    for line in SPEC_COMMAND_LINES {
        let mut args: Vec<&str> = line.split(' ').collect();
        args.push("--json");
        let run = offline(&args, home.path()).await;
        assert!(!run.stderr.contains("panicked"), "{line}: {run:?}");
        assert_ne!(run.code, 2, "{line}: {run:?}");
        // `daemon status --check` answers with its exit status alone.
        let silent = line.ends_with("--check") && run.stderr.is_empty();
        if run.code != 0 && !silent {
            let err = run.error();
            assert_ne!(err["code"], "invalid_argument", "{line}: {err}");
        }
    }
}

/// The bounds on a command's positional arguments, from its `context` synopsis.
fn positional_bounds(args: &[Value]) -> (usize, usize) {
    let mut required = 0;
    let mut optional = 0;
    for entry in args.iter().filter_map(Value::as_str) {
        if entry.starts_with('<') {
            required += 1;
        } else if entry.starts_with('[') && !entry.starts_with("[-") {
            optional += 1;
        }
    }
    (required, required + optional)
}

/// Asserts `args` is a command-line error: human mode exits 2 with a message and a hint, JSON
/// mode exits 1 with `invalid_argument` and a hint; `expect` is in the message.
async fn assert_usage_error(args: &[String], expect: &str, home: &Path) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let human = offline(&args, home).await;
    assert!(!human.stderr.contains("panicked"), "{args:?}: {human:?}");
    assert_eq!(human.code, 2, "{args:?}: {human:?}");
    assert!(human.stderr.starts_with("error: "), "{args:?}: {human:?}");
    assert!(human.stderr.contains("\nhint:  "), "{args:?}: {human:?}");
    assert!(
        human.stderr.contains(expect),
        "{args:?}: wanted {expect:?} in {human:?}"
    );
    let mut json_args = args.clone();
    json_args.push("--json");
    let json = offline(&json_args, home).await;
    assert!(!json.stderr.contains("panicked"), "{args:?}: {json:?}");
    let err = json.error();
    assert_eq!(err["code"], "invalid_argument", "{args:?}: {err}");
    assert!(
        err["hint"].as_str().is_some_and(|h| !h.is_empty()),
        "{args:?}: {err}"
    );
}

fn words(line: &str) -> Vec<String> {
    line.split(' ').map(str::to_string).collect()
}

#[tokio::test]
async fn every_command_refuses_missing_and_extra_arguments() {
    let home = tempfile::tempdir().unwrap();
    let commands = context_commands(home.path()).await;
    for (name, spec) in &commands {
        let (min, max) = positional_bounds(spec["args"].as_array().unwrap());
        if min > 0 {
            assert_usage_error(&words(name), "needs more arguments", home.path()).await;
        }
        let mut extra = words(name);
        extra.extend((0..=max).map(|i| format!("{}", i + 1)));
        assert_usage_error(&extra, "unexpected argument", home.path()).await;
        let mut unknown_flag = words(name);
        unknown_flag.push("--no-such-flag".into());
        assert_usage_error(&unknown_flag, "unknown flag --no-such-flag", home.path()).await;
    }
}

#[tokio::test]
async fn malformed_values_are_clear_usage_errors() {
    let home = tempfile::tempdir().unwrap();
    // (command line, what the message says)
    let cases: &[(&str, &str)] = &[
        ("ping 42 --count abc", "--count must be a whole number"),
        ("ping 42 --timeout 5parsecs", "--timeout"),
        ("ping 42 --interval soon", "--interval"),
        ("recv 1000 --count -1", "--count must be a whole number"),
        ("listen 1000 --timeout 5parsecs", "--timeout"),
        (
            "subscribe 42 topic --count many",
            "--count must be a whole number",
        ),
        ("connect 42 1000 --message m --timeout forever", "--timeout"),
        ("send 42 99999 --data x", "99999"),
        ("send 42 port --data x", "port"),
        ("recv 65536", "65536"),
        ("listen -3", "-3"),
        ("connect 42 70000 --message m", "70000"),
        ("approve not-a-node", "not-a-node"),
        ("reject 4294967296", "4294967296"),
        ("untrust 0:zzzz", "0:zzzz"),
        ("lookup banana", "banana"),
        ("traceroute alice", "invalid address"),
        ("bench 42 lots", "invalid size"),
        ("bench 42 -1", "invalid size"),
        ("inbox --clear=perhaps", "perhaps"),
        ("daemon status --check=maybe", "maybe"),
        (
            "set-tags a b c d",
            "unexpected argument \"d\" for 'set-tags' (it takes at most 3",
        ),
        ("info extra", "(it takes no arguments)"),
        ("send 42 1000 --data", "a value is required for '--data"),
        ("completions tcsh", "tcsh"),
        ("task accept --id 0123", "invalid task id"),
        ("daemon restart", "'daemon' has no sub-command \"restart\""),
        ("task", "'task' needs one of"),
        ("peer", "did you mean 'peers'"),
        ("ping 42 --cuont 3", "did you mean '--count'"),
        ("-cuont 3 ping 42", "-cuont"),
    ];
    for (line, expect) in cases {
        assert_usage_error(&words(line), expect, home.path()).await;
    }
}

#[tokio::test]
async fn help_version_and_completions_exit_0_on_stdout() {
    let home = tempfile::tempdir().unwrap();
    for (line, expect) in [
        ("--help", "Usage: pilotctl [--json] <command> [arguments]"),
        ("help", "completions"),
        ("help ping", "Examples:\n  pilotctl ping"),
        ("ping --help", "default: 4"),
        ("help task submit", "--task"),
        ("daemon start --help", "--foreground"),
        ("--version", env!("CARGO_PKG_VERSION")),
        ("completions bash", "complete -F _pilotctl"),
        ("completions zsh", "#compdef pilotctl"),
        ("completions fish", "complete -c pilotctl"),
    ] {
        let args: Vec<&str> = line.split(' ').collect();
        let run = offline(&args, home.path()).await;
        assert_eq!(run.code, 0, "{line}: {run:?}");
        assert!(
            run.stdout.contains(expect),
            "{line}: wanted {expect:?} in {run:?}"
        );
        assert!(run.stderr.is_empty(), "{line}: {run:?}");
    }
    // Every command in context has examples in its help.
    for name in context_commands(home.path()).await.keys() {
        let mut args = words(name);
        args.push("--help".into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = offline(&args, home.path()).await;
        assert_eq!(run.code, 0, "{name}: {run:?}");
        let examples = run.stdout.split("Examples:\n").nth(1).unwrap_or_default();
        assert!(
            examples.lines().next().is_some_and(
                |l| l.contains(&format!("pilotctl {name}")) || l.contains("| pilotctl")
            ),
            "{name}: {run:?}"
        );
    }
}
