//! `longlink client`: received messages on stdout (`--output`), stdin lines
//! queued (`--input`), logs on stderr; stops on a signal, `--count`,
//! `--timeout`, `--exit-on-eof`, `--connect-deadline` or a closed stdout.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use log::{debug, info, warn};
use longlink_core::acked::Frame;
use longlink_core::framing::{self, Framing};
use longlink_core::{Delivery, Event as CoreEvent};
use longlink_nal_async::Event;

use crate::cli::{ClientArgs, OutputArg, EXIT_NEVER_CONNECTED};
use crate::client::{drain, queue_lines_as, summary, undelivered, Client, RX};
use crate::text::{hex, json_bytes, json_string, rfc3339};

/// Why the client stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// SIGINT or SIGTERM.
    Signal,
    /// `--count` messages received.
    Count,
    /// `--timeout` passed.
    Timeout,
    /// `--exit-on-eof`: stdin ended (the queue may still hold lines).
    Eof,
    /// `--connect-deadline` passed without a connection.
    NeverConnected,
    /// Stdout was closed.
    StdoutClosed,
}

/// Cuts what the client reads into the messages the server sent, with the
/// core's own decoder: a read (raw), a line, a length-prefixed frame; with
/// acknowledged delivery only the `M` frames' payloads (acks are not
/// messages). Holds at most one unfinished frame of [`RX`] bytes.
pub struct Inbound {
    framing: Framing,
    acked: bool,
    datagrams: bool,
    buf: Vec<u8>,
}

impl Inbound {
    /// A decoder for this framing (over TCP).
    pub fn new(framing: Framing, acked: bool) -> Inbound {
        Inbound {
            framing,
            acked,
            datagrams: false,
            buf: Vec::new(),
        }
    }

    /// A decoder for UDP: a frame never spans datagrams (a cut-off one is
    /// dropped, as the core drops it).
    pub fn datagrams(mut self) -> Inbound {
        self.datagrams = true;
        self
    }

    /// A new connection: an unfinished frame of the last one is gone.
    pub fn reset(&mut self) {
        self.buf.clear();
    }

    /// The messages completed by `bytes`, in order.
    pub fn push(&mut self, bytes: &[u8], mut message: impl FnMut(&[u8])) {
        let mut emit = |m: &[u8]| {
            if !self.acked {
                message(m);
            } else if let Ok(Frame::Msg(payload)) = Frame::decode(m) {
                message(payload);
            }
        };
        if self.framing == Framing::Raw {
            emit(bytes);
            return;
        }
        self.buf.extend_from_slice(bytes);
        let mut used = 0;
        loop {
            match framing::decode(self.framing, &self.buf[used..], RX) {
                Ok(Some(f)) => {
                    emit(&self.buf[used + f.start..used + f.end]);
                    used += f.consumed;
                }
                Ok(None) => break,
                Err(_) => {
                    // The core rejects it too (and ends the connection).
                    used = self.buf.len();
                    break;
                }
            }
        }
        if self.datagrams {
            self.buf.clear();
        } else {
            self.buf.drain(..used);
        }
    }
}

/// One message as a stdout line.
pub fn format_message(output: OutputArg, message: &[u8]) -> Vec<u8> {
    let mut line = match output {
        OutputArg::Text => message.to_vec(),
        OutputArg::Hex => hex(message).into_bytes(),
        OutputArg::Json => format!(
            "{{\"time\":{},\"dir\":\"in\",{}}}",
            json_string(&rfc3339(SystemTime::now())),
            json_bytes(message)
        )
        .into_bytes(),
    };
    line.push(b'\n');
    line
}

