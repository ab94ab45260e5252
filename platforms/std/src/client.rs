//! The client: a [`Longlink`] driven by the embedded `longlink-nal-async`
//! driver over `std-embedded-nal-async` sockets, on its own thread.
//!
//! The desktop runs the very loop firmware runs; only the stack (OS sockets
//! through async-io), the clock ([`StdClock`]) and the modem
//! ([`AlwaysUp`]) differ. With TLS ([`Client::spawn_tls`]) the TCP stack is
//! wrapped in a [`TlsConnector`]; the driver and the core do not know.

use std::io::BufRead;
use std::net::SocketAddr;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use std::time::Instant;

use embassy_futures::select::{select, Either};
use embassy_sync::signal::Signal;
use log::{debug, info, warn};
use longlink_core::{
    Config, ConfigError, ConnectFailure, Connection, Disconnect, Event as CoreEvent, QueueError,
    Remote, Stats, Status, TestProtocol,
};
use longlink_nal_async::{
    AlwaysUp, Clock, CriticalSectionRawMutex, Event, Longlink, Net, RunError,
};
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use std_embedded_nal_async::Stack;

use crate::clock::StdClock;
use crate::tcp::NoDelayTcp;
use crate::text::text_and_hex;
use crate::tls::TlsConnector;

/// Outgoing queue size: room for the largest `len16` message.
pub const QUEUE: usize = 64 * 1024;
/// Receive buffer size: the largest inbound message (UDP datagram, line).
pub const RX: usize = 16 * 1024;

/// The shared connection of the desktop client.
pub type Link = Longlink<CriticalSectionRawMutex, TestProtocol, QUEUE, RX>;

/// The server, owned: the driver borrows it as a [`Remote`] for each run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Server {
    /// An address.
    Addr(SocketAddr),
    /// A host name, resolved at every connect attempt, and a port.
    Host(String, u16),
}

impl Server {
    /// `host` as an address if it is one, else as a name.
    pub fn new(host: &str, port: u16) -> Server {
        match host.parse::<std::net::IpAddr>() {
            Ok(ip) => Server::Addr(SocketAddr::new(ip, port)),
            Err(_) => Server::Host(host.to_owned(), port),
        }
    }

    /// The driver's view of it.
    pub fn remote(&self) -> Remote<'_> {
        match self {
            Server::Addr(a) => Remote::Addr(*a),
            Server::Host(name, port) => Remote::Host { name, port: *port },
        }
    }
}

impl std::fmt::Display for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.remote().fmt(f)
    }
}

/// What the client did, for the demo, tests and benchmarks (the log gets the
/// same events as text): the driver's [`Event`]s, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// A decision of the state machine (status, connected, disconnected
    /// and why, link reset...).
    Core(CoreEvent),
    /// A connect attempt to this address starts.
    Connecting(SocketAddr),
    /// The stack reported an error (the operation and the error).
    StackError(String),
    /// Bytes written.
    Sent(Vec<u8>),
    /// Bytes read.
    Received(Vec<u8>),
}

/// An [`Observed`] event and when it happened.
#[derive(Debug, Clone)]
pub struct ClientEvent {
    /// When.
    pub at: Instant,
    /// What.
    pub what: Observed,
}

/// Why a client could not start.
#[derive(Debug)]
pub enum SpawnError {
    /// The configuration does not fit the client's buffers.
    Config(ConfigError),
    /// No thread could be started.
    Thread(std::io::Error),
}

impl std::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpawnError::Config(e) => write!(f, "bad configuration: {e}"),
            SpawnError::Thread(e) => write!(f, "cannot start a thread: {e}"),
        }
    }
}

impl std::error::Error for SpawnError {}

/// How a TLS client verifies its server (and, with a client certificate in
/// `config`, proves who it is).
#[derive(Debug, Clone)]
pub struct TlsSetup {
    /// Trust anchors, client certificate, protocol versions
    /// ([`crate::tls::client_config`]).
    pub config: Arc<ClientConfig>,
    /// The name the server's certificate must be valid for.
    pub server_name: ServerName<'static>,
    /// Longest wait for a handshake.
    pub handshake_timeout: Duration,
    /// Run the device's TLS (embedded-tls) instead of rustls
    /// (`--tls-stack embedded`).
    pub device: Option<crate::device_tls::DeviceTls>,
}

