//! Shared helpers for longlink's end-to-end tests and simulator.
#![forbid(unsafe_code)]

pub mod server;
/// The fault simulator, published as `longlink-sim`; the project's sweep
/// is its first user.
pub use longlink_sim as sim;

use std::net::SocketAddr;

use longlink_core::Config;

/// A server address and the config of a client of it: the two things a
/// driver is started with (the core's config holds no address). Derefs to
/// the config, so tests adjust it in place.
#[derive(Clone, Debug)]
pub struct Setup {
    /// The server.
    pub addr: SocketAddr,
    /// The client's policy.
    pub config: Config,
}

impl std::ops::Deref for Setup {
    type Target = Config;
    fn deref(&self) -> &Config {
        &self.config
    }
}

impl std::ops::DerefMut for Setup {
    fn deref_mut(&mut self) -> &mut Config {
        &mut self.config
    }
}
