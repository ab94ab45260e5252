//! `longlink lab` and `longlink lab --check`: the lab server on stdin and
//! stdout.
//!
//! Stdout carries one line per event (`--output text|hex|json`); stdin lines
//! are messages to every client, `@N` to one, `!list`, `!drop N`
//! ([`Command`]). A closed stdout (`longlink lab | head`) ends the lab
//! quietly with status 0.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime};

use log::{debug, info, warn};
use longlink_core::Transport;

use crate::check::{run, CheckOptions};
use crate::cli::{InputArg, LabArgs, OutputArg};
use crate::lab::{read_lines, summary_acked, Lab, LabEvent};
use crate::logger::timestamp;
use crate::text::{json_bytes, json_string, show, text_and_hex};

/// `longlink lab`: prints what clients send, sends them stdin lines; with
/// `--check` runs the acceptance script. SIGINT/SIGTERM end it with a
/// summary.
pub fn main(args: &LabArgs) -> std::process::ExitCode {
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
    // The handler comes first: a signal sent as soon as the lab listens
    // must end it with its summary, not kill it.
    let slot: Arc<OnceLock<Arc<Lab>>> = Arc::new(OnceLock::new());
    let early = Arc::new(AtomicBool::new(false));
    {
        let (slot, early) = (slot.clone(), early.clone());
        if let Err(e) = ctrlc::set_handler(move || match slot.get() {
            Some(lab) => lab.interrupt(),
            None => early.store(true, Ordering::SeqCst),
        }) {
            warn!("no signal handler ({e}); stop with kill -9");
        }
    }
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
    let _ = slot.set(lab.clone());
    if early.load(Ordering::SeqCst) {
        lab.interrupt();
    }
    let (code, quiet) = if args.check {
        (check(&lab, args), false)
    } else {
        serve(&lab, args, transport, secure)
    };
    lab.halt();
    if !quiet {
        eprintln!("{}", summary_acked(&lab.stats(), lab.uptime(), lab.acked()));
    }
    code
}

/// The clients' numbers: `#1` for the first that connected, and so on, as
/// the lab prints them; `@N` and `!drop N` on stdin use them.
#[derive(Default)]
pub struct Numbers {
    next: u64,
    by_addr: HashMap<SocketAddr, u64>,
}

impl Numbers {
    /// The number of `peer`, given one at its first sight.
    pub fn number(&mut self, peer: SocketAddr) -> u64 {
        if let Some(&n) = self.by_addr.get(&peer) {
            return n;
        }
        self.next += 1;
        self.by_addr.insert(peer, self.next);
        self.next
    }

    /// Forgets a client that went away.
    pub fn forget(&mut self, peer: SocketAddr) -> Option<u64> {
        self.by_addr.remove(&peer)
    }

    /// The client with number `n`.
    pub fn peer(&self, n: u64) -> Option<SocketAddr> {
        self.by_addr.iter().find(|(_, &m)| m == n).map(|(a, _)| *a)
    }

    /// Keeps only the clients in `current` (UDP peers are forgotten by the
    /// lab without an event; called when the table grows past the lab's
    /// client limit).
    pub fn retain(&mut self, current: &[SocketAddr]) {
        self.by_addr.retain(|a, _| current.contains(a));
    }

    /// How many clients have a number.
    pub fn len(&self) -> usize {
        self.by_addr.len()
    }

    /// True when no client has a number.
    pub fn is_empty(&self) -> bool {
        self.by_addr.is_empty()
    }
}

fn lock(n: &Mutex<Numbers>) -> std::sync::MutexGuard<'_, Numbers> {
    n.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Which client a stdin command names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    /// `@N`: by number.
    Number(u64),
    /// `@ADDR`: by address.
    Addr(SocketAddr),
    /// `all` (for `!drop`).
    All,
}

/// A stdin line of the lab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Send to every client.
    Broadcast(Vec<u8>),
    /// `@N message`: send to one client.
    SendTo(Who, Vec<u8>),
    /// `!list`.
    List,
    /// `!drop N|ADDR|all`.
    Drop(Who),
    /// `!help`.
    Help,
}