/// A running client. Dropping it stops it.
pub struct Client {
    link: Arc<Link>,
    stop: Arc<Signal<CriticalSectionRawMutex, ()>>,
    thread: Option<JoinHandle<Result<(), RunError>>>,
}

impl Client {
    /// Starts a client of `server` with `config` on a thread of its own.
    /// Every event is logged, and also sent to `observer` if given.
    pub fn spawn(
        server: Server,
        config: Config,
        observer: Option<Sender<ClientEvent>>,
    ) -> Result<Client, SpawnError> {
        Self::spawn_with(server, config, None, observer)
    }

    /// Like [`spawn`](Self::spawn), over TLS (TCP only: the config's
    /// transport must be TCP). Handshake failures are failed connects.
    pub fn spawn_tls(
        server: Server,
        config: Config,
        tls: TlsSetup,
        observer: Option<Sender<ClientEvent>>,
    ) -> Result<Client, SpawnError> {
        Self::spawn_with(server, config, Some(tls), observer)
    }

    /// [`spawn`](Self::spawn) or [`spawn_tls`](Self::spawn_tls).
    pub fn spawn_with(
        server: Server,
        config: Config,
        tls: Option<TlsSetup>,
        observer: Option<Sender<ClientEvent>>,
    ) -> Result<Client, SpawnError> {
        let hook = move |event: &Event<'_>| {
            if let Some(tx) = &observer {
                let _ = tx.send(ClientEvent {
                    at: Instant::now(),
                    what: observe(event),
                });
            }
        };
        Self::spawn_hooked(server, config, tls, hook)
    }

    /// Like [`spawn_with`](Self::spawn_with), with every event (after it
    /// was logged) handed to `hook` on the client's thread, as it happens.
    /// The driver waits for the hook: a hook that blocks (a full stdout)
    /// holds the connection back instead of buffering without bound.
    pub fn spawn_hooked(
        server: Server,
        config: Config,
        tls: Option<TlsSetup>,
        hook: impl FnMut(&Event<'_>) + Send + 'static,
    ) -> Result<Client, SpawnError> {
        let clock = StdClock::new();
        let conn: Connection<TestProtocol, QUEUE, RX> =
            Connection::new(config, TestProtocol::default(), clock.now())
                .map_err(SpawnError::Config)?;
        let link = Arc::new(Longlink::new(conn));
        let stop = Arc::new(Signal::new());
        let (l, s) = (link.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("longlink".into())
            .spawn(move || match tls {
                None => {
                    let net = Net {
                        tcp: NoDelayTcp,
                        udp: Stack::default(),
                        dns: Stack::default(),
                    };
                    drive(&l, &s, &clock, net, &server, hook)
                }
                Some(TlsSetup {
                    device: Some(device),
                    ..
                }) => {
                    let tls = crate::device_tls::Link::new();
                    let net = Net {
                        tcp: crate::device_tls::Explained(&tls),
                        udp: Stack::default(),
                        dns: Stack::default(),
                    };
                    let task = crate::device_tls::task(&tls, &device);
                    drive_with(&l, &s, &clock, net, &server, hook, task)
                }
                Some(t) => {
                    let tcp = TlsConnector::new(NoDelayTcp, t.config, t.server_name)
                        .with_handshake_timeout(t.handshake_timeout);
                    let net = Net {
                        tcp,
                        udp: Stack::default(),
                        dns: Stack::default(),
                    };
                    drive(&l, &s, &clock, net, &server, hook)
                }
            })
            .map_err(SpawnError::Thread)?;
        Ok(Client {
            link,
            stop,
            thread: Some(thread),
        })
    }

    /// Asks the client to stop (from any thread); [`stop`](Self::stop)
    /// or dropping it waits for it.
    pub fn signal_stop(&self) {
        self.stop.signal(());
    }

    /// The shared connection (enqueue, stats, status).
    pub fn link(&self) -> &Link {
        &self.link
    }

    /// A clone of the shared connection, for other threads.
    pub fn link_arc(&self) -> Arc<Link> {
        self.link.clone()
    }

    /// Queues a message, waiting while the queue is full.
    pub fn enqueue(&self, message: &[u8]) -> Result<(), QueueError> {
        async_io::block_on(self.link.enqueue(message))
    }

    /// Stops the client and returns its counters.
    pub fn stop(mut self) -> Stats {
        self.halt();
        self.link.stats()
    }

    fn halt(&mut self) {
        self.stop.signal(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.halt();
    }
}

fn drive<T, U, D>(
    link: &Link,
    stop: &Signal<CriticalSectionRawMutex, ()>,
    clock: &StdClock,
    net: Net<T, U, D>,
    server: &Server,
    on_event: impl FnMut(&Event<'_>),
) -> Result<(), RunError>
where
    T: embedded_nal_async::TcpConnect,
    U: embedded_nal_async::UdpStack,
    D: embedded_nal_async::Dns,
{
    let idle = std::future::pending::<std::convert::Infallible>();
    drive_with(link, stop, clock, net, server, on_event, idle)
}

/// [`drive`] with a task beside the driver (the embedded TLS task).
fn drive_with<T, U, D>(
    link: &Link,
    stop: &Signal<CriticalSectionRawMutex, ()>,
    clock: &StdClock,
    net: Net<T, U, D>,
    server: &Server,
    mut on_event: impl FnMut(&Event<'_>),
    beside: impl std::future::Future<Output = std::convert::Infallible>,
) -> Result<(), RunError>
where
    T: embedded_nal_async::TcpConnect,
    U: embedded_nal_async::UdpStack,
    D: embedded_nal_async::Dns,
{
    let mut scratch = vec![0u8; QUEUE.max(RX)];
    let mut modem = AlwaysUp;
    let hook = |event: Event<'_>| {
        log_event(&event);
        on_event(&event);
    };
    async_io::block_on(async {
        let run = link.run(net, server.remote(), clock, &mut modem, &mut scratch, hook);
        match select(select(run, beside), stop.wait()).await {
            Either::First(Either::First(Err(e))) => Err(e),
            Either::First(Either::First(Ok(never))) => match never {},
            Either::First(Either::Second(never)) => match never {},
            Either::Second(()) => Ok(()),
        }
    })
}

fn observe(event: &Event<'_>) -> Observed {
    match event {
        Event::Core(e) => Observed::Core(*e),
        Event::Connecting(a) => Observed::Connecting(*a),
        // The error's own text, for programs; the log has it in words
        // ([`error_words`]).
        Event::StackError { op, error } => Observed::StackError(format!("{op}: {error:?}")),
        Event::Sent(b) => Observed::Sent(b.to_vec()),
        Event::Received(b) => Observed::Received(b.to_vec()),
        // `Event` is non-exhaustive.
        other => Observed::StackError(format!("{other:?}")),
    }
}

/// What the log shows. The core logs its own decisions under the target
/// `longlink`; this adds the reasons and what only the driver sees, in
/// words.
fn log_event(event: &Event<'_>) {
    match event {
        Event::Core(CoreEvent::Status(s)) => debug!("status: {}", status_words(*s)),
        Event::Core(CoreEvent::FrameRejected) => {
            warn!("frame rejected (larger than {RX} bytes, or cut off)")
        }
        // The core logs these itself.
        Event::Core(
            e @ (CoreEvent::Connected
            | CoreEvent::LinkReset
            | CoreEvent::RadioCycle
            | CoreEvent::ReplyDropped),
        ) => debug!("{}", event_words(e)),
        Event::Core(e) => info!("{}", event_words(e)),
        Event::Connecting(a) => debug!("connecting to {a}"),
        Event::StackError { op, error } => {
            info!("{op} failed: {}", error_words(&format!("{error:?}")))
        }
        Event::Sent(b) => info!("sent {} bytes: {}", b.len(), text_and_hex(b, 96)),
        Event::Received(b) => info!("received {} bytes: {}", b.len(), text_and_hex(b, 96)),
        _ => debug!("{event:?}"),
    }
}

/// A decision of the state machine, in words.
pub fn event_words(e: &CoreEvent) -> String {
    match e {
        CoreEvent::Connected => "connected".into(),
        CoreEvent::Disconnected(why) => format!(
            "disconnected: {}",
            match why {
                Disconnect::PeerClosed => "closed by the server",
                Disconnect::IoError => "a send or receive failed",
                Disconnect::IdleTimeout => "nothing received within --idle-timeout",
                Disconnect::NetworkLost => "the network went away",
                Disconnect::BadFrame => "the server sent a frame too large or malformed",
                Disconnect::AckTimeout => "no acknowledgement within --ack-timeout",
                #[allow(unreachable_patterns)]
                _ => "other",
            }
        ),
        CoreEvent::ConnectFailed(why) => format!(
            "connect failed: {}",
            match why {
                ConnectFailure::Failed => "refused or unreachable",
                ConnectFailure::TimedOut => "timed out (--connect-timeout)",
                ConnectFailure::NetworkLost => "the network went away",
                #[allow(unreachable_patterns)]
                _ => "other",
            }
        ),
        CoreEvent::LinkReset => "too many failed connects in a row: resetting the link".into(),
        CoreEvent::RadioCycle => "no network: radio off and on".into(),
        CoreEvent::FrameRejected => "frame rejected".into(),
        CoreEvent::ReplyDropped => "a reply was dropped (it cannot fit in the queue)".into(),
        CoreEvent::Status(s) => format!("status: {}", status_words(*s)),
        #[allow(unreachable_patterns)]
        other => format!("{other:?}"),
    }
}

/// A status in words.
pub fn status_words(s: Status) -> &'static str {
    match s {
        Status::WaitingForNetwork => "waiting for the network",
        Status::RadioOff => "radio off",
        Status::Connecting => "connecting",
        Status::BackingOff => "waiting before the next attempt",
        Status::Connected => "connected",
        #[allow(unreachable_patterns)]
        _ => "other",
    }
}

/// A stack error's `Debug` text in words: an OS error by its system
/// message (`Connection refused (os error 111)`), an `io::Error` by its
/// message or kind (`timed out`), a wrapper such as `Tcp(..)` removed. The
/// drivers hand errors as `&dyn Debug`, so this works on the text.
pub fn error_words(debug: &str) -> String {
    fn after<'a>(s: &'a str, key: &str) -> Option<&'a str> {
        s.find(key).map(|i| &s[i + key.len()..])
    }
    fn ident(s: &str) -> &str {
        let end = s
            .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
            .unwrap_or(s.len());
        &s[..end]
    }
    fn quoted(s: &str) -> Option<&str> {
        s.find('"').map(|end| &s[..end])
    }
    fn words(camel: &str) -> String {
        let mut out = String::with_capacity(camel.len() + 4);
        for (i, c) in camel.chars().enumerate() {
            if c.is_ascii_uppercase() && i > 0 {
                out.push(' ');
            }
            out.push(c.to_ascii_lowercase());
        }
        out
    }
    if let Some(code) = after(debug, "Os { code: ") {
        let digits: String = code
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '-')
            .collect();
        if let Ok(code) = digits.parse::<i32>() {
            return std::io::Error::from_raw_os_error(code).to_string();
        }
    }
    for key in ["message: \"", "error: \""] {
        if let Some(m) = after(debug, key).and_then(quoted) {
            return m.to_string();
        }
    }
    for key in ["kind: ", "Kind("] {
        if let Some(k) = after(debug, key).map(ident).filter(|k| !k.is_empty()) {
            return words(k);
        }
    }
    // `Tcp(TimedOut)`, `Tls(Handshake)`: the innermost name.
    let mut inner = debug.trim();
    while let Some(open) = inner.find('(') {
        if !inner.ends_with(')') || !inner[..open].chars().all(|c| c.is_ascii_alphanumeric()) {
            break;
        }
        inner = &inner[open + 1..inner.len() - 1];
    }
    if !inner.is_empty() && inner.chars().all(|c| c.is_ascii_alphanumeric()) {
        return words(inner);
    }
    inner.to_string()
}

