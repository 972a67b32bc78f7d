//! The command table and dispatch. The table feeds the parser (clap), the help, the shell
//! completions and `pilotctl context`, so what the help says and what runs cannot drift apart.
//!
//! Adding a command: one [`Spec`] in [`COMMANDS`] (a two-word name such as `"gateway map"`
//! makes a sub-command of `gateway`; positionals come from the `<x>`/`[x]` entries of `args`,
//! flags from `flags`) and one arm in [`dispatch`] calling its handler.

mod broadcast;
mod completions;
mod context;
mod daemon;
mod disconnect;
mod gateway;
mod messages;
mod names;
mod probe;
mod pubsub;
mod registry;
mod setup;
mod status;
mod stream;
mod tasks;
mod trust;
mod webhook;

use super::args::{switch, value, Args, Flag};
use super::output::{CliError, Code, Success};
use super::Ctx;

/// One command: its name, arguments, flags, and what it prints.
pub struct Spec {
    /// The name (`"daemon start"` for sub-commands).
    pub name: &'static str,
    /// Argument synopsis, one entry per argument or flag.
    pub args: &'static [&'static str],
    /// What it does.
    pub description: &'static str,
    /// The keys of its JSON `data`.
    pub returns: &'static str,
    /// Command lines shown by `pilotctl help <command>`.
    pub examples: &'static [&'static str],
    /// Flags it accepts.
    pub flags: &'static [Flag],
}

const DAEMON_START_FLAGS: &[Flag] = &[
    value("config"),
    value("registry"),
    value("standby-registry"),
    value("beacon"),
    value("listen"),
    value("socket"),
    value("identity"),
    value("owner"),
    value("hostname"),
    value("log-level"),
    value("log-format"),
    value("webhook"),
    switch("public"),
    switch("no-encrypt"),
    switch("foreground"),
];

