//! The `longlink` binary (being written).
fn main() {
    eprintln!("longlink: not yet implemented");
    std::process::exit(2);
}