/// Reads lines from `input` and queues each (without its `\n` or `\r\n`;
/// the framing adds its own delimiter). Returns at end of input.
pub fn queue_lines(link: &Link, input: impl BufRead) {
    queue_lines_as(link, input, |line| Ok(line.to_vec()));
}

/// [`queue_lines`], each line turned into a message by `decode` (hex,
/// escapes); a line it refuses is reported and not sent.
pub fn queue_lines_as(
    link: &Link,
    input: impl BufRead,
    decode: impl Fn(&[u8]) -> Result<Vec<u8>, String>,
) {
    let mut input = input;
    let mut line = Vec::new();
    loop {
        line.clear();
        match input.read_until(b'\n', &mut line) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) => {
                warn!("stdin: {e}");
                return;
            }
        }
        if line.last() == Some(&b'\n') {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        }
        let message = match decode(&line) {
            Ok(m) => m,
            Err(e) => {
                warn!("stdin line not sent: {e}");
                continue;
            }
        };
        match async_io::block_on(link.enqueue(&message)) {
            Ok(()) => debug!("queued {} bytes ({} waiting)", message.len(), link.queued()),
            Err(QueueError::Empty) => debug!("empty line not queued (raw framing sends nothing)"),
            Err(e) => warn!("line not queued: {e}"),
        }
    }
}

