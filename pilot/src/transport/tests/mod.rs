//! Tests that drive two connections through an in-memory link in virtual time.

mod endpoint;
mod harness;
mod interop;
mod loss;
mod quirks;
mod recovery;
mod stream;
