//! Benchmarks (being written).
/// `longlink bench`.
pub fn main(_: &crate::cli::BenchArgs) -> std::process::ExitCode {
    std::process::ExitCode::FAILURE
}