/// The statistics summary printed when the client ends.
pub fn summary(stats: &Stats, elapsed: std::time::Duration) -> String {
    format!(
        "longlink client ran {:.1}s\n\
         connects {} (attempts {}, failures {}, timeouts {}), disconnects {}, idle timeouts {}, link resets {}\n\
         messages out {} (heartbeats {}, skipped {}), in {}; bytes out {}, in {}\n\
         queue full {}, replies dropped {}, frames rejected {}, rx discarded {}",
        elapsed.as_secs_f64(),
        stats.connects,
        stats.connect_attempts,
        stats.connect_failures,
        stats.connect_timeouts,
        stats.disconnects,
        stats.idle_timeouts,
        stats.link_resets,
        stats.messages_out,
        stats.heartbeats_sent,
        stats.heartbeats_skipped,
        stats.messages_in,
        stats.bytes_out,
        stats.bytes_in,
        stats.queue_full,
        stats.replies_dropped,
        stats.frames_rejected,
        stats.rx_discarded,
    )
}

/// Application messages (and replies) still queued: in acknowledged mode
/// not yet acknowledged, otherwise not yet fully written. A pending
/// heartbeat is not counted.
pub fn undelivered(link: &Link) -> usize {
    link.with(|c| {
        c.queued_frames()
            .filter(|(_, heartbeat)| !heartbeat)
            .count()
    })
}

