//! `longlink demo`: the tutorial's story on loopback, with a chart.

use std::time::Instant;

use longlink_core::Transport;

use crate::demo::{play, Timing};
use crate::text::duration;

/// `longlink demo`.
pub fn main(args: &crate::cli::DemoArgs) -> std::process::ExitCode {
    let transport = if args.udp {
        Transport::Udp
    } else {
        Transport::Tcp
    };
    let started = Instant::now();
    println!("longlink demo: the tutorial's long connection, client and lab server on loopback ({transport:?})\n");
    let (chart, report) = play(transport, Timing::default(), |s| println!("{s}"));
    println!("\n{}", chart.render());
    print!("{}", report.render());
    println!("demo took {}", duration(started.elapsed()));
    if report.passed() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