fn parse_who(s: &str) -> Result<Who, String> {
    let s = s.trim();
    if s == "all" {
        return Ok(Who::All);
    }
    let s = s.strip_prefix('#').unwrap_or(s);
    if let Ok(n) = s.parse::<u64>() {
        return Ok(Who::Number(n));
    }
    s.parse::<SocketAddr>()
        .map(Who::Addr)
        .map_err(|_| format!("{s:?}: name a client by its number (2) or address (127.0.0.1:40312)"))
}

/// Parses one stdin line; `input` says how the message part is written.
pub fn parse_command(line: &[u8], input: InputArg) -> Result<Command, String> {
    if let Some(rest) = line.strip_prefix(b"!") {
        let rest = String::from_utf8_lossy(rest);
        let mut words = rest.split_whitespace();
        return match (words.next(), words.next(), words.next()) {
            (Some("list"), None, _) => Ok(Command::List),
            (Some("help"), None, _) => Ok(Command::Help),
            (Some("drop"), Some(who), None) => parse_who(who).map(Command::Drop),
            _ => Err(format!(
                "unknown command !{rest} (!list, !drop N, !drop all, !help; data starting with '!': write it as \\x21 with --input escaped, or hex)"
            )),
        };
    }
    if let Some(rest) = line.strip_prefix(b"@") {
        let (who, message) = match rest.iter().position(|&b| b == b' ') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &b""[..]),
        };
        let who = match parse_who(&String::from_utf8_lossy(who))? {
            Who::All => {
                return Err("@all: write the message without @ to send it to every client".into())
            }
            w => w,
        };
        return Ok(Command::SendTo(who, input.decode(message)?));
    }
    input.decode(line).map(Command::Broadcast)
}

/// Writes a line to stdout; false when stdout is closed.
fn out_line(line: &str) -> bool {
    let mut out = std::io::stdout().lock();
    out.write_all(line.as_bytes()).is_ok() && out.write_all(b"\n").is_ok() && out.flush().is_ok()
}

/// What a stdin command did, as a stdout line in the `--output` format
/// (`what` for text, `fields` for JSON).
fn report(output: OutputArg, what: &str, fields: &str) -> bool {
    let now = timestamp(SystemTime::now());
    match output {
        OutputArg::Json => out_line(&format!("{{\"time\":{},{fields}}}", json_string(&now))),
        OutputArg::Text | OutputArg::Hex => out_line(&format!("{now} {what}")),
    }
}

fn resolve(lab: &Lab, numbers: &Mutex<Numbers>, who: &Who) -> Result<(u64, SocketAddr), String> {
    let n = lock(numbers);
    match who {
        Who::Number(k) => n
            .peer(*k)
            .map(|a| (*k, a))
            .ok_or_else(|| format!("no client #{k} (!list shows them)")),
        Who::Addr(a) if lab.clients().contains(a) => {
            Ok((n.by_addr.get(a).copied().unwrap_or(0), *a))
        }
        Who::Addr(a) => Err(format!("{a} is not a client (!list shows them)")),
        Who::All => Err("name one client".into()),
    }
}