/// `--drain`: waits until nothing is [`undelivered`], at most `patience`
/// or until another signal arrives on `signals`. Returns what is left.
pub fn drain<T>(
    link: &Link,
    patience: Duration,
    signals: &std::sync::mpsc::Receiver<T>,
    acked: bool,
) -> usize {
    let give_up = Instant::now() + patience;
    let mut left = undelivered(link);
    if left > 0 {
        info!(
            "draining: waiting up to {} for {left} queued message(s) to be {}",
            humantime::format_duration(patience),
            if acked { "acknowledged" } else { "written" }
        );
    }
    while left > 0 {
        let now = Instant::now();
        if now >= give_up {
            warn!(
                "drain: gave up after {} with {left} message(s) queued",
                humantime::format_duration(patience)
            );
            break;
        }
        let wait = (give_up - now).min(Duration::from_millis(10));
        if signals.recv_timeout(wait).is_ok() {
            warn!("drain: interrupted with {left} message(s) queued");
            break;
        }
        left = undelivered(link);
    }
    left
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_as_words() {
        let refused = format!("{:?}", std::io::Error::from_raw_os_error(111));
        assert!(error_words(&format!("Tcp({refused})")).starts_with("Connection refused"));
        let timed_out = format!("{:?}", std::io::Error::from(std::io::ErrorKind::TimedOut));
        assert_eq!(error_words(&format!("Tcp({timed_out})")), "timed out");
        let custom = format!("{:?}", std::io::Error::other("handshake took too long"));
        assert_eq!(error_words(&custom), "handshake took too long");
        assert_eq!(error_words("Tls(HandshakeFailed)"), "handshake failed");
        assert_eq!(error_words("odd { thing }"), "odd { thing }");
        assert_eq!(
            event_words(&CoreEvent::Disconnected(Disconnect::PeerClosed)),
            "disconnected: closed by the server"
        );
    }
}