/// Every command, in the order `context` lists them.
pub const COMMANDS: &[Spec] = &[
    Spec { name: "init", args: &["[--registry addr]", "[--beacon addr]", "[--hostname name]", "[--socket path]"], description: "Write the settings daemon start uses into $HOME/.pilot/config.json", returns: "config_path, registry, beacon, socket, hostname", examples: &["pilotctl init --registry 127.0.0.1:9000 --beacon 127.0.0.1:9001 --hostname alice"], flags: &[value("registry"), value("beacon"), value("hostname"), value("socket")] },
    Spec { name: "config", args: &["[--set key=value]"], description: "Show the settings, or set one (registry, beacon, socket, hostname, webhook, owner)", returns: "set: key, value; show: the settings, config_path, pid_file, log_file", examples: &["pilotctl config", "pilotctl config --set hostname=alice"], flags: &[value("set")] },
    Spec { name: "daemon start", args: &["[--registry addr]", "[--standby-registry addr]", "[--beacon addr]", "[--listen addr]", "[--socket path]", "[--identity path]", "[--owner email]", "[--hostname name]", "[--log-level level]", "[--log-format text|json]", "[--public]", "[--no-encrypt]", "[--webhook url]", "[--config path]", "[--foreground]"], description: "Start the daemon in the background and wait until it answers", returns: "pid, node_id, address, hostname, socket, log_file", examples: &["pilotctl daemon start", "pilotctl daemon start --registry 127.0.0.1:9000 --hostname alice --public"], flags: DAEMON_START_FLAGS },
    Spec { name: "daemon stop", args: &[], description: "Stop the daemon started by pilotctl (SIGTERM, then SIGKILL after 10s)", returns: "pid, forced (if killed)", examples: &["pilotctl daemon stop"], flags: &[] },
    Spec { name: "daemon status", args: &["[--check]"], description: "Whether the daemon runs and answers; --check: exit 0 if it answers, else 1, silently", returns: "running, responsive, pid, pid_file, socket [, node_id, address, hostname, uptime_secs, peers, connections, registry, registry_standby]", examples: &["pilotctl daemon status", "pilotctl daemon status --check && echo up"], flags: &[switch("check")] },
    Spec { name: "info", args: &[], description: "The daemon's status: address, tags, peers, connections, traffic", returns: "the daemon's Info JSON, plus tags (own) and peer_list[].tags", examples: &["pilotctl info", "pilotctl --json info"], flags: &[] },
    Spec { name: "peers", args: &["[--search query]"], description: "Tunnel peers with their tags (search: substring of node ID, endpoint or a tag)", returns: "peers[node_id, endpoint, encrypted, authenticated, tags], total", examples: &["pilotctl peers", "pilotctl peers --search 127.0.0.1"], flags: &[value("search")] },
    Spec { name: "connections", args: &[], description: "Open connections with transport statistics", returns: "connections, total", examples: &["pilotctl connections"], flags: &[] },
    Spec { name: "lookup", args: &["<node_id>"], description: "A node's public registry record, asked directly (no daemon needed)", returns: "the registry's lookup reply", examples: &["pilotctl lookup 42"], flags: &[] },
    Spec { name: "find", args: &["<hostname>"], description: "Look a hostname up in the registry", returns: "hostname, node_id, address, public, tags", examples: &["pilotctl find alice"], flags: &[] },
    Spec { name: "set-hostname", args: &["<name>"], description: "Set this node's hostname (also saved in the config)", returns: "hostname, node_id", examples: &["pilotctl set-hostname alice"], flags: &[] },
    Spec { name: "clear-hostname", args: &[], description: "Remove this node's hostname (also from the config)", returns: "hostname", examples: &["pilotctl clear-hostname"], flags: &[] },
    Spec { name: "set-tags", args: &["<t1>", "[t2]", "[t3]"], description: "Set this node's tags (at most 3), shown by find and lookups", returns: "node_id, tags", examples: &["pilotctl set-tags gpu inference"], flags: &[] },
    Spec { name: "clear-tags", args: &[], description: "Remove this node's tags", returns: "node_id, tags", examples: &["pilotctl clear-tags"], flags: &[] },
    Spec { name: "deregister", args: &[], description: "Remove this node from the registry until the daemon registers again", returns: "type", examples: &["pilotctl deregister"], flags: &[] },
    Spec { name: "set-public", args: &[], description: "Make this node's endpoint resolvable by anyone", returns: "type, node_id, visibility", examples: &["pilotctl set-public"], flags: &[] },
    Spec { name: "set-private", args: &[], description: "Make this node's endpoint resolvable only by trusted peers", returns: "type, node_id, visibility", examples: &["pilotctl set-private"], flags: &[] },
    Spec { name: "handshake", args: &["<node_id|address|hostname>", "[justification]"], description: "Ask a node to trust this one", returns: "status, node_id", examples: &["pilotctl handshake alice \"we work together\"", "pilotctl handshake 0:0000.0000.002A"], flags: &[] },
    Spec { name: "pending", args: &[], description: "Trust requests waiting for your approval", returns: "pending[node_id, public_key, justification, received_at]", examples: &["pilotctl pending"], flags: &[] },
    Spec { name: "approve", args: &["<node_id>"], description: "Approve a pending trust request", returns: "status, node_id", examples: &["pilotctl approve 42"], flags: &[] },
    Spec { name: "reject", args: &["<node_id>", "[reason]"], description: "Reject a pending trust request", returns: "status, node_id", examples: &["pilotctl reject 42 \"unknown to me\""], flags: &[] },
    Spec { name: "trust", args: &[], description: "Trusted peers", returns: "trusted[node_id, public_key, approved_at, mutual, network]", examples: &["pilotctl trust"], flags: &[] },
    Spec { name: "untrust", args: &["<node_id>"], description: "Revoke trust in a node", returns: "node_id", examples: &["pilotctl untrust 42"], flags: &[] },
    Spec { name: "connect", args: &["<target>", "[port=1000]", "[--message msg]", "[--timeout 30s]"], description: "Open a stream, send one message (or stdin), print one reply", returns: "target, port, sent, response", examples: &["pilotctl connect alice 1000 --message hello", "echo hello | pilotctl connect 42"], flags: &[value("message"), value("timeout")] },
    Spec { name: "send", args: &["<target>", "<port>", "--data data", "[--timeout 30s]"], description: "Open a stream to a port, send data, print one reply", returns: "target, port, sent, response", examples: &["pilotctl send alice 1000 --data hello --timeout 10s"], flags: &[value("data"), value("timeout")] },
    Spec { name: "recv", args: &["<port>", "[--count 1]", "[--timeout 30s]"], description: "Listen on a port and print one message from each inbound connection", returns: "messages[seq, port, data, bytes | error], timeout", examples: &["pilotctl recv 1000 --count 2 --timeout 1m"], flags: &[value("count"), value("timeout")] },
    Spec { name: "listen", args: &["<port>", "[--count 0]", "[--timeout 0]"], description: "Print datagrams sent to a port (count 0: unbounded, one line each, NDJSON with --json)", returns: "messages[src_addr, src_port, data, bytes], timeout", examples: &["pilotctl listen 5000 --count 10", "pilotctl --json listen 5000"], flags: &[value("count"), value("timeout")] },
    Spec { name: "ping", args: &["<target>", "[--count 4]", "[--interval 1s]", "[--timeout 30s]"], description: "Round trips to the echo service (port 7); each probe dials, so RTT includes setup", returns: "target, results[seq, rtt_ms, bytes | error], sent, received, min_ms, avg_ms, max_ms, timeout", examples: &["pilotctl ping alice", "pilotctl ping 42 --count 10 --interval 200ms"], flags: &[value("count"), value("interval"), value("timeout")] },
    Spec { name: "traceroute", args: &["<address>", "[--timeout 30s]"], description: "Connection setup time to the echo service, then 3 round trips over that one connection", returns: "target, setup_ms, rtt_samples[rtt_ms, bytes | error]", examples: &["pilotctl traceroute 0:0000.0000.002A"], flags: &[value("timeout")] },
    Spec { name: "bench", args: &["<target>", "[size_mb=1]", "[--timeout 120s]"], description: "Throughput to the echo service (port 7), sending and reading back concurrently", returns: "target, sent_bytes, recv_bytes, send_duration_ms, total_duration_ms, send_mbps, total_mbps", examples: &["pilotctl bench alice", "pilotctl bench 42 16 --timeout 5m"], flags: &[value("timeout")] },
    Spec { name: "send-message", args: &["<target>", "--data data", "[--type text|json|binary]"], description: "Send a message to a node's inbox (data exchange, port 1001) and wait for its ACK", returns: "target, type, bytes, ack", examples: &["pilotctl send-message alice --data hello", "pilotctl send-message 42 --data '{\"k\":1}' --type json"], flags: &[value("data"), value("type")] },
    Spec { name: "send-file", args: &["<target>", "<path>"], description: "Send a file to a node's received folder (port 1001), streamed, with progress; waits for the ACK", returns: "filename, bytes, destination, ack, duration_ms, mbps", examples: &["pilotctl send-file alice ./report.pdf"], flags: &[] },
    Spec { name: "broadcast", args: &["<network_id>", "<message>", "[--timeout 30s]"], description: "Send a message to the inbox of every trusted peer on a network (0: all), reporting each peer", returns: "network_id, message, delivered, failed, peers[node_id, status, ack | error]", examples: &["pilotctl broadcast 0 \"maintenance at noon\""], flags: &[value("timeout")] },
    Spec { name: "publish", args: &["<target>", "<topic>", "--data data"], description: "Publish one event on a topic of a node's event stream (port 1002)", returns: "target, topic, bytes", examples: &["pilotctl publish alice metrics --data '{\"cpu\":0.5}'"], flags: &[value("data")] },
    Spec { name: "subscribe", args: &["<target>", "<topic>", "[--count 0]", "[--timeout 0]"], description: "Print events on a topic (\"*\": all) of a node's event stream (port 1002); count 0: stream until the timeout (0: none), as NDJSON with --json", returns: "events[topic, data, bytes], timeout [, error] (count > 0); one {topic, data, bytes} per line (count 0)", examples: &["pilotctl subscribe alice metrics --count 5", "pilotctl --json subscribe alice '*' --timeout 1m"], flags: &[value("count"), value("timeout")] },
    Spec { name: "inbox", args: &["[--clear]"], description: "Messages received through data exchange ($HOME/.pilot/inbox); --clear deletes them", returns: "messages[type, from, data, bytes, received_at], total, dir | cleared", examples: &["pilotctl inbox", "pilotctl inbox --clear"], flags: &[switch("clear")] },
    Spec { name: "received", args: &["[--clear]"], description: "Files received through data exchange ($HOME/.pilot/received); --clear deletes them", returns: "files[name, bytes, modified, path], total, dir | cleared", examples: &["pilotctl received", "pilotctl received --clear"], flags: &[switch("clear")] },
    Spec { name: "set-webhook", args: &["<url>"], description: "Post daemon events to this URL (saved in the config, applied to a running daemon)", returns: "webhook, applied [, not_applied]", examples: &["pilotctl set-webhook https://example.com/hook"], flags: &[] },
    Spec { name: "clear-webhook", args: &[], description: "Stop posting daemon events (removed from the config and the running daemon)", returns: "webhook, applied [, not_applied]", examples: &["pilotctl clear-webhook"], flags: &[] },
    Spec { name: "task submit", args: &["<target>", "--task description"], description: "Submit a task to a node (port 1003); it answers 200 (queued as NEW) or 400", returns: "target, task_id, task, status, message, accepted", examples: &["pilotctl task submit alice --task \"summarise the logs\""], flags: &[value("task")] },
    Spec { name: "task accept", args: &["--id task_id"], description: "Accept a NEW received task (within 60 s) and queue it", returns: "task_id, status, message", examples: &["pilotctl task accept --id <task_id>"], flags: &[value("id")] },
    Spec { name: "task decline", args: &["--id task_id", "--justification text"], description: "Decline a NEW received task", returns: "task_id, status, justification, message", examples: &["pilotctl task decline --id <task_id> --justification \"too busy\""], flags: &[value("id"), value("justification")] },
    Spec { name: "task execute", args: &[], description: "Start the task at the head of the queue (first accepted)", returns: "task_id, task_description, status, from", examples: &["pilotctl task execute"], flags: &[] },
    Spec { name: "task send-results", args: &["--id task_id", "--results text | --file path"], description: "Send a task's results to its submitter", returns: "task_id, status, sent_to, sent_type [, filename, file_size]", examples: &["pilotctl task send-results --id <task_id> --results done", "pilotctl task send-results --id <task_id> --file out.txt"], flags: &[value("id"), value("results"), value("file")] },
    Spec { name: "task list", args: &["[--type received|submitted]"], description: "Tasks in $HOME/.pilot/tasks", returns: "tasks[task_id, description, status, from, to, created_at, category]", examples: &["pilotctl task list", "pilotctl task list --type received"], flags: &[value("type")] },
    Spec { name: "task queue", args: &[], description: "Accepted tasks waiting for execution, first accepted first", returns: "queue[task_id, description, from, created_at], count", examples: &["pilotctl task queue"], flags: &[] },
    Spec { name: "enable-tasks", args: &[], description: "Advertise in the registry that this node executes tasks", returns: "type, node_id, task_exec", examples: &["pilotctl enable-tasks"], flags: &[] },
    Spec { name: "disable-tasks", args: &[], description: "Stop advertising task execution", returns: "type, node_id, task_exec", examples: &["pilotctl disable-tasks"], flags: &[] },
    Spec { name: "register", args: &["[listen_addr]", "[--identity path]"], description: "Register this node's key with the registry directly, signed with its identity file (created if missing)", returns: "the registry's register reply: type, node_id, address, public_key, network_id", examples: &["pilotctl register", "pilotctl register 203.0.113.7:4000 --identity ~/.pilot/identity.json"], flags: &[value("identity")] },
    Spec { name: "rotate-key", args: &["<node_id>", "[owner]", "[--identity path]"], description: "Give the node a new key, signed with its current one; the identity file is replaced once the registry accepts", returns: "the registry's rotate_key reply: type, node_id, address, public_key", examples: &["pilotctl rotate-key 42"], flags: &[value("identity")] },
    Spec { name: "disconnect", args: &["<conn_id>"], description: "Close one of the daemon's connections (IDs as connections lists them)", returns: "conn_id", examples: &["pilotctl disconnect 3"], flags: &[] },
    Spec { name: "gateway start", args: &["[--subnet 10.4.0.0/16]", "[--ports 80,443,1000,1001,1002,7,8080,8443]", "[<pilot-addr>...]"], description: "Run the IP gateway in the foreground: TCP to a mapped local IP goes to the same port of its pilot address", returns: "pid, subnet, ports, mappings[local_ip, pilot_addr, ports, skipped]", examples: &["pilotctl gateway start 0:0000.0000.002A", "pilotctl gateway start --subnet 127.4.0.0/16 --ports 8080 alice"], flags: &[value("subnet"), value("ports")] },
    Spec { name: "gateway stop", args: &[], description: "Stop the running gateway", returns: "pid, forced (if killed)", examples: &["pilotctl gateway stop"], flags: &[] },
    Spec { name: "gateway map", args: &["<pilot-addr>", "[local-ip]"], description: "Map a pilot address to a local IP (the next free one if not given) in the running gateway", returns: "local_ip, pilot_addr, ports, skipped", examples: &["pilotctl gateway map 0:0000.0000.002A", "pilotctl gateway map alice 10.4.0.9"], flags: &[] },
    Spec { name: "gateway unmap", args: &["<local-ip>"], description: "Remove a mapping from the running gateway", returns: "unmapped, pilot_addr", examples: &["pilotctl gateway unmap 10.4.0.9"], flags: &[] },
    Spec { name: "gateway list", args: &[], description: "The running gateway's mappings", returns: "mappings[local_ip, pilot_addr, ports, skipped], total", examples: &["pilotctl gateway list"], flags: &[] },
    Spec { name: "completions", args: &["<bash|zsh|fish>"], description: "A shell completion script for pilotctl, on stdout", returns: "the script (not enveloped)", examples: &["pilotctl completions bash > /etc/bash_completion.d/pilotctl", "pilotctl completions zsh > \"${fpath[1]}/_pilotctl\"", "pilotctl completions fish > ~/.config/fish/completions/pilotctl.fish"], flags: &[] },
    Spec { name: "context", args: &[], description: "Every command with its arguments and output, error codes, environment", returns: "version, commands, error_codes, global_flags, environment, config_file", examples: &["pilotctl context", "pilotctl --json context"], flags: &[] },
];

