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
    Config, ConfigError, Connection, Disconnect, Event as CoreEvent, QueueError, Remote, Stats,
    TestProtocol,
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
                    drive(&l, &s, &clock, net, &server, observer)
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
                    drive_with(&l, &s, &clock, net, &server, observer, task)
                }
                Some(t) => {
                    let tcp = TlsConnector::new(NoDelayTcp, t.config, t.server_name)
                        .with_handshake_timeout(t.handshake_timeout);
                    let net = Net {
                        tcp,
                        udp: Stack::default(),
                        dns: Stack::default(),
                    };
                    drive(&l, &s, &clock, net, &server, observer)
                }
            })
            .map_err(SpawnError::Thread)?;
        Ok(Client {
            link,
            stop,
            thread: Some(thread),
        })
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
    observer: Option<Sender<ClientEvent>>,
) -> Result<(), RunError>
where
    T: embedded_nal_async::TcpConnect,
    U: embedded_nal_async::UdpStack,
    D: embedded_nal_async::Dns,
{
    let idle = std::future::pending::<std::convert::Infallible>();
    drive_with(link, stop, clock, net, server, observer, idle)
}

/// [`drive`] with a task beside the driver (the embedded TLS task).
fn drive_with<T, U, D>(
    link: &Link,
    stop: &Signal<CriticalSectionRawMutex, ()>,
    clock: &StdClock,
    net: Net<T, U, D>,
    server: &Server,
    observer: Option<Sender<ClientEvent>>,
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
        if let Some(tx) = &observer {
            let _ = tx.send(ClientEvent {
                at: Instant::now(),
                what: observe(&event),
            });
        }
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
        Event::StackError { op, error } => Observed::StackError(format!("{op}: {error:?}")),
        Event::Sent(b) => Observed::Sent(b.to_vec()),
        Event::Received(b) => Observed::Received(b.to_vec()),
        // `Event` is non-exhaustive.
        other => Observed::StackError(format!("{other:?}")),
    }
}

/// What the log shows. The core logs its own decisions under the target
/// `longlink`; this adds the reasons and what only the driver sees.
fn log_event(event: &Event<'_>) {
    match event {
        Event::Core(CoreEvent::Status(s)) => debug!("status: {s:?}"),
        Event::Core(CoreEvent::Disconnected(Disconnect::PeerClosed)) => {
            info!("closed by the server")
        }
        Event::Core(CoreEvent::FrameRejected) => {
            warn!("frame rejected (larger than {RX} bytes, or cut off)")
        }
        Event::Core(e) => info!("{e:?}"),
        Event::Connecting(a) => debug!("connecting to {a}"),
        Event::StackError { op, error } => info!("{op} failed: {error:?}"),
        Event::Sent(b) => info!("sent {} bytes: {}", b.len(), text_and_hex(b, 96)),
        Event::Received(b) => info!("received {} bytes: {}", b.len(), text_and_hex(b, 96)),
        _ => debug!("{event:?}"),
    }
}

/// Reads lines from `input` and queues each (without its `\n` or `\r\n`;
/// the framing adds its own delimiter). Returns at end of input.
pub fn queue_lines(link: &Link, input: impl BufRead) {
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
        match async_io::block_on(link.enqueue(&line)) {
            Ok(()) => debug!("queued {} bytes ({} waiting)", line.len(), link.queued()),
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
    info!("stopping");
    let stats = client.stop();
    eprintln!("{}", summary(&stats, started.elapsed()));
    std::process::ExitCode::SUCCESS
}
