//! The `longlink` binary: parses the command line and hands over to the
//! library.
#![forbid(unsafe_code)]

use clap::Parser;
use longlink_std::cli::{Cli, Command};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The demo and the benchmark print their own report; their log is
    // opt-in with -v.
    let quiet = match cli.command {
        Command::Demo(_) | Command::Bench(_) | Command::BareEcho { .. } => {
            cli.quiet.saturating_add(1)
        }
        _ => cli.quiet,
    };
    longlink_std::logger::init(longlink_std::logger::level(quiet, cli.verbose));
    match &cli.command {
        Command::Client(args) => longlink_std::client::main(args),
        Command::Lab(args) => longlink_std::lab::main(args),
        Command::Demo(args) => longlink_std::demo::main(args),
        Command::Bench(args) => longlink_std::bench::main(args),
        Command::BareEcho { addr } => longlink_std::bench::bare_echo(*addr),
    }
}