/// The command called `name`.
pub fn find(name: &str) -> Option<&'static Spec> {
    COMMANDS.iter().find(|c| c.name == name)
}

/// Runs command `spec` with its parsed `args`.
pub async fn dispatch(ctx: &Ctx, spec: &Spec, args: &Args) -> Result<Success, CliError> {
    match spec.name {
        "init" => setup::init(ctx, args).await,
        "config" => setup::show_or_set(ctx, args).await,
        "lookup" => setup::lookup(ctx, args).await,
        "daemon start" => daemon::start(ctx, args).await,
        "daemon stop" => daemon::stop(ctx, args).await,
        "daemon status" => daemon::status(ctx, args).await,
        "info" => status::info(ctx, args).await,
        "peers" => status::peers(ctx, args).await,
        "connections" => status::connections(ctx, args).await,
        "find" => names::find(ctx, args).await,
        "set-hostname" => names::set_hostname(ctx, args).await,
        "clear-hostname" => names::clear_hostname(ctx, args).await,
        "set-tags" => names::set_tags(ctx, args).await,
        "clear-tags" => names::clear_tags(ctx, args).await,
        "deregister" => names::deregister(ctx, args).await,
        "set-public" => names::set_visibility(ctx, args, true).await,
        "set-private" => names::set_visibility(ctx, args, false).await,
        "handshake" => trust::handshake(ctx, args).await,
        "pending" => trust::pending(ctx, args).await,
        "approve" => trust::approve(ctx, args).await,
        "reject" => trust::reject(ctx, args).await,
        "trust" => trust::trusted(ctx, args).await,
        "untrust" => trust::untrust(ctx, args).await,
        "connect" => stream::connect(ctx, args).await,
        "send" => stream::send(ctx, args).await,
        "recv" => stream::recv(ctx, args).await,
        "listen" => stream::listen(ctx, args).await,
        "ping" => probe::ping(ctx, args).await,
        "traceroute" => probe::traceroute(ctx, args).await,
        "bench" => probe::bench(ctx, args).await,
        "send-message" => messages::send_message(ctx, args).await,
        "send-file" => messages::send_file(ctx, args).await,
        "broadcast" => broadcast::broadcast(ctx, args).await,
        "publish" => pubsub::publish(ctx, args).await,
        "subscribe" => pubsub::subscribe(ctx, args).await,
        "inbox" => messages::inbox(ctx, args).await,
        "received" => messages::received(ctx, args).await,
        "set-webhook" => webhook::set_webhook(ctx, args).await,
        "clear-webhook" => webhook::clear_webhook(ctx, args).await,
        "task submit" => tasks::submit(ctx, args).await,
        "task accept" => tasks::accept(ctx, args).await,
        "task decline" => tasks::decline(ctx, args).await,
        "task execute" => tasks::execute(ctx, args).await,
        "task send-results" => tasks::send_results(ctx, args).await,
        "task list" => tasks::list(ctx, args).await,
        "task queue" => tasks::queue_cmd(ctx, args).await,
        "enable-tasks" => tasks::set_task_exec(ctx, args, true).await,
        "disable-tasks" => tasks::set_task_exec(ctx, args, false).await,
        "register" => registry::register(ctx, args).await,
        "rotate-key" => registry::rotate_key(ctx, args).await,
        "disconnect" => disconnect::disconnect(ctx, args).await,
        "gateway start" => gateway::start(ctx, args).await,
        "gateway stop" => gateway::stop(ctx, args).await,
        "gateway map" => gateway::map(ctx, args).await,
        "gateway unmap" => gateway::unmap(ctx, args).await,
        "gateway list" => gateway::list(ctx, args).await,
        "context" => context::context(args),
        "completions" => completions::completions(args),
        other => Err(CliError::new(
            Code::Internal,
            format!("command {other} has no handler"),
        )),
    }
}
