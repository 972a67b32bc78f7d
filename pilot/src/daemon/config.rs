//! How a daemon runs: the reference daemon's flags (`spec/services.md` §2.1) as a struct.

use std::net::SocketAddr;
use std::time::Duration;

/// A daemon's settings. [`DaemonConfig::new`] gives the defaults for a registry address.
#[derive(Clone, Debug)]
pub struct DaemonConfig {
    /// The registry (`-registry`).
    pub registry: SocketAddr,
    /// A standby registry to fail over to when the primary is unreachable.
    pub standby_registry: Option<SocketAddr>,
    /// TLS pin of the registry certificate (SHA-256, hex); `None` = plain TCP.
    pub registry_tls_pin: Option<String>,
    /// The beacon (`-beacon`); `None` disables hole punching, relay and endpoint discovery.
    pub beacon: Option<SocketAddr>,
    /// The tunnel socket's address (`-listen`).
    pub listen: SocketAddr,
    /// A fixed public endpoint (`-endpoint`): registered as is, no discovery.
    pub endpoint: Option<SocketAddr>,
    /// Tunnel encryption (`-encrypt`).
    pub encrypt: bool,
    /// Accept plaintext from peers without a key (Go peers run with `-encrypt=false`).
    pub accept_plaintext: bool,
    /// Resolvable by anyone (`-public`).
    pub public: bool,
    /// Hostname to register (`-hostname`).
    pub hostname: String,
    /// Owner e-mail (`-owner`).
    pub owner: String,
    /// The identity's name in the daemon's storage; `None`: a fresh identity every start and no
    /// trust file (`-identity ""`).
    pub identity: Option<String>,
    /// Heartbeat and relay-poll interval (`-keepalive`).
    pub keepalive: Duration,
    /// Idle connection timeout (`-idle-timeout`).
    pub idle_timeout: Duration,
    /// A tunnel peer with no data either way for this long is forgotten, and set up again by
    /// the next packet (`-peer-idle-expiry`; ours: the reference keeps peers for ever).
    pub peer_idle_expiry: Duration,
    /// SYNs per second in all (`-syn-rate-limit`).
    pub syn_rate_limit: u32,
    /// Live inbound connections per port (`-max-conns-per-port`).
    pub max_conns_per_port: usize,
    /// Live inbound connections in all (`-max-conns-total`).
    pub max_conns_total: usize,
    /// TIME_WAIT (`-time-wait`).
    pub time_wait: Duration,
    /// The echo service on port 7 (`-no-echo` turns it off).
    pub echo: bool,
    /// Where events are POSTed (`-webhook`; empty: nowhere).
    pub webhook: String,
    /// Data exchange on port 1001, storing into this mailbox (`-no-dataexchange`: `None`).
    pub mailbox: Option<std::sync::Arc<dyn crate::services::dataexchange::Mailbox>>,
    /// How much one peer may store through data exchange.
    pub exchange_quota: crate::services::dataexchange::quota::QuotaConfig,
    /// The event stream on port 1002 (`-no-eventstream` turns it off).
    pub eventstream: bool,
    /// Task submit on port 1003 over these folders (`-no-tasksubmit`: `None`).
    pub tasks: Option<crate::services::tasks::TaskConfig>,
    /// Kernel buffer size asked for on the tunnel socket, each direction.
    pub socket_buffer: usize,
}

impl DaemonConfig {
    /// Defaults (the reference's) for a daemon using the registry at `registry`.
    pub fn new(registry: SocketAddr) -> Self {
        DaemonConfig {
            registry,
            standby_registry: None,
            registry_tls_pin: None,
            beacon: None,
            listen: SocketAddr::from(([0, 0, 0, 0], 0)),
            endpoint: None,
            encrypt: true,
            accept_plaintext: false,
            public: false,
            hostname: String::new(),
            owner: String::new(),
            identity: None,
            keepalive: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            peer_idle_expiry: crate::tunnel::Timing::default().peer_idle_expiry,
            syn_rate_limit: 100,
            max_conns_per_port: 1024,
            max_conns_total: 4096,
            time_wait: Duration::from_secs(10),
            echo: true,
            webhook: String::new(),
            mailbox: None,
            exchange_quota: Default::default(),
            eventstream: true,
            tasks: None,
            socket_buffer: 4 << 20,
        }
    }
}