/// Carries out one stdin command; false when stdout is closed.
fn obey(lab: &Lab, numbers: &Mutex<Numbers>, output: OutputArg, cmd: Command) -> bool {
    let hex = output == OutputArg::Hex;
    let shown = |m: &[u8]| if hex { crate::text::hex(m) } else { show(m) };
    match cmd {
        Command::Broadcast(msg) => {
            let n = lab.send_all(&msg);
            report(
                output,
                &format!("sent {} to {n} client(s)", shown(&msg)),
                &format!(
                    "\"dir\":\"out\",\"client\":null,\"reached\":{n},{}",
                    json_bytes(&msg)
                ),
            )
        }
        Command::SendTo(who, msg) => match resolve(lab, numbers, &who) {
            Ok((k, peer)) => match lab.send_to(peer, &msg) {
                Ok(()) => report(
                    output,
                    &format!("#{k} {peer} <- {} bytes: {}", msg.len(), shown(&msg)),
                    &format!(
                        "\"dir\":\"out\",\"client\":{k},\"peer\":\"{peer}\",{}",
                        json_bytes(&msg)
                    ),
                ),
                Err(e) => {
                    warn!("not sent to #{k} {peer}: {e}");
                    true
                }
            },
            Err(e) => {
                warn!("not sent: {e}");
                true
            }
        },
        Command::Drop(Who::All) => {
            lab.drop_clients();
            report(
                output,
                "dropped every client",
                "\"event\":\"drop\",\"client\":null",
            )
        }
        Command::Drop(who) => match resolve(lab, numbers, &who) {
            Ok((k, peer)) if lab.drop_client(peer) => report(
                output,
                &format!("#{k} {peer} dropped (by !drop)"),
                &format!("\"event\":\"drop\",\"client\":{k},\"peer\":\"{peer}\""),
            ),
            Ok((k, peer)) => {
                warn!("#{k} {peer} was already gone");
                true
            }
            Err(e) => {
                warn!("{e}");
                true
            }
        },
        Command::List => {
            let clients = lab.clients();
            let mut listed: Vec<(u64, SocketAddr)> = {
                let mut n = lock(numbers);
                clients.iter().map(|a| (n.number(*a), *a)).collect()
            };
            listed.sort();
            match output {
                OutputArg::Json => {
                    let items: Vec<String> = listed
                        .iter()
                        .map(|(k, a)| format!("{{\"client\":{k},\"peer\":\"{a}\"}}"))
                        .collect();
                    report(
                        output,
                        "",
                        &format!("\"event\":\"list\",\"clients\":[{}]", items.join(",")),
                    )
                }
                OutputArg::Text | OutputArg::Hex => {
                    let items: Vec<String> =
                        listed.iter().map(|(k, a)| format!("#{k} {a}")).collect();
                    report(
                        output,
                        &format!("{} client(s): {}", listed.len(), items.join(", ")),
                        "",
                    )
                }
            }
        }
        Command::Help => {
            eprintln!("{}", stdin_help());
            true
        }
    }
}

/// The stdin part of `longlink lab --help`.
fn stdin_help() -> &'static str {
    let bounds = crate::cli::LAB_BOUNDS;
    let end = bounds.find("\n\nBounds").unwrap_or(bounds.len());
    &bounds[..end]
}

/// One stdout line for a lab event, in the `--output` format, with the
/// client's number.
pub fn describe(e: &LabEvent, number: u64, output: OutputArg) -> String {
    let now = timestamp(SystemTime::now());
    let (peer, event, bytes) = match e {
        LabEvent::Connected { peer, .. } => (peer, "connected", None),
        LabEvent::Disconnected { peer, .. } => (peer, "disconnected", None),
        LabEvent::BadFrame { peer, .. } => (peer, "bad frame", None),
        LabEvent::TlsFailed { peer, .. } => (peer, "tls failed", None),
        LabEvent::Message { peer, bytes, .. } => (peer, "message", Some(bytes)),
        LabEvent::Beat { peer, payload, .. } => (peer, "heartbeat", Some(payload)),
    };
    if output == OutputArg::Json {
        let mut line = format!(
            "{{\"time\":{},\"client\":{number},\"peer\":\"{peer}\"",
            json_string(&now)
        );
        match (e, bytes) {
            (LabEvent::Message { .. }, Some(b)) => {
                line.push_str(&format!(",\"dir\":\"in\",{}", json_bytes(b)));
            }
            (_, Some(b)) => {
                line.push_str(&format!(",\"event\":\"{event}\",{}", json_bytes(b)));
            }
            (LabEvent::TlsFailed { error, .. }, None) => {
                line.push_str(&format!(
                    ",\"event\":\"{event}\",\"error\":{}",
                    json_string(error)
                ));
            }
            _ => line.push_str(&format!(",\"event\":\"{event}\"")),
        }
        line.push('}');
        return line;
    }
    let shown = |b: &[u8], limit: usize| {
        if output == OutputArg::Hex {
            crate::text::hex(b)
        } else {
            text_and_hex(b, limit)
        }
    };
    let who = format!("{now} #{number} {peer}");
    match e {
        LabEvent::Connected { .. } => format!("{who} connected"),
        LabEvent::Disconnected { .. } => format!("{who} disconnected"),
        LabEvent::BadFrame { .. } => format!("{who} sent an undecodable frame; dropped"),
        LabEvent::TlsFailed { error, .. } => format!("{who} TLS failed: {error}; dropped"),
        LabEvent::Message { bytes, .. } => {
            format!("{who} -> {} bytes: {}", bytes.len(), shown(bytes, 256))
        }
        LabEvent::Beat { payload, .. } => format!("{who} heartbeat: {}", shown(payload, 64)),
    }
}

