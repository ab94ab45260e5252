//! `longlink demo`: the tutorial's whole story on loopback, in seconds.
//!
//! A lab server and a client in one process, with shortened intervals. The
//! script plays: connect, heartbeats, `back`/`bin`/`time` answered, the server
//! going away, a message queued while it is down, connect failures counted up
//! to a link reset, the server coming back, the queued message delivered
//! exactly once. It prints a client/server sequence chart and a pass/fail
//! summary.

use std::net::SocketAddr;
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use longlink_core::time::Duration as Ms;
use longlink_core::{
    Config, Disconnect, Event as CoreEvent, Framing, Status, Transport, BIN_REPLY,
};

use crate::check::{request, Expect, Report};
use crate::client::{Client, ClientEvent, Observed, Server};
use crate::lab::{Lab, LabEvent};
use crate::text::{duration, escape};

/// The demo's shortened intervals.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Heartbeat interval (tutorial: 10 s).
    pub heartbeat: Duration,
    /// Retry delay (tutorial: 5 s).
    pub retry: Duration,
    /// Failures before a link reset (tutorial: 5).
    pub max_failures: u16,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            heartbeat: Duration::from_millis(1000),
            retry: Duration::from_millis(400),
            max_failures: 3,
        }
    }
}

/// One line of the sequence chart.
#[derive(Debug, Clone)]
enum Row {
    ToServer(String),
    ToClient(String),
    Client(String),
    Server(String),
}

/// The sequence chart: rows stamped with the time since the demo began.
#[derive(Debug, Default)]
pub struct Chart {
    rows: Vec<(Duration, Row)>,
}

const LANE: usize = 40;

impl Chart {
    fn push(&mut self, t: Duration, row: Row) {
        self.rows.push((t, row));
    }

    /// The chart as text, in time order.
    pub fn render(&self) -> String {
        let mut rows = self.rows.clone();
        rows.sort_by_key(|(t, _)| *t);
        let mut out = format!(
            "{:>7}  {:<w$}  {}\n",
            "time",
            "CLIENT",
            "LAB SERVER",
            w = LANE + 1
        );
        for (t, row) in rows {
            let time = format!("{:>6.3}s", t.as_secs_f64());
            let line = match row {
                Row::ToServer(label) => {
                    let label = fit(&label, LANE - 8);
                    let dashes = "-".repeat(LANE - 6 - label.chars().count());
                    format!("|-- {label} {dashes}>|")
                }
                Row::ToClient(label) => {
                    let label = fit(&label, LANE - 8);
                    let dashes = "-".repeat(LANE - 6 - label.chars().count());
                    format!("|<{dashes} {label} --|")
                }
                Row::Client(note) => format!("|  {:<w$}|", fit(&note, LANE - 3), w = LANE - 3),
                Row::Server(note) => format!("|{:w$}|  {note}", "", w = LANE - 1),
            };
            out.push_str(&format!("{time}  {line}\n"));
        }
        out
    }
}

fn fit(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(3)).collect();
        t.push_str("...");
        t
    }
}

fn quote(bytes: &[u8]) -> String {
    format!("\"{}\"", escape(bytes))
}

struct Demo {
    begin: Instant,
    chart: Chart,
    report: Report,
    client_events: Receiver<ClientEvent>,
    heartbeat: Vec<u8>,
    failures: usize,
}

impl Demo {
    fn t(&self, at: Instant) -> Duration {
        at.saturating_duration_since(self.begin)
    }

