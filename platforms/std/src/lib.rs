//! # longlink-std
//!
//! The desktop `longlink` tool, as a library: the [`client`] (the embedded
//! `longlink-nal-async` driver over `std-embedded-nal-async`, so a laptop
//! runs the hardware code path), the [`lab`] test server and its
//! acceptance script ([`check`]), the [`demo`], and [benchmarks](mod@bench).
//! Each command's `main` (options, printing, exit status) lives in [`cmd`];
//! [`cli`] only parses the command line.
//!
//! ```text
//! longlink client tcp://127.0.0.1:50798 --heartbeat 10s --framing lines
//! longlink client tls://example.com:50799 [--ca ca.pem] [--cert c.pem --key k.pem]
//! longlink client tcp://127.0.0.1:50798 --output json --count 1 --timeout 30s
//! echo "11 22 33" | longlink client tcp://127.0.0.1:50798 --input hex --exit-on-eof
//! longlink lab --listen localhost:50798 [--udp] [--check [--json]] [--output hex|json]
//! longlink lab --tls --cert server.pem --key server.key [--client-ca ca.pem]
//! longlink demo
//! longlink bench --idle 30s --samples 1000
//! ```
#![forbid(unsafe_code)]

pub mod bench;
pub mod check;
pub mod cli;
pub mod client;
pub mod clock;
pub mod cmd;
pub mod demo;
pub mod device_tls;
pub mod lab;
pub mod logger;
pub mod tcp;
pub mod text;
pub mod tls;
