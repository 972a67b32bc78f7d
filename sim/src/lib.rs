//! Simulated internet (in progress)