    /// Charts what the lab saw until `pick` accepts an event.
    fn lab_until<T>(
        &mut self,
        lab: &Lab,
        timeout: Duration,
        mut pick: impl FnMut(&LabEvent) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let e = lab.next_event(left)?;
            self.chart_lab(&e);
            if let Some(t) = pick(&e) {
                return Some(t);
            }
        }
    }

    fn chart_lab(&mut self, e: &LabEvent) {
        match e {
            LabEvent::Connected { peer, at } => {
                let t = self.t(*at);
                self.chart.push(t, Row::ToServer("connect".into()));
                self.chart
                    .push(t, Row::Server(format!("client {peer} connected")));
            }
            LabEvent::Message { bytes, at, .. } => {
                let t = self.t(*at);
                self.chart.push(t, Row::ToServer(quote(bytes)));
            }
            LabEvent::Beat { payload, at, .. } => {
                let t = self.t(*at);
                self.chart.push(t, Row::ToServer(quote(payload)));
            }
            LabEvent::Disconnected { at, .. } => {
                let t = self.t(*at);
                self.chart.push(t, Row::Server("connection closed".into()));
            }
            LabEvent::BadFrame { at, .. } => {
                let t = self.t(*at);
                self.chart.push(t, Row::Server("bad frame".into()));
            }
            LabEvent::TlsFailed { at, error, .. } => {
                let t = self.t(*at);
                self.chart
                    .push(t, Row::Server(format!("TLS failed: {error}")));
            }
        }
    }

    /// Charts the client's own events that the lab cannot see; returns how
    /// many connect failures and link resets went by.
    fn drain_client(&mut self) -> (usize, usize) {
        let (mut failures, mut resets) = (0, 0);
        while let Ok(ev) = self.client_events.try_recv() {
            let t = self.t(ev.at);
            match ev.what {
                Observed::Core(CoreEvent::ConnectFailed(_)) => {
                    failures += 1;
                    self.failures += 1;
                    let n = self.failures;
                    self.chart
                        .push(t, Row::Client(format!("connect failed ({n})")));
                }
                Observed::Connecting(_) => {
                    self.chart.push(t, Row::Client("connecting".into()));
                }
                Observed::Core(CoreEvent::LinkReset) => {
                    resets += 1;
                    self.chart
                        .push(t, Row::Client("link reset (link.shut())".into()));
                }
                Observed::Core(CoreEvent::Disconnected(Disconnect::PeerClosed)) => {
                    self.chart.push(t, Row::Client("server closed".into()))
                }
                Observed::Core(CoreEvent::Disconnected(why)) => self
                    .chart
                    .push(t, Row::Client(format!("disconnected ({why:?})"))),
                _ => {}
            }
        }
        (failures, resets)
    }

    fn ask(&mut self, lab: &Lab, peer: SocketAddr, name: &str, req: &[u8], expect: Expect<'_>) {
        let sent = Instant::now();
        self.chart.push(self.t(sent), Row::ToClient(quote(req)));
        match request(
            lab,
            peer,
            req,
            expect,
            &self.heartbeat,
            Duration::from_secs(5),
        ) {
            Ok((reply, rtt)) => {
                self.chart
                    .push(self.t(sent + rtt), Row::ToServer(quote(&reply)));
                self.report.add(
                    name,
                    true,
                    format!("{}, round trip {}", quote(&reply), duration(rtt)),
                );
            }
            Err(e) => self.report.add(name, false, e),
        }
    }
}

