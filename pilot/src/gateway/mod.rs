//! The IP gateway: ordinary programs (curl, a browser, a database client) reach services on
//! remote agents through local IP addresses. Each mapping gives a pilot address a local IPv4
//! address; the gateway listens on that address on a set of ports and forwards every TCP
//! connection to the same port of the pilot address, through the daemon.
//!
//! - [`mapping`]: the table (local IP ↔ pilot address, allocation from a subnet), no I/O.
//! - [`proxy`]: one connection, copied both ways with bounded buffers.
//! - [`control`]: the local socket through which `pilotctl gateway map|unmap|list` reach a
//!   running gateway.
//!
//! Listening on an address needs the address to be local. Linux answers the whole of
//! 127.0.0.0/8 on the loopback interface, so a 127.x.y.z subnet works without setup; an
//! address of the reference's 10.4.0.0/16 must first be added to `lo`
//! (`sudo ip addr add 10.4.0.1/32 dev lo`), which the gateway does not do on its own.

pub mod control;
pub mod mapping;
pub mod proxy;

pub use mapping::{Mapping, MappingError, MappingTable, Subnet, DEFAULT_SUBNET};

use crate::driver::Driver;
use crate::wire::Addr;
use std::collections::BTreeMap;
use std::io;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The ports the reference gateway proxies by default.
pub const DEFAULT_PORTS: [u16; 8] = [80, 443, 1000, 1001, 1002, 7, 8080, 8443];

/// What can go wrong when mapping an address.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The mapping table refused.
    #[error(transparent)]
    Mapping(#[from] MappingError),
    /// The local IP is not an address of this machine, so nothing can listen on it.
    #[error("{ip} is not an address of this machine, so the gateway cannot listen on it")]
    NotLocal {
        /// The address.
        ip: Ipv4Addr,
    },
    /// Not one of the ports could be listened on.
    #[error("cannot listen on any port of {ip}: {reasons}")]
    NoPorts {
        /// The address.
        ip: Ipv4Addr,
        /// Per port, why not.
        reasons: String,
    },
}

impl GatewayError {
    /// What to do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            GatewayError::NotLocal { ip } => Some(format!(
                "add it to the loopback interface: sudo ip addr add {ip}/32 dev lo \
                 (or use a loopback subnet, which Linux answers without setup: --subnet 127.4.0.0/16)"
            )),
            GatewayError::NoPorts { .. } => Some(
                "ports below 1024 need root or CAP_NET_BIND_SERVICE; choose others with --ports 8080,1000"
                    .into(),
            ),
            GatewayError::Mapping(MappingError::Exhausted(_)) => {
                Some("unmap addresses, or start the gateway with a larger --subnet".into())
            }
            GatewayError::Mapping(MappingError::OutsideSubnet { subnet, .. }) => Some(format!(
                "choose an address in {subnet}, or leave it out to get the next free one"
            )),
            _ => None,
        }
    }
}

/// A port that could not be listened on, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// The port.
    pub port: u16,
    /// The operating system's reason.
    pub error: String,
}

/// A mapping and the ports it is served on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapped {
    /// The mapping.
    pub mapping: Mapping,
    /// The ports listening on `mapping.local_ip`.
    pub ports: Vec<u16>,
    /// The ports that could not be listened on.
    pub skipped: Vec<Skipped>,
}

struct Proxies {
    ports: Vec<u16>,
    skipped: Vec<Skipped>,
    accept_loops: Vec<JoinHandle<()>>,
}

