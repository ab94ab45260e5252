//! `longlink bench` and its hidden floor `bare-echo`.

/// `longlink bench`.
pub fn main(args: &crate::cli::BenchArgs) -> std::process::ExitCode {
    crate::bench::main(args)
}

/// `longlink bare-echo ADDR` (the benchmark's baseline client).
pub fn bare_echo(addr: std::net::SocketAddr) -> std::process::ExitCode {
    crate::bench::bare_echo(addr)
}
