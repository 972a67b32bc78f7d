//! A deterministic simulated internet for Pilot Protocol, on turmoil.
pub mod nat;