/// The hook that prints received messages and counts them.
fn printer(
    args: &ClientArgs,
    config: &longlink_core::Config,
    connected: Arc<AtomicBool>,
    stop: Sender<Stop>,
) -> impl FnMut(&Event<'_>) + Send + 'static {
    let acked = config.delivery != Delivery::Socket;
    let mut inbound = Inbound::new(config.framing, acked);
    if config.transport == longlink_core::Transport::Udp {
        inbound = inbound.datagrams();
    }
    let output = args.output;
    let count = args.count;
    let mut seen = 0usize;
    let mut done = false;
    move |event| match event {
        Event::Core(CoreEvent::Connected) => {
            connected.store(true, Ordering::Release);
            inbound.reset();
        }
        Event::Core(CoreEvent::Disconnected(_)) => inbound.reset(),
        Event::Received(bytes) if !done => inbound.push(bytes, |m| {
            if done {
                return;
            }
            let line = format_message(output, m);
            let mut out = std::io::stdout().lock();
            if out.write_all(&line).and_then(|()| out.flush()).is_err() {
                done = true;
                let _ = stop.send(Stop::StdoutClosed);
                return;
            }
            seen += 1;
            if count == Some(seen) {
                done = true;
                let _ = stop.send(Stop::Count);
            }
        }),
        _ => {}
    }
}

/// `longlink client`: runs until a signal or a stop option, then prints the
/// summary and the undelivered count on stderr.
pub fn main(args: &ClientArgs) -> std::process::ExitCode {
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
    let server = args.url.server();
    let acked = config.delivery != Delivery::Socket;
    info!(
        "longlink client: {}{} to {} (heartbeat {}, retry {}, {} framing{})",
        crate::text::transport(config.transport),
        if secure { " + TLS" } else { "" },
        server,
        config
            .heartbeat_interval
            .map(|d| humantime::format_duration(d.into()).to_string())
            .unwrap_or_else(|| "off".into()),
        humantime::format_duration(config.retry_delay.into()),
        crate::text::framing(config.framing),
        if acked { ", acknowledged delivery" } else { "" },
    );
    // Before the first connect: a signal that arrives once the server has
    // seen us must end the client cleanly, not kill it.
    let (tx, rx) = mpsc::channel::<Stop>();
    {
        let tx = tx.clone();
        if let Err(e) = ctrlc::set_handler(move || {
            let _ = tx.send(Stop::Signal);
        }) {
            warn!("no signal handler ({e}); stop with kill -9");
        }
    }
    let connected = Arc::new(AtomicBool::new(false));
    let hook = printer(args, &config, connected.clone(), tx.clone());
    let client = match Client::spawn_hooked(server, config, tls, hook) {
        Ok(c) => c,
        Err(e) => {
            log::error!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    let link = client.link_arc();
    let input = args.input;
    let exit_on_eof = args.exit_on_eof;
    let eof_tx = tx.clone();
    // Detached: a read blocked on stdin must not hold up the exit.
    let _ = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            queue_lines_as(&link, std::io::stdin().lock(), |l| input.decode(l));
            if exit_on_eof {
                debug!("end of input: stopping once the queue is empty");
                let _ = eof_tx.send(Stop::Eof);
            } else {
                info!("end of input; still running (Ctrl-C to stop)");
            }
        });
    drop(tx);
    let reason = wait(&client, args, started, &connected, &rx, acked);
    if reason == Stop::Signal {
        if let Some(patience) = args.drain {
            drain(client.link(), patience, &rx, acked);
        }
    }
    debug!("stopping: {reason:?}");
    let link = client.link_arc();
    let stats = client.stop();
    if reason == Stop::StdoutClosed {
        // `longlink client ... | head -1`: end quietly, like any filter.
        return std::process::ExitCode::SUCCESS;
    }
    info!(
        "stopping: {}",
        match reason {
            Stop::Signal => "signal",
            Stop::Count => "--count messages received",
            Stop::Timeout => "--timeout passed",
            Stop::Eof => "end of input, queue empty",
            Stop::NeverConnected => "not connected within --connect-deadline",
            Stop::StdoutClosed => "stdout closed",
        }
    );
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
    let never = stats.connects == 0 && reason != Stop::Signal;
    if reason == Stop::NeverConnected || never {
        eprintln!("never connected to {}", args.url.server());
        std::process::ExitCode::from(EXIT_NEVER_CONNECTED)
    } else if left == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}

/// Waits for the first reason to stop.
fn wait(
    client: &Client,
    args: &ClientArgs,
    started: Instant,
    connected: &AtomicBool,
    rx: &Receiver<Stop>,
    acked: bool,
) -> Stop {
    let timeout = args.timeout.map(|d| started + d);
    let connect_by = args.connect_deadline.map(|d| started + d);
    let mut eof = false;
    loop {
        let now = Instant::now();
        if timeout.is_some_and(|t| now >= t) {
            return Stop::Timeout;
        }
        if connect_by.is_some_and(|t| now >= t) && !connected.load(Ordering::Acquire) {
            return Stop::NeverConnected;
        }
        if eof && undelivered(client.link()) == 0 {
            debug!(
                "end of input and nothing left to {}",
                if acked { "acknowledge" } else { "write" }
            );
            return Stop::Eof;
        }
        // Polled while a deadline or the end of input is pending; otherwise
        // only woken by a message.
        let next = [
            timeout,
            connect_by.filter(|_| !connected.load(Ordering::Acquire)),
        ]
        .into_iter()
        .flatten()
        .min();
        let wait = match (eof, next) {
            (true, _) => Duration::from_millis(5),
            (false, Some(t)) => t
                .saturating_duration_since(now)
                .min(Duration::from_millis(100)),
            (false, None) => Duration::from_secs(3600),
        };
        match rx.recv_timeout(wait) {
            Ok(Stop::Eof) => eof = true,
            Ok(reason) => return reason,
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                // Every sender gone (no handler, stdin done): only the
                // deadlines remain.
                if timeout.is_none() && connect_by.is_none() && !eof {
                    std::thread::park();
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(inbound: &mut Inbound, reads: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        for r in reads {
            inbound.push(r, |m| got.push(m.to_vec()));
        }
        got
    }

    #[test]
    fn reads_become_messages() {
        let mut raw = Inbound::new(Framing::Raw, false);
        assert_eq!(
            messages(&mut raw, &[b"ab", b"c"]),
            [b"ab".to_vec(), b"c".to_vec()]
        );
        let mut lines = Inbound::new(Framing::Lines, false);
        assert_eq!(
            messages(&mut lines, &[b"a\nb", b"c\r\n", b"d"]),
            [b"a".to_vec(), b"bc".to_vec()]
        );
        let mut len16 = Inbound::new(Framing::Len16, false);
        assert_eq!(
            messages(&mut len16, &[&[0, 3, 0x11], &[0x22, 0x33, 0, 1]]),
            [vec![0x11, 0x22, 0x33]]
        );
        // Acknowledged mode: only M frames are messages.
        let mut acked = Inbound::new(Framing::Len16, true);
        let got = messages(&mut acked, &[&[0, 3, b'M', b'h', b'i']]);
        assert_eq!(got, [b"hi".to_vec()]);
        // UDP: a cut-off frame does not join the next datagram.
        let mut udp = Inbound::new(Framing::Lines, false).datagrams();
        assert_eq!(
            messages(&mut udp, &[b"a\nb", b"c\n"]),
            [b"a".to_vec(), b"c".to_vec()]
        );
    }

    #[test]
    fn messages_print_as_text_hex_or_json() {
        assert_eq!(format_message(OutputArg::Text, b"hi"), b"hi\n");
        assert_eq!(
            format_message(OutputArg::Hex, &[0x11, 0x22, 0x33]),
            b"11 22 33\n"
        );
        let json = String::from_utf8(format_message(OutputArg::Json, &[0x11])).unwrap();
        assert!(json.starts_with("{\"time\":\"20"), "{json}");
        assert!(
            json.ends_with(",\"dir\":\"in\",\"len\":1,\"hex\":\"11\",\"text\":null}\n"),
            "{json}"
        );
    }
}