fn peer_of(e: &LabEvent) -> SocketAddr {
    match e {
        LabEvent::Connected { peer, .. }
        | LabEvent::Disconnected { peer, .. }
        | LabEvent::BadFrame { peer, .. }
        | LabEvent::TlsFailed { peer, .. }
        | LabEvent::Message { peer, .. }
        | LabEvent::Beat { peer, .. } => *peer,
    }
}

/// Prints events until interrupted; a stdin thread carries out the
/// commands. Returns the exit status, and true when stdout closed (then the
/// lab ends quietly).
fn serve(
    lab: &Arc<Lab>,
    args: &LabArgs,
    transport: Transport,
    secure: bool,
) -> (std::process::ExitCode, bool) {
    let limits = lab.limits();
    let output = args.output;
    info!(
        "longlink lab: {}{}{} on {} ({} framing); type a line to send it to every client, @N LINE to client #N, !help for more",
        crate::text::transport(transport),
        if secure { " + TLS" } else { "" },
        if lab.acked() {
            ", acknowledged delivery"
        } else {
            ""
        },
        lab.local_addr(),
        crate::text::framing(lab.framing())
    );
    info!(
        "at most {} clients{}; lab buffers bounded at {} MiB",
        limits.max_clients,
        limits
            .idle_timeout
            .map(|d| format!(
                ", dropped after {} of silence",
                humantime::format_duration(d)
            ))
            .unwrap_or_default(),
        limits.memory_bound(secure).div_ceil(1 << 20)
    );
    let numbers = Arc::new(Mutex::new(Numbers::default()));
    let closed = Arc::new(AtomicBool::new(false));
    {
        let (lab, numbers, closed) = (lab.clone(), numbers.clone(), closed.clone());
        let input = args.input;
        // Detached: a read blocked on stdin must not hold up the exit.
        let _ = std::thread::Builder::new()
            .name("stdin".into())
            .spawn(move || {
                read_lines(std::io::stdin().lock(), |line| {
                    if closed.load(Ordering::Relaxed) {
                        return;
                    }
                    match parse_command(line, input) {
                        Ok(cmd) => {
                            if !obey(&lab, &numbers, output, cmd) {
                                closed.store(true, Ordering::Relaxed);
                                lab.interrupt();
                            }
                        }
                        Err(e) => warn!("stdin: {e}; not sent"),
                    }
                });
                debug!("end of stdin; the lab keeps running");
            });
    }
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout());
    let mut broken = false;
    loop {
        let e = match lab.next_event(Duration::ZERO) {
            Some(e) => e,
            None => {
                // Nothing more for now: show what was printed.
                if out.flush().is_err() {
                    broken = true;
                    break;
                }
                match lab.next_event(Duration::from_secs(3600)) {
                    Some(e) => e,
                    None if lab.interrupted() => break,
                    None => continue,
                }
            }
        };
        let peer = peer_of(&e);
        let number = {
            let mut n = lock(&numbers);
            let k = n.number(peer);
            if matches!(e, LabEvent::Disconnected { .. }) {
                n.forget(peer);
            }
            if n.len() > limits.max_clients.saturating_mul(2) {
                n.retain(&lab.clients());
            }
            k
        };
        let mut line = describe(&e, number, output);
        line.push('\n');
        if out.write_all(line.as_bytes()).is_err() {
            broken = true;
            break;
        }
    }
    if broken || closed.load(Ordering::Relaxed) {
        // Nobody reads what the lab prints any more (`longlink lab | head`):
        // end quietly, like any filter.
        debug!("stdout is closed: stopping");
        return (std::process::ExitCode::SUCCESS, true);
    }
    let _ = out.flush();
    info!("stopping");
    (std::process::ExitCode::SUCCESS, false)
}

