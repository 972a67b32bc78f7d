//! What a NAT box does, behaviour by behaviour (RFC 4787 §4-§5).

use serde::Deserialize;
use std::fmt;
use std::time::Duration;

/// How the box picks the public endpoint for an outbound packet (RFC 4787 §4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mapping {
    /// One public endpoint per inside endpoint, whatever the destination.
    EndpointIndependent,
    /// One public endpoint per inside endpoint and destination IP.
    AddressDependent,
    /// One public endpoint per inside endpoint and destination IP and port ("symmetric").
    AddressAndPortDependent,
}

/// Which inbound packets a mapping lets through (RFC 4787 §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Filtering {
    /// Any remote endpoint.
    EndpointIndependent,
    /// Remote endpoints whose IP the inside endpoint has sent to.
    AddressDependent,
    /// Exactly the remote endpoints the inside endpoint has sent to.
    AddressAndPortDependent,
}

/// How the box chooses a public port for a new mapping (RFC 4787 §4.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PortAllocation {
    /// The inside port when it is free on the public side, else the next sequential port.
    Preserving,
    /// Ports in order from the bottom of the public range.
    Sequential,
    /// Uniformly random free ports, from the box's seeded generator.
    Random,
}

/// The presets of `DESIGN.md` that describe a single box.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// Endpoint-independent mapping and filtering.
    FullCone,
    /// Endpoint-independent mapping, address-dependent filtering.
    RestrictedCone,
    /// Endpoint-independent mapping, address-and-port-dependent filtering.
    PortRestrictedCone,
    /// Address-and-port-dependent mapping and filtering, random ports.
    Symmetric,
}

/// Everything that decides how one NAT box behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NatConfig {
    /// Mapping behaviour.
    pub mapping: Mapping,
    /// Filtering behaviour.
    pub filtering: Filtering,
    /// Whether an inside host can reach another inside host through the box's public address.
    pub hairpinning: bool,
    /// Port allocation.
    pub ports: PortAllocation,
    /// How long a mapping lives after the last outbound packet that used it.
    pub lifetime: Duration,
}

/// The mapping lifetime of `DESIGN.md` (RFC 4787 REQ-5 asks for at least two minutes; many
/// boxes in the field use far less, which is what hole punching must survive).
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(30);

impl NatConfig {
    /// The box a preset names: port preservation for the cones, hairpinning off.
    pub fn preset(preset: Preset) -> Self {
        use Filtering as F;
        use Mapping as M;
        let (mapping, filtering, ports) = match preset {
            Preset::FullCone => (
                M::EndpointIndependent,
                F::EndpointIndependent,
                PortAllocation::Preserving,
            ),
            Preset::RestrictedCone => (
                M::EndpointIndependent,
                F::AddressDependent,
                PortAllocation::Preserving,
            ),
            Preset::PortRestrictedCone => (
                M::EndpointIndependent,
                F::AddressAndPortDependent,
                PortAllocation::Preserving,
            ),
            Preset::Symmetric => (
                M::AddressAndPortDependent,
                F::AddressAndPortDependent,
                PortAllocation::Random,
            ),
        };
        NatConfig {
            mapping,
            filtering,
            hairpinning: false,
            ports,
            lifetime: DEFAULT_LIFETIME,
        }
    }
}

impl fmt::Display for Mapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mapping::EndpointIndependent => "EIM",
            Mapping::AddressDependent => "ADM",
            Mapping::AddressAndPortDependent => "APDM",
        })
    }
}

impl fmt::Display for Filtering {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Filtering::EndpointIndependent => "EIF",
            Filtering::AddressDependent => "ADF",
            Filtering::AddressAndPortDependent => "APDF",
        })
    }
}
