//! `longlink demo`: the tutorial's story on loopback, with a chart.

use std::io::Write;
use std::time::Instant;

use longlink_core::Transport;

use crate::demo::{play, Timing};
use crate::text::duration;

/// Prints to stdout; a closed stdout (`longlink demo | head`) is not an
/// error: the rest is not shown, the exit status still tells.
fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// `longlink demo`.
pub fn main(args: &crate::cli::DemoArgs) -> std::process::ExitCode {
    let transport = if args.udp {
        Transport::Udp
    } else {
        Transport::Tcp
    };
    let started = Instant::now();
    say(&format!(
        "longlink demo: the tutorial's long connection, client and lab server on loopback ({})\n\n",
        crate::text::transport(transport)
    ));
    let (chart, report) = play(transport, Timing::default(), |s| say(&format!("{s}\n")));
    say(&format!("\n{}\n", chart.render()));
    say(&report.render());
    say(&format!("demo took {}\n", duration(started.elapsed())));
    if report.passed() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
