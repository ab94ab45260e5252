//! The `longlink` binary: parses the command line and hands over to the
//! command's module.
#![forbid(unsafe_code)]

use clap::Parser;
use longlink_std::cli::{Cli, Command};
use longlink_std::cmd;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The demo and the benchmark print their own report; their log (errors
    // aside) is opt-in with -v, -vv.
    let quiet = match cli.command {
        Command::Demo(_) | Command::Bench(_) | Command::BareEcho { .. } => {
            cli.quiet.saturating_add(2)
        }
        _ => cli.quiet,
    };
    longlink_std::logger::init(longlink_std::logger::level(quiet, cli.verbose));
    match &cli.command {
        Command::Client(args) => cmd::client::main(args),
        Command::Lab(args) => cmd::lab::main(args),
        Command::Demo(args) => cmd::demo::main(args),
        Command::Bench(args) => cmd::bench::main(args),
        Command::BareEcho { addr } => cmd::bench::bare_echo(*addr),
    }
}