/// Plays the story; returns the chart and the report.
pub fn play(transport: Transport, timing: Timing, mut say: impl FnMut(&str)) -> (Chart, Report) {
    let begin = Instant::now();
    let (tx, rx) = mpsc::channel();
    let mut d = Demo {
        begin,
        chart: Chart::default(),
        report: Report::default(),
        client_events: rx,
        heartbeat: b"heart beat".to_vec(),
        failures: 0,
    };
    let any: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 0));
    let lab = match Lab::start(any, transport, Framing::Raw) {
        Ok(l) => l,
        Err(e) => {
            d.report.add("lab server starts", false, e.to_string());
            return (d.chart, d.report);
        }
    };
    let addr = lab.local_addr();
    d.chart.push(
        d.t(Instant::now()),
        Row::Server(format!("listening on {addr} ({transport:?})")),
    );
    let config = Config {
        transport,
        heartbeat_interval: Some(Ms::from(timing.heartbeat)),
        retry_delay: Ms::from(timing.retry),
        max_failures: timing.max_failures,
        ..Config::default()
    };
    say(&format!(
        "lab on {addr}; client: heartbeat {}, retry delay {}, link reset after {} failures (tutorial: 10s, 5s, 5)",
        duration(timing.heartbeat),
        duration(timing.retry),
        timing.max_failures
    ));
    let client = match Client::spawn(Server::Addr(addr), config, Some(tx)) {
        Ok(c) => c,
        Err(e) => {
            d.report.add("client starts", false, e.to_string());
            return (d.chart, d.report);
        }
    };

    // 1. Connect and the first heartbeat.
    say("1. connect, heartbeats");
    let peer = d.lab_until(&lab, Duration::from_secs(5), |e| match e {
        LabEvent::Connected { peer, .. } => Some(*peer),
        _ => None,
    });
    let Some(peer) = peer else {
        d.report.add("client connects", false, "not within 5s");
        return (d.chart, d.report);
    };
    d.report
        .add("client connects", true, format!("from {peer}"));
    let hb = d.heartbeat.clone();
    let mut beats = Vec::new();
    while beats.len() < 3 {
        let got = d.lab_until(&lab, timing.heartbeat * 3, |e| match e {
            LabEvent::Message { bytes, at, .. } if *bytes == hb => Some(*at),
            _ => None,
        });
        match got {
            Some(at) => beats.push(at),
            None => break,
        }
    }
    let intervals: Vec<Duration> = beats.windows(2).map(|w| w[1] - w[0]).collect();
    let regular = beats.len() == 3
        && intervals.iter().all(|i| {
            let ms = i.as_millis() as f64;
            let want = timing.heartbeat.as_millis() as f64;
            (ms - want).abs() <= want * 0.25
        });
    d.report.add(
        "heartbeats on time",
        regular,
        format!(
            "{} heartbeats, intervals {}",
            beats.len(),
            intervals
                .iter()
                .map(|i| duration(*i))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );

    // 2. The test protocol.
    say("2. back / bin / time");
    d.ask(
        &lab,
        peer,
        "back answered",
        b"back 1234",
        Expect::Bytes(b"back 1234"),
    );
    d.ask(
        &lab,
        peer,
        "bin answered",
        b"bin",
        Expect::Bytes(&BIN_REPLY),
    );
    d.ask(
        &lab,
        peer,
        "time answered",
        b"time",
        Expect::UnixTime { tolerance_s: 2 },
    );

    // 3. The server goes away; a message is queued meanwhile.
    say("3. the server goes away; the client counts failures up to a link reset");
    lab.drop_clients();
    let _ = d.lab_until(&lab, Duration::from_secs(2), |e| {
        matches!(e, LabEvent::Disconnected { .. }).then_some(())
    });
    drop(lab);
    d.chart.push(
        d.t(Instant::now()),
        Row::Server("lab server STOPPED".into()),
    );
    // Queue only once the client knows the connection is gone: a message
    // written into a socket the peer already closed is lost in the kernel,
    // and no client can tell without acknowledgements in the protocol.
    let noticed = Instant::now() + Duration::from_secs(2);
    while client.link().status() == Status::Connected && Instant::now() < noticed {
        std::thread::sleep(Duration::from_millis(1));
    }
    let queued = b"queued while the server was down";
    let q_at = Instant::now();
    let queued_ok = client.enqueue(queued).is_ok();
    d.chart.push(
        d.t(q_at),
        Row::Client(format!("app queues {}", quote(queued))),
    );
    d.report.add("message queued while down", queued_ok, "");

    let mut failures = 0;
    let mut resets = 0;
    let wait_reset = Instant::now()
        + timing.retry * (u32::from(timing.max_failures) + 3)
        + Duration::from_secs(2);
    if transport == Transport::Tcp {
        while resets == 0 && Instant::now() < wait_reset {
            std::thread::sleep(Duration::from_millis(20));
            let (f, r) = d.drain_client();
            failures += f;
            resets += r;
        }
        d.report.add(
            "failures counted to a link reset",
            resets >= 1 && failures >= usize::from(timing.max_failures),
            format!("{failures} failed connects, {resets} link reset(s)"),
        );
    } else {
        // A UDP "connect" cannot fail; the client only sees refused
        // datagrams as socket errors and reconnects.
        std::thread::sleep(timing.retry * 3);
        d.drain_client();
    }

    // 4. The server comes back: reconnect, the queued message exactly once.
    say("4. the server comes back: reconnect, queued message delivered once");
    let lab = match Lab::start(addr, transport, Framing::Raw) {
        Ok(l) => l,
        Err(e) => {
            d.report
                .add("lab restarts on the same port", false, e.to_string());
            return (d.chart, d.report);
        }
    };
    d.chart.push(
        d.t(Instant::now()),
        Row::Server("lab server RESTARTED".into()),
    );
    let restarted = Instant::now();
    let mut copies = 0;
    let mut reconnected = None;
    let mut first_copy = None;
    // Gather for two heartbeat intervals after the reconnect, to catch a
    // duplicate.
    let mut until = Instant::now() + Duration::from_secs(10);
    loop {
        let left = until.saturating_duration_since(Instant::now());
        let Some(e) = lab.next_event(left) else { break };
        d.chart_lab(&e);
        match &e {
            LabEvent::Connected { at, .. } if reconnected.is_none() => {
                reconnected = Some(*at);
                until = Instant::now() + timing.heartbeat * 2;
            }
            LabEvent::Message { bytes, at, .. } => {
                // Raw TCP may glue the message to a heartbeat.
                let n = count(bytes, queued);
                if n > 0 && first_copy.is_none() {
                    first_copy = Some(*at);
                }
                copies += n;
            }
            _ => {}
        }
    }
    d.drain_client();
    d.report.add(
        "reconnects after the restart",
        reconnected.is_some(),
        reconnected
            .map(|at| format!("{} after the restart", duration(at - restarted)))
            .unwrap_or_else(|| "no reconnect within 10s".into()),
    );
    // Over UDP a datagram sent while the server is down is gone: the queue
    // guarantees it was handed to the socket, UDP guarantees nothing more.
    let (name, ok) = match transport {
        Transport::Tcp => ("queued message delivered once", copies == 1),
        Transport::Udp => ("queued message not duplicated", copies <= 1),
    };
    d.report.add(
        name,
        ok,
        format!(
            "{copies} cop{}{}",
            if copies == 1 { "y" } else { "ies" },
            first_copy
                .map(|at| format!(", {} after it was queued", duration(at - q_at)))
                .unwrap_or_default()
        ),
    );
    if let Some(peer) = lab.clients().first().copied() {
        d.ask(
            &lab,
            peer,
            "answers after the reconnect",
            b"back again",
            Expect::Bytes(b"back again"),
        );
    } else {
        d.report
            .add("answers after the reconnect", false, "no client");
    }
    let stats = client.stop();
    lab.stop();
    d.report.add(
        "nothing lost or duplicated",
        stats.queue_full == 0 && stats.replies_dropped == 0,
        format!(
            "client: {} connects, {} messages out ({} heartbeats), {} in",
            stats.connects, stats.messages_out, stats.heartbeats_sent, stats.messages_in
        ),
    );
    (d.chart, d.report)
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    if needle.is_empty() || haystack.len() < needle.len() {
        return 0;
    }
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count()
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_rows_line_up() {
        let mut c = Chart::default();
        c.push(Duration::from_millis(1500), Row::ToClient("\"bin\"".into()));
        c.push(Duration::from_millis(10), Row::ToServer("connect".into()));
        c.push(
            Duration::from_millis(20),
            Row::Client("connect failed (1)".into()),
        );
        c.push(
            Duration::from_millis(30),
            Row::Server("lab server STOPPED".into()),
        );
        let text = c.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5);
        assert!(lines[1].contains("connect") && lines[1].ends_with(">|"));
        assert!(lines[4].starts_with(" 1.500s") && lines[4].contains("|<"));
        // Every arrow and lane ends on the same column.
        let bar = lines[1].rfind('|').unwrap();
        for l in &lines[1..] {
            assert_eq!(l.chars().nth(bar), Some('|'), "{l}");
        }
    }

    #[test]
    fn counts_copies() {
        assert_eq!(count(b"abcabc", b"abc"), 2);
        assert_eq!(count(b"ab", b"abc"), 0);
    }
}