/// `longlink lab --check`: the report on stdout (a table, or with `--json`
/// one JSON object), progress on stderr.
pub fn check(lab: &Lab, args: &LabArgs) -> std::process::ExitCode {
    let opts = CheckOptions {
        heartbeat: args.heartbeat_payload.as_bytes().to_vec(),
        heartbeats: args.heartbeats,
        timeout: args.timeout,
    };
    let report = run(lab, &opts, |line| {
        eprintln!("{} {line}", timestamp(SystemTime::now()));
    });
    let text = if args.json {
        let mut j = report.to_json();
        j.push('\n');
        j
    } else {
        report.render()
    };
    let mut out = std::io::stdout().lock();
    // A closed stdout loses only the report; the status still tells.
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    if report.passed() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdin_commands() {
        let t = InputArg::Text;
        assert_eq!(
            parse_command(b"hi", t),
            Ok(Command::Broadcast(b"hi".to_vec()))
        );
        assert_eq!(
            parse_command(b"@2 back hi", t),
            Ok(Command::SendTo(Who::Number(2), b"back hi".to_vec()))
        );
        assert_eq!(
            parse_command(b"@2 11 22 33", InputArg::Hex),
            Ok(Command::SendTo(Who::Number(2), vec![0x11, 0x22, 0x33]))
        );
        assert_eq!(
            parse_command(b"@127.0.0.1:9 x", t),
            Ok(Command::SendTo(
                Who::Addr("127.0.0.1:9".parse().unwrap()),
                b"x".to_vec()
            ))
        );
        assert_eq!(
            parse_command(b"!drop 2", t),
            Ok(Command::Drop(Who::Number(2)))
        );
        assert_eq!(parse_command(b"!drop all", t), Ok(Command::Drop(Who::All)));
        assert_eq!(parse_command(b"!list", t), Ok(Command::List));
        assert_eq!(
            parse_command(br"\x21list", InputArg::Escaped),
            Ok(Command::Broadcast(b"!list".to_vec()))
        );
        for bad in [&b"!nope"[..], b"@x hi", b"!drop", b"@all hi"] {
            assert!(parse_command(bad, t).is_err(), "{bad:?}");
        }
        assert!(parse_command(b"1 2", InputArg::Hex).is_err());
    }

    #[test]
    fn numbers_follow_connects() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let mut n = Numbers::default();
        assert_eq!((n.number(a), n.number(b), n.number(a)), (1, 2, 1));
        assert_eq!(n.peer(2), Some(b));
        n.forget(a);
        assert_eq!(n.number(a), 3);
        n.retain(&[a]);
        assert_eq!((n.len(), n.peer(2)), (1, None));
    }

    #[test]
    fn events_print_as_text_hex_and_json() {
        let peer: SocketAddr = "127.0.0.1:7".parse().unwrap();
        let e = LabEvent::Message {
            peer,
            at: std::time::Instant::now(),
            bytes: vec![0x11, 0x22, 0x33],
        };
        let text = describe(&e, 2, OutputArg::Text);
        assert!(
            text.ends_with("#2 127.0.0.1:7 -> 3 bytes: 11 22 33"),
            "{text}"
        );
        let hex = describe(&e, 2, OutputArg::Hex);
        assert!(hex.ends_with("-> 3 bytes: 11 22 33"), "{hex}");
        let json = describe(&e, 2, OutputArg::Json);
        assert!(
            json.ends_with(r#","client":2,"peer":"127.0.0.1:7","dir":"in","len":3,"hex":"11 22 33","text":null}"#),
            "{json}"
        );
    }
}
