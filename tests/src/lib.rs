//! Shared helpers for longlink's end-to-end tests and simulator.
#![forbid(unsafe_code)]

pub mod server;
pub mod sim;
