//! `longlink lab` and `longlink lab --check`.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use log::{info, warn};
use longlink_core::Transport;

use crate::check::{run, CheckOptions};
use crate::lab::{read_lines, summary_acked, Lab, LabEvent};

/// `longlink lab`: prints what clients send, sends them stdin lines; with
/// `--check` runs the acceptance script. SIGINT/SIGTERM end it with a
/// summary.
pub fn main(args: &crate::cli::LabArgs) -> std::process::ExitCode {
    let transport = if args.udp {
        Transport::Udp
    } else {
        Transport::Tcp
    };
    let tls = match args.tls_config() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("longlink lab: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let secure = tls.is_some();
    let limits = args.limits();
    let framing = args.framing();
    let started = if args.acked {
        Lab::start_acked(args.listen, transport, framing, tls, limits)
    } else {
        Lab::start_with(args.listen, transport, framing, tls, limits)
    };
    let lab = match started {
        Ok(l) => Arc::new(l),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
            eprintln!("longlink lab: {e}");
            return std::process::ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("longlink lab: cannot listen on {}: {e}", args.listen);
            return std::process::ExitCode::from(2);
        }
    };
    {
        let lab = lab.clone();
        if let Err(e) = ctrlc::set_handler(move || lab.interrupt()) {
            warn!("no signal handler ({e}); stop with kill -9");
        }
    }
    let code = if args.check {
        check(&lab, args)
    } else {
        serve(&lab, transport, secure)
    };
    lab.halt();
    eprintln!("{}", summary_acked(&lab.stats(), lab.uptime(), lab.acked()));
    code
}

/// Prints events until interrupted; a stdin thread broadcasts lines.
fn serve(lab: &Arc<Lab>, transport: Transport, secure: bool) -> std::process::ExitCode {
    let limits = lab.limits();
    let banner = format!(
        "longlink lab: {:?}{}{} on {} ({:?} framing); type a line to send it to every client\n",
        transport,
        if secure { " + TLS" } else { "" },
        if lab.acked() {
            ", acknowledged delivery"
        } else {
            ""
        },
        lab.local_addr(),
        lab.framing()
    );
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout());
    let _ = out.write_all(banner.as_bytes());
    let _ = out.flush();
    info!(
        "at most {} clients{}; lab buffers bounded at {} MiB",
        limits.max_clients,
        limits
            .idle_timeout
            .map(|d| format!(", dropped after {d:?} of silence"))
            .unwrap_or_default(),
        limits.memory_bound(secure).div_ceil(1 << 20)
    );
    let sender = lab.clone();
    // Detached: a read blocked on stdin must not hold up the exit.
    let _ = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            read_lines(std::io::stdin().lock(), |msg| {
                let n = sender.send_all(msg);
                let line = format!(
                    "{} sent {:?} to {n} client(s)\n",
                    crate::logger::timestamp(std::time::SystemTime::now()),
                    String::from_utf8_lossy(msg)
                );
                let _ = std::io::stdout().lock().write_all(line.as_bytes());
            });
        });
    loop {
        let e = match lab.next_event(Duration::ZERO) {
            Some(e) => e,
            None => {
                // Nothing more for now: show what was printed.
                if out.flush().is_err() {
                    break;
                }
                match lab.next_event(Duration::from_secs(3600)) {
                    Some(e) => e,
                    None if lab.interrupted() => break,
                    None => continue,
                }
            }
        };
        let mut line = describe(&e);
        line.push('\n');
        if out.write_all(line.as_bytes()).is_err() {
            // Nobody reads what the lab prints any more.
            warn!("stdout is closed: stopping");
            return std::process::ExitCode::FAILURE;
        }
    }
    let _ = out.flush();
    info!("stopping");
    std::process::ExitCode::SUCCESS
}

/// One line for a lab event: time, peer, what.
pub fn describe(e: &LabEvent) -> String {
    let now = crate::logger::timestamp(std::time::SystemTime::now());
    match e {
        LabEvent::Connected { peer, .. } => format!("{now} {peer} connected"),
        LabEvent::Disconnected { peer, .. } => format!("{now} {peer} disconnected"),
        LabEvent::BadFrame { peer, .. } => {
            format!("{now} {peer} sent an undecodable frame; dropped")
        }
        LabEvent::TlsFailed { peer, error, .. } => {
            format!("{now} {peer} TLS failed: {error}; dropped")
        }
        LabEvent::Message { peer, bytes, .. } => format!(
            "{now} {peer} -> {} bytes: {}",
            bytes.len(),
            crate::text::text_and_hex(bytes, 256)
        ),
        LabEvent::Beat { peer, payload, .. } => format!(
            "{now} {peer} heartbeat: {}",
            crate::text::text_and_hex(payload, 64)
        ),
    }
}

/// `longlink lab --check`.
pub fn check(lab: &Lab, args: &crate::cli::LabArgs) -> std::process::ExitCode {
    let opts = CheckOptions {
        heartbeat: args.heartbeat_payload.as_bytes().to_vec(),
        heartbeats: args.heartbeats,
        timeout: args.timeout,
    };
    let report = run(lab, &opts, |line| {
        eprintln!(
            "{} {line}",
            crate::logger::timestamp(std::time::SystemTime::now())
        );
    });
    print!("{}", report.render());
    if report.passed() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
