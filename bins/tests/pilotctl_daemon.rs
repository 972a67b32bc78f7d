//! `pilotctl daemon start|stop|status` with a stand-in for pilot-daemon: a shell script (named
//! by PILOT_DAEMON_BIN) that re-executes this test binary as a fake daemon on the socket it is
//! given.
//!
//! Everything runs in one test function: writing an executable while another test thread
//! forks can make its exec fail with "text file busy".

mod pilotctl_support;

use pilotctl_support::{pilotctl_env, Run};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Not a test: when `FAKE_PILOT_DAEMON_SOCKET` is set, this process is the fake daemon.
#[test]
fn fake_daemon_process() {
    let Some(socket) = std::env::var_os("FAKE_PILOT_DAEMON_SOCKET") else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        println!(
            "fake daemon listening on {}",
            PathBuf::from(&socket).display()
        );
        let log = Default::default();
        pilotctl_support::serve(listener, true, log).await;
    });
}

/// Kills whatever the PID file names when the test ends, so a failure leaks no process.
struct KillOnDrop(PathBuf);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let pid = std::fs::read_to_string(&self.0)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .and_then(rustix::process::Pid::from_raw);
        if let Some(pid) = pid {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn daemon_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let socket = dir.path().join("daemon.sock");
    let pid_file = home.join(".pilot/pilot.pid");
    let log_file = home.join(".pilot/pilot.log");
    let _cleanup = KillOnDrop(pid_file.clone());

    let exe = std::env::current_exe().unwrap();
    let fake = script(
        dir.path(),
        "fake-daemon",
        &format!(
            "echo \"pilot-daemon $*\"\n\
             for a in \"$@\"; do case \"$a\" in --socket=*) sock=\"${{a#--socket=}}\";; esac; done\n\
             FAKE_PILOT_DAEMON_SOCKET=\"$sock\" exec '{}' --exact fake_daemon_process --nocapture --test-threads=1",
            exe.display()
        ),
    );
    let failing = script(
        dir.path(),
        "failing-daemon",
        "echo 'boom: no registry'\nexit 3",
    );
    let fake_s = fake.to_str().unwrap();
    let failing_s = failing.to_str().unwrap();
    let run = |args: &'static [&'static str], bin: &str| {
        let (home, socket, bin) = (home.clone(), socket.clone(), bin.to_string());
        async move {
            pilotctl_env(
                args,
                &home,
                Some(&socket),
                None,
                &[("PILOT_DAEMON_BIN", &bin)],
            )
            .await
        }
    };

    // Nothing runs yet.
    let err = run(&["--json", "daemon", "stop"], fake_s).await.error();
    assert_eq!(err["code"], "not_running");
    let data = run(&["--json", "daemon", "status"], fake_s).await.data();
    assert_eq!(
        (data["running"].as_bool(), data["responsive"].as_bool()),
        (Some(false), Some(false))
    );
    let check = run(&["daemon", "status", "--check"], fake_s).await;
    assert_eq!(
        (check.code, check.stdout.as_str(), check.stderr.as_str()),
        (1, "", "")
    );

    // A daemon that dies at start-up is reported at once, pointing at the log.
    let err = run(&["--json", "daemon", "start"], failing_s).await.error();
    assert_eq!(err["code"], "internal");
    assert!(err["hint"].as_str().unwrap().contains("pilot.log"), "{err}");
    assert!(std::fs::read_to_string(&log_file)
        .unwrap()
        .contains("boom: no registry"));
    assert!(!pid_file.exists(), "no PID file for a daemon that exited");

    // Start: waits until the daemon answers Info.
    let data = run(
        &[
            "--json",
            "daemon",
            "start",
            "--hostname",
            "agent-1",
            "--no-encrypt",
        ],
        fake_s,
    )
    .await
    .data();
    assert_eq!(data["node_id"], 42);
    assert_eq!(data["socket"], socket.to_str().unwrap());
    let pid = data["pid"].as_u64().unwrap();
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        pid.to_string()
    );
    assert_eq!(mode(&pid_file), 0o600);
    assert_eq!(mode(&log_file), 0o600);
    assert_eq!(mode(&home.join(".pilot")), 0o700);
    let log = std::fs::read_to_string(&log_file).unwrap();
    let identity = format!("--identity={}", home.join(".pilot/identity.key").display());
    for arg in [
        "--registry=34.71.57.205:9000",
        "--hostname=agent-1",
        "--encrypt=false",
        &identity,
    ] {
        assert!(
            log.contains(arg),
            "{arg} missing from the daemon command line: {log}"
        );
    }

    let data = run(&["--json", "daemon", "status"], fake_s).await.data();
    assert_eq!(data["running"], true);
    assert_eq!(data["responsive"], true);
    assert_eq!(data["pid"], pid);
    assert_eq!(data["address"], "0:0000.0000.002A");
    assert_eq!(run(&["daemon", "status", "--check"], fake_s).await.code, 0);
    let human: Run = run(&["daemon", "status"], fake_s).await;
    assert!(human.stdout.contains("Daemon running"), "{human:?}");

    let err = run(&["--json", "daemon", "start"], fake_s).await.error();
    assert_eq!(err["code"], "already_exists");

    // Stop: SIGTERM, wait, PID file removed.
    let data = run(&["--json", "daemon", "stop"], fake_s).await.data();
    assert_eq!(data["pid"], pid);
    assert!(data.get("forced").is_none(), "{data}");
    assert!(!pid_file.exists());

    // A stale PID file (a process that has exited) is cleaned up.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let stale = gone.id();
    gone.wait().unwrap();
    std::fs::write(&pid_file, format!("{stale}\n")).unwrap();
    let err = run(&["--json", "daemon", "stop"], fake_s).await.error();
    assert_eq!(err["code"], "not_running");
    assert!(err["message"].as_str().unwrap().contains("stale"), "{err}");
    assert!(!pid_file.exists());

    // Human mode start, and a stale socket file left by the stopped daemon is replaced.
    let run_human = run(&["daemon", "start"], fake_s).await;
    assert_eq!(run_human.code, 0, "{run_human:?}");
    assert!(
        run_human.stdout.starts_with("Daemon running (pid "),
        "{run_human:?}"
    );
    assert_eq!(run(&["daemon", "stop"], fake_s).await.code, 0);
}