impl Proxies {
    /// Stops accepting and waits until the listeners are closed, so the address refuses
    /// connections once this returns. Connections already proxied run to their end.
    async fn stop(mut self) {
        for task in std::mem::take(&mut self.accept_loops) {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for Proxies {
    fn drop(&mut self) {
        for task in &self.accept_loops {
            task.abort();
        }
    }
}

struct State {
    table: MappingTable,
    proxies: BTreeMap<Ipv4Addr, Proxies>,
}

/// A running gateway: the mapping table and one TCP listener per mapped address and port.
pub struct Gateway {
    driver: Driver,
    ports: Vec<u16>,
    state: Mutex<State>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("subnet", &self.subnet())
            .field("ports", &self.ports)
            .finish()
    }
}

impl Gateway {
    /// A gateway that hands out addresses of `subnet` and proxies `ports` (deduplicated, in
    /// the order given) through `driver`.
    pub fn new(driver: Driver, subnet: Subnet, ports: &[u16]) -> Arc<Gateway> {
        let mut unique = Vec::new();
        for &port in ports {
            if !unique.contains(&port) {
                unique.push(port);
            }
        }
        Arc::new(Gateway {
            driver,
            ports: unique,
            state: Mutex::new(State {
                table: MappingTable::new(subnet),
                proxies: BTreeMap::new(),
            }),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The subnet addresses come from.
    pub fn subnet(&self) -> Subnet {
        self.state().table.subnet()
    }

    /// The ports each mapping is proxied on.
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// Maps `addr` to `ip` (or the next free address) and starts listening on it. Mapping an
    /// address again returns its mapping as it is.
    pub async fn map(&self, addr: Addr, ip: Option<Ipv4Addr>) -> Result<Mapped, GatewayError> {
        let mapping = {
            let mut state = self.state();
            let known = state.table.reverse_lookup(addr);
            let mapping = state.table.map(addr, ip)?;
            if known.is_some() {
                let (ports, skipped) = state
                    .proxies
                    .get(&mapping.local_ip)
                    .map(|p| (p.ports.clone(), p.skipped.clone()))
                    .unwrap_or_default();
                return Ok(Mapped {
                    mapping,
                    ports,
                    skipped,
                });
            }
            mapping
        };
        match self.listen(mapping).await {
            Ok(proxies) => {
                let mapped = Mapped {
                    mapping,
                    ports: proxies.ports.clone(),
                    skipped: proxies.skipped.clone(),
                };
                let mut state = self.state();
                // Unmapped while the listeners were being set up: drop them.
                if state.table.lookup(mapping.local_ip) == Some(addr) {
                    state.proxies.insert(mapping.local_ip, proxies);
                }
                tracing::info!(local_ip = %mapping.local_ip, pilot_addr = %addr, ports = ?mapped.ports, "gateway: mapped");
                Ok(mapped)
            }
            Err(e) => {
                let mut state = self.state();
                if state.table.lookup(mapping.local_ip) == Some(addr) {
                    let _ = state.table.unmap(mapping.local_ip);
                }
                Err(e)
            }
        }
    }

    /// Binds every port on the mapping's address and starts accepting.
    async fn listen(&self, mapping: Mapping) -> Result<Proxies, GatewayError> {
        let ip = mapping.local_ip;
        let mut listeners = Vec::new();
        let mut skipped = Vec::new();
        for &port in &self.ports {
            match TcpListener::bind((ip, port)).await {
                Ok(listener) => listeners.push((port, listener)),
                Err(e) if e.kind() == io::ErrorKind::AddrNotAvailable => {
                    return Err(GatewayError::NotLocal { ip });
                }
                Err(e) => skipped.push(Skipped {
                    port,
                    error: e.to_string(),
                }),
            }
        }
        if listeners.is_empty() {
            let reasons = skipped
                .iter()
                .map(|s| format!("{}: {}", s.port, s.error))
                .collect::<Vec<_>>()
                .join("; ");
            return Err(GatewayError::NoPorts { ip, reasons });
        }
        let ports = listeners.iter().map(|(port, _)| *port).collect();
        let accept_loops = listeners
            .into_iter()
            .map(|(port, listener)| {
                let driver = self.driver.clone();
                let addr = mapping.pilot_addr;
                tokio::spawn(accept_loop(listener, driver, addr, port))
            })
            .collect();
        Ok(Proxies {
            ports,
            skipped,
            accept_loops,
        })
    }

    /// Removes the mapping of `ip` and stops listening on it; once this returns the address
    /// refuses connections.
    pub async fn unmap(&self, ip: Ipv4Addr) -> Result<Mapping, GatewayError> {
        let (mapping, proxies) = {
            let mut state = self.state();
            let mapping = state.table.unmap(ip)?;
            (mapping, state.proxies.remove(&ip))
        };
        if let Some(proxies) = proxies {
            proxies.stop().await;
        }
        tracing::info!(local_ip = %ip, pilot_addr = %mapping.pilot_addr, "gateway: unmapped");
        Ok(mapping)
    }

    /// Every mapping with its ports, in local IP order.
    pub fn list(&self) -> Vec<Mapped> {
        let state = self.state();
        state
            .table
            .all()
            .into_iter()
            .map(|mapping| {
                let proxies = state.proxies.get(&mapping.local_ip);
                Mapped {
                    mapping,
                    ports: proxies.map(|p| p.ports.clone()).unwrap_or_default(),
                    skipped: proxies.map(|p| p.skipped.clone()).unwrap_or_default(),
                }
            })
            .collect()
    }
}

async fn accept_loop(listener: TcpListener, driver: Driver, addr: Addr, port: u16) {
    loop {
        match listener.accept().await {
            Ok((tcp, _)) => {
                tokio::spawn(proxy::serve_connection(tcp, driver.clone(), addr, port));
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(port, error = %e, "gateway: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}
