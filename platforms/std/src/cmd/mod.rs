//! One module per `longlink` command, each owning its `main`: option
//! handling, printing and exit status. The libraries they drive
//! ([`crate::client`], [`crate::lab`], [`crate::check`], [`crate::demo`],
//! [`crate::bench`]) know nothing of the command line.

pub mod bench;
pub mod client;
pub mod demo;
pub mod lab;
