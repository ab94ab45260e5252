//! `longlink client`: the client on stdin and stdout, until a signal.

use std::time::Instant;

use log::{info, warn};

use crate::client::{drain, queue_lines, summary, undelivered, Client};

/// `longlink client`: runs until SIGINT/SIGTERM, then prints the summary.
pub fn main(args: &crate::cli::ClientArgs) -> std::process::ExitCode {
    let config = args.config();
    let tls = match args.tls_setup() {
        Ok(t) => t,
        Err(e) => {
            log::error!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    let secure = tls.is_some();
    let started = Instant::now();
    // Before the first connect: a signal that arrives once the server has
    // seen us must end the client cleanly, not kill it.
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    if let Err(e) = ctrlc::set_handler(move || {
        let _ = tx.send(());
    }) {
        warn!("no signal handler ({e}); stop with kill -9");
    }
    let server = args.url.server();
    let client = match Client::spawn_with(server.clone(), config.clone(), tls, None) {
        Ok(c) => c,
        Err(e) => {
            log::error!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    info!(
        "longlink client: {:?}{} to {} (heartbeat {:?}, retry {:?}, framing {:?})",
        config.transport,
        if secure { " + TLS" } else { "" },
        server,
        config.heartbeat_interval.map(std::time::Duration::from),
        std::time::Duration::from(config.retry_delay),
        config.framing
    );
    let link = client.link_arc();
    // Detached: a read blocked on stdin must not hold up the exit.
    let _ = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            queue_lines(&link, std::io::stdin().lock());
            info!("end of input; still running (Ctrl-C to stop)");
        });
    let _ = rx.recv();
    let acked = config.delivery != longlink_core::Delivery::Socket;
    if let Some(patience) = args.drain {
        drain(client.link(), patience, &rx, acked);
    }
    info!("stopping");
    let link = client.link_arc();
    let stats = client.stop();
    // Counted once the driver stopped: nothing changes any more.
    let left = undelivered(&link);
    let mut text = summary(&stats, started.elapsed());
    if acked {
        text.push_str(&format!(
            "\nacked: messages acknowledged {}, acks that moved the window {} (ignored {}), ack timeouts {}",
            stats.messages_acked, stats.acks, stats.acks_ignored, stats.ack_timeouts
        ));
    }
    text.push_str(&format!(
        "\n{left} queued message(s) not delivered ({})",
        if acked {
            "not acknowledged by the server"
        } else {
            "not written to the socket"
        }
    ));
    eprintln!("{text}");
    if left == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
