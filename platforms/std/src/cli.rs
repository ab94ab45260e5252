//! The command line: `longlink client|lab|demo|bench`, and the parsers for
//! URLs, durations and framings.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use longlink_core::{payload, Acked, Backoff, Config, Delivery, Framing, Transport, HEARTBEAT_MAX};

use crate::client::Server;

/// Keep a TCP/UDP long connection alive, test one, or watch the whole story.
#[derive(Debug, Parser)]
#[command(name = "longlink", version, about, long_about = None)]
pub struct Cli {
    /// Less output (-q: warnings only, -qq: errors only).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub quiet: u8,
    /// More output (-v: debug, -vv: trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Keep a connection to URL alive: heartbeats, answers back/bin/time,
    /// sends each stdin line.
    Client(ClientArgs),
    /// A test server: prints what clients send, sends them stdin lines; with
    /// --check, runs the tutorial's acceptance script against a client.
    Lab(LabArgs),
    /// Client and lab server on loopback, the tutorial's whole story in
    /// seconds, with a sequence chart.
    Demo(DemoArgs),
    /// Measure idle CPU, queued-line-to-wire latency and echo round trips of
    /// the `longlink client` binary against a loopback server.
    Bench(BenchArgs),
    /// The benchmark's floor: a minimal blocking `std::net` client that
    /// connects to ADDR and writes back every line it reads.
    #[command(hide = true)]
    BareEcho {
        /// Where the benchmark listens.
        addr: std::net::SocketAddr,
    },
}

/// Message framing, both directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum FramingArg {
    /// Each read or datagram is a message (the tutorial).
    #[default]
    Raw,
    /// Newline-terminated messages.
    Lines,
    /// 2-byte big-endian length prefix.
    Len16,
}

impl From<FramingArg> for Framing {
    fn from(f: FramingArg) -> Framing {
        match f {
            FramingArg::Raw => Framing::Raw,
            FramingArg::Lines => Framing::Lines,
            FramingArg::Len16 => Framing::Len16,
        }
    }
}

/// Retry delay policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum BackoffArg {
    /// Always --retry-delay (the tutorial).
    #[default]
    Fixed,
    /// Capped exponential with full jitter, from --retry-delay up to
    /// --backoff-max.
    Exponential,
}

/// How received messages are printed on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum OutputArg {
    /// Client: each message as it is, then a newline (like `nc`). Lab: one
    /// line per event, with time and client, text and hex.
    #[default]
    Text,
    /// Each message as hex bytes (`11 22 33`), one per line (lab: with time
    /// and client).
    Hex,
    /// JSON Lines: `{"time":..,"dir":"in"|"out",..,"hex":..,"text":..}`
    /// (`text` is null when the bytes are not printable).
    Json,
}

/// How stdin lines become messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum InputArg {
    /// Each line as it is.
    #[default]
    Text,
    /// Each line is hex bytes: `11 22 33`, `112233` or `11:22:33`.
    Hex,
    /// Text with escapes: `\xNN`, `\n`, `\r`, `\t`, `\0`, `\\`.
    Escaped,
}

impl InputArg {
    /// The message a stdin line stands for.
    pub fn decode(self, line: &[u8]) -> Result<Vec<u8>, String> {
        match self {
            InputArg::Text => Ok(line.to_vec()),
            InputArg::Hex => crate::text::parse_hex(&String::from_utf8_lossy(line)),
            InputArg::Escaped => crate::text::unescape(line),
        }
    }
}

/// Exit status of `longlink client` when it never connected (within
/// `--connect-deadline`, or before `--timeout`/`--count`/`--exit-on-eof`
/// ended it).
pub const EXIT_NEVER_CONNECTED: u8 = 3;

/// `longlink client`.
#[derive(Debug, Args)]
#[command(after_help = CLIENT_EXIT)]
pub struct ClientArgs {
    /// tcp://HOST:PORT, udp://HOST:PORT or tls://HOST:PORT (HOST: an IP
    /// address or a name, resolved at every connect; tls: TCP + TLS, the
    /// server's certificate verified for HOST).
    #[arg(value_parser = parse_url)]
    pub url: Target,
    /// How received messages are printed on stdout (logs go to stderr).
    #[arg(long, value_enum, default_value_t = OutputArg::Text)]
    pub output: OutputArg,
    /// How stdin lines are read: as text, as hex bytes, or with \xNN escapes.
    #[arg(long, value_enum, default_value_t = InputArg::Text)]
    pub input: InputArg,
    /// Stop after N messages were received (like mosquitto_sub -C).
    #[arg(long, value_name = "N", value_parser = parse_count)]
    pub count: Option<usize>,
    /// Stop after this long (like mosquitto_sub -W), e.g. 30s or 1m30s.
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Stop when stdin ended and every line was delivered: written to the
    /// socket, or with --acked acknowledged (like nc -N).
    #[arg(long)]
    pub exit_on_eof: bool,
    /// Exit with status 3 if not connected within this long.
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub connect_deadline: Option<Duration>,
    /// Heartbeat interval, or "off".
    #[arg(long, default_value = "10s", value_parser = parse_opt_duration)]
    pub heartbeat: Toggle,
    /// Heartbeat message (at most 24 bytes).
    #[arg(long, default_value = "heart beat", value_parser = parse_payload)]
    pub heartbeat_payload: String,
    /// Message framing [default: raw; len16 with --acked].
    #[arg(long, value_enum)]
    pub framing: Option<FramingArg>,
    /// Pause after a failed connect or a lost connection.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub retry_delay: Duration,
    /// Consecutive failed connects before a link reset.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_failures: u16,
    /// Send a heartbeat only when nothing else was sent for its interval.
    #[arg(long)]
    pub heartbeat_when_idle: bool,
    /// Acknowledged delivery (PROTOCOL.md): every line exactly once, in
    /// order, across reconnects, against a server that acknowledges
    /// (`longlink lab --acked`). Needs len16 framing over TCP.
    #[arg(long)]
    pub acked: bool,
    /// --acked: this run's session number (default: random).
    #[arg(long, requires = "acked")]
    pub session: Option<u32>,
    /// --acked: how long a message may wait for its ack before it is sent
    /// again (UDP) or the connection given up (TCP); doubles per timeout.
    #[arg(long, default_value = "2s", value_parser = parse_duration, requires = "acked")]
    pub ack_timeout: Duration,
    /// On SIGINT/SIGTERM, wait up to this long for the queue to empty
    /// (--acked: every message acknowledged; otherwise: every message
    /// written to the socket) before exiting. A second signal ends the wait.
    /// Either way the client reports how many queued messages were not
    /// delivered, and exits with status 1 if any were left (0 if none).
    #[arg(long, value_parser = parse_duration)]
    pub drain: Option<Duration>,
    /// Reconnect when nothing was received for this long ("off" by default).
    #[arg(long, default_value = "off", value_parser = parse_opt_duration)]
    pub idle_timeout: Toggle,
    /// Give up on a connect attempt after this long ("off" by default: the OS
    /// decides).
    #[arg(long, default_value = "off", value_parser = parse_opt_duration)]
    pub connect_timeout: Toggle,
    /// Retry delay policy.
    #[arg(long, value_enum, default_value_t = BackoffArg::Fixed)]
    pub backoff: BackoffArg,
    /// Cap of the exponential backoff.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub backoff_max: Duration,
    /// Jitter seed (default: random).
    #[arg(long)]
    pub seed: Option<u64>,
    /// tls: trust the CA certificates in this PEM file (default: the
    /// system's root certificates); a server presenting exactly one of them
    /// (a self-signed certificate) is trusted too.
    #[arg(long, value_name = "FILE", help_heading = "TLS (tls:// URLs)")]
    pub ca: Option<PathBuf>,
    /// tls: rustls (the desktop's), or embedded: the device's TLS
    /// (embedded-tls: TLS 1.3, AES-128-GCM, P-256, ECDSA certificates, the
    /// first CA of --ca), to check that a server suits the device.
    #[arg(long, value_enum, default_value_t = crate::tls::TlsStack::Rustls, help_heading = "TLS (tls:// URLs)")]
    pub tls_stack: crate::tls::TlsStack,
    /// tls: client certificate chain (PEM) for mutual TLS; needs --key.
    #[arg(
        long,
        value_name = "FILE",
        requires = "key",
        help_heading = "TLS (tls:// URLs)"
    )]
    pub cert: Option<PathBuf>,
    /// tls: private key (PEM) of --cert.
    #[arg(
        long,
        value_name = "FILE",
        requires = "cert",
        help_heading = "TLS (tls:// URLs)"
    )]
    pub key: Option<PathBuf>,
    /// tls: check the server's certificate for this name instead of HOST.
    #[arg(long, value_name = "NAME", help_heading = "TLS (tls:// URLs)")]
    pub server_name: Option<String>,
    /// tls: give up on a TLS handshake after this long (counted as a failed
    /// connect).
    #[arg(long, default_value = "10s", value_parser = parse_duration, help_heading = "TLS (tls:// URLs)")]
    pub handshake_timeout: Duration,
}

/// What `longlink client --help` says about stopping and exit status.
pub const CLIENT_EXIT: &str = "\
Stopping and exit status:
  Received messages go to stdout, one per line (--output); logs to stderr.
  The client runs until SIGINT/SIGTERM, --count, --timeout or --exit-on-eof;
  on every stop it prints a summary and the number of undelivered messages
  on stderr. Exit status: 0 when nothing queued was left undelivered, 1 when
  some was, 2 for bad options, 3 when it never connected (within
  --connect-deadline, or at all before it stopped). A closed stdout
  (`longlink client ... | head -1`) stops it quietly.";

/// What `longlink lab --help` says about its bounds (kept equal to the
/// constants in [`crate::lab`] by a unit test).
pub const LAB_BOUNDS: &str = "\
Stdin (one command per line):
  TEXT           send TEXT to every client
  @N TEXT        send TEXT to client #N only (the number the lab printed at
                 its connect; @ADDR, such as @127.0.0.1:40312, works too)
  !list          list the clients with their numbers
  !drop N        close client #N at once, unsent bytes and all (!drop all:
                 every client)
  !help          this list
  With --input hex, TEXT is hex bytes (@2 11 22 33); with --input escaped,
  \\xNN escapes (@2 \\x11\\x22\\x33). A line that starts with '!' or '@'
  as data: write it as hex or escape it (\\x21).

Bounds (hold whatever clients do):
  One I/O thread serves every client: an idle client costs one file descriptor
  and about 1 KiB. When the printer (stdout) or a --check script is slow, the
  lab stops reading from the senders, so TCP's flow control slows them; it
  never buffers without limit.
  Event queue: at most 4096 events and 2 MiB of messages, plus one message
  of at most 1 MiB. Per client: a 64 KiB outgoing buffer (TLS: plus about
  100 KiB of rustls buffers) and an unfinished inbound frame of at most 1 MiB;
  all unfinished frames together at most 32 MiB (a client that would pass it
  is dropped and logged). With the default 512 clients the lab's buffers stay
  under 69 MiB (119 MiB with --tls); the bound for the limits given is logged
  at start.
  A stdin broadcast waits at most 500 ms for room in a client's buffer, then
  skips that client (counted, logged once) and does not wait for it again
  until it has drained its buffer: a slow client never holds up the others.
  Over --max-clients, connections are accepted and closed at once (logged
  once per burst); failed accepts (out of descriptors) are retried after
  10 ms, doubling up to 1 s. Stdin lines longer than 65535 bytes are not sent.
  --acked: at most 4096 device sessions (--max-sessions, 64 B each, counted in
  the bound), the least recently heard forgotten first; acks to a client that
  does not read are dropped (counted) past its buffer plus 4 KiB.
  SIGINT/SIGTERM end the lab with a summary on stderr.";

/// `longlink lab`.
#[derive(Debug, Args)]
#[command(after_help = LAB_BOUNDS)]
pub struct LabArgs {
    /// Address to listen on: IP:PORT or HOST:PORT (localhost:5000); use
    /// 0.0.0.0:50798 to reach it from a device.
    #[arg(long, default_value = "127.0.0.1:50798", value_parser = parse_listen)]
    pub listen: SocketAddr,
    /// UDP instead of TCP.
    #[arg(long)]
    pub udp: bool,
    /// Run the acceptance script against the first client, print a report,
    /// exit 0 only if every check passed.
    #[arg(long)]
    pub check: bool,
    /// --check: print the report as one JSON object on stdout.
    #[arg(long, requires = "check")]
    pub json: bool,
    /// How events and messages are printed on stdout.
    #[arg(long, value_enum, default_value_t = OutputArg::Text)]
    pub output: OutputArg,
    /// How stdin lines are read (after any @CLIENT prefix): as text, as hex
    /// bytes, or with \xNN escapes.
    #[arg(long, value_enum, default_value_t = InputArg::Text)]
    pub input: InputArg,
    /// Message framing [default: raw; len16 with --acked].
    #[arg(long, value_enum)]
    pub framing: Option<FramingArg>,
    /// Acknowledged delivery (PROTOCOL.md): decode the clients' D/H frames,
    /// keep one duplicate filter per device session (not per connection),
    /// acknowledge cumulatively, print each message once, count and drop
    /// duplicates; stdin lines and --check's requests go as M frames.
    /// Needs len16 framing over TCP (the default with --acked), raw or len16
    /// over UDP.
    /// With --check, adds the exactly-once checks (acks lost across a drop).
    #[arg(long)]
    pub acked: bool,
    /// --acked: device sessions remembered (the least recently heard is
    /// forgotten for a new one, counted in the summary).
    #[arg(long, default_value_t = crate::lab::DEFAULT_MAX_SESSIONS, value_parser = parse_count, requires = "acked")]
    pub max_sessions: usize,
    /// The client's heartbeat message (for --check).
    #[arg(long, default_value = "heart beat")]
    pub heartbeat_payload: String,
    /// Heartbeats to wait for and time (for --check).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(2..))]
    pub heartbeats: u32,
    /// Longest wait for any one step (for --check); each step ends within
    /// it (requests within the lesser of it and 10s) plus 50ms, whatever the
    /// traffic, so a run ends within 3 x TIMEOUT + 4 x min(TIMEOUT, 10s) + 1s.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// TCP clients served at once (more are accepted and closed at once);
    /// UDP peers remembered (the least recently heard makes room).
    #[arg(long, default_value_t = crate::lab::DEFAULT_MAX_CLIENTS, value_parser = parse_count)]
    pub max_clients: usize,
    /// Drop a TCP client that sent nothing for this long ("off" by default).
    #[arg(long, default_value = "off", value_parser = parse_opt_duration)]
    pub idle_timeout: Toggle,
    /// Forget a UDP peer that sent nothing for this long.
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    pub peer_expiry: Duration,
    /// Serve TLS over TCP (needs --cert and --key).
    #[arg(long, requires_all = ["cert", "key"], conflicts_with = "udp", help_heading = "TLS")]
    pub tls: bool,
    /// --tls: the server's certificate chain (PEM).
    #[arg(long, value_name = "FILE", requires = "tls", help_heading = "TLS")]
    pub cert: Option<PathBuf>,
    /// --tls: the server's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls", help_heading = "TLS")]
    pub key: Option<PathBuf>,
    /// --tls: require client certificates issued by these CAs (PEM).
    #[arg(long, value_name = "FILE", requires = "tls", help_heading = "TLS")]
    pub client_ca: Option<PathBuf>,
}

impl LabArgs {
    /// The lab's limits from --max-clients, --idle-timeout, --peer-expiry.
    pub fn limits(&self) -> crate::lab::Limits {
        crate::lab::Limits {
            max_clients: self.max_clients,
            idle_timeout: self.idle_timeout.0,
            peer_expiry: self.peer_expiry,
            max_sessions: self.max_sessions,
        }
    }

    /// The framing: --framing, else len16 with --acked (as the client), else raw.
    pub fn framing(&self) -> Framing {
        match (self.framing, self.acked, self.udp) {
            (Some(f), _, _) => f.into(),
            (None, true, _) => Framing::Len16,
            _ => Framing::Raw,
        }
    }

    /// The rustls server configuration for --tls (`None` without it).
    pub fn tls_config(&self) -> Result<Option<std::sync::Arc<rustls::ServerConfig>>, String> {
        let (true, Some(cert), Some(key)) = (self.tls, &self.cert, &self.key) else {
            return Ok(None);
        };
        let client_roots = match &self.client_ca {
            Some(ca) => Some(crate::tls::roots(Some(ca))?),
            None => None,
        };
        crate::tls::server_config(
            crate::tls::load_certs(cert)?,
            crate::tls::load_key(key)?,
            client_roots,
        )
        .map(Some)
    }
}

/// `longlink demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Play the story over UDP instead of TCP.
    #[arg(long)]
    pub udp: bool,
}

/// `longlink bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// How long to sample idle CPU.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub idle: Duration,
    /// Latency and round-trip samples.
    #[arg(long, default_value_t = 1000)]
    pub samples: usize,
    /// The client binary to measure (default: this one).
    #[arg(long)]
    pub client: Option<std::path::PathBuf>,
    /// Messages per pipelined-throughput run.
    #[arg(long, default_value_t = 20_000)]
    pub messages: usize,
    /// Print one `key=value` line per figure (for scripts/bench.sh).
    #[arg(long)]
    pub raw: bool,
}

/// Where `longlink client` connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// TCP or UDP.
    pub transport: Transport,
    /// TLS over TCP (`tls://`).
    pub tls: bool,
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
}

impl Target {
    /// The server to connect to.
    pub fn server(&self) -> Server {
        Server::new(&self.host, self.port)
    }
}

/// Parses `tcp://HOST:PORT`, `udp://HOST:PORT` or `tls://HOST:PORT`
/// (`[::1]` for IPv6).
pub fn parse_url(s: &str) -> Result<Target, String> {
    let (scheme, rest) = s.split_once("://").ok_or_else(|| {
        format!("{s:?}: expected tcp://HOST:PORT, udp://HOST:PORT or tls://HOST:PORT")
    })?;
    let (transport, tls) = match scheme.to_ascii_lowercase().as_str() {
        "tcp" => (Transport::Tcp, false),
        "udp" => (Transport::Udp, false),
        "tls" => (Transport::Tcp, true),
        other => return Err(format!("unknown scheme {other:?}: use tcp, udp or tls")),
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (addr, after) = v6.split_once(']').ok_or_else(|| {
            format!("{s:?}: an IPv6 address opened with '[' needs its ']' (tcp://[::1]:5000)")
        })?;
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| format!("{s:?}: missing :PORT after [{addr}]"))?;
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("{addr:?} is not an IPv6 address"));
        }
        (addr, port)
    } else {
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| format!("{s:?}: missing :PORT"))?;
        if host.contains(':') {
            return Err(format!(
                "{host:?}: write IPv6 addresses as [addr] (tcp://[::1]:5000)"
            ));
        }
        check_host(host).map_err(|e| format!("{s:?}: {e}"))?;
        (host, port)
    };
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{port:?} is not a port number"))?;
    if port == 0 {
        return Err("port 0 cannot be connected to".into());
    }
    if host.is_empty() {
        return Err(format!("{s:?}: missing host"));
    }
    Ok(Target {
        transport,
        tls,
        host: host.to_string(),
        port,
    })
}

/// A heartbeat payload: at most [`HEARTBEAT_MAX`] bytes.
pub fn parse_payload(s: &str) -> Result<String, String> {
    if s.len() > HEARTBEAT_MAX {
        return Err(format!(
            "{} bytes: a heartbeat is at most {HEARTBEAT_MAX} bytes",
            s.len()
        ));
    }
    Ok(s.to_owned())
}

/// Parses a duration with humantime (`250ms`, `5s`, `1m30s`, `2h`,
/// `1.5s`), or a bare number of seconds; from 1 ms to 49 days.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let d = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| format!("{s:?}: too long"))?
    } else {
        humantime::parse_duration(s)
            .map_err(|e| format!("{s:?}: {e} (write a duration like 500ms, 10s, 1m30s)"))?
    };
    if d > Duration::from_secs(49 * 86_400) {
        return Err(format!("{s:?}: too long (at most 49 days)"));
    }
    if d < Duration::from_millis(1) {
        return Err(format!("{s:?}: must be at least 1ms"));
    }
    Ok(d)
}

/// A listening address: `IP:PORT`, or `HOST:PORT` with a host name
/// (`localhost:5000`), resolved once, the first address taken.
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?}: expected HOST:PORT (127.0.0.1:50798, localhost:50798)"))?;
    check_host(host)?;
    port.parse::<u16>()
        .map_err(|_| format!("{port:?} is not a port number"))?;
    let mut addrs = s
        .to_socket_addrs()
        .map_err(|e| format!("{host:?}: cannot resolve: {e}"))?;
    addrs
        .next()
        .ok_or_else(|| format!("{host:?}: the name has no address"))
}

/// A host name must be a plain name or address: no spaces, slashes or
/// other characters a name never has.
fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("missing host".into());
    }
    if let Some(c) = host
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '%')))
    {
        return Err(format!(
            "{host:?}: a host name cannot contain {c:?} (letters, digits, '.', '-' only)"
        ));
    }
    Ok(())
}

/// A positive whole number.
pub fn parse_count(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{s:?}: expected a whole number")),
    }
}

/// A duration that can be switched off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Toggle(pub Option<Duration>);

/// [`parse_duration`], or `off` / `none` / `0` for "disabled".
pub fn parse_opt_duration(s: &str) -> Result<Toggle, String> {
    match s.trim() {
        "off" | "none" | "0" => Ok(Toggle(None)),
        other => parse_duration(other).map(|d| Toggle(Some(d))),
    }
}

fn ms(d: Duration) -> longlink_core::time::Duration {
    longlink_core::time::Duration::from(d)
}

impl ClientArgs {
    /// For `tls://`: the verification setup from --ca, --cert, --key and
    /// --server-name (`None` for tcp:// and udp://).
    pub fn tls_setup(&self) -> Result<Option<crate::client::TlsSetup>, String> {
        if !self.url.tls {
            if self.ca.is_some()
                || self.cert.is_some()
                || self.server_name.is_some()
                || self.tls_stack != crate::tls::TlsStack::Rustls
            {
                return Err(
                    "--ca, --cert, --key, --server-name and --tls-stack need a tls:// URL".into(),
                );
            }
            return Ok(None);
        }
        let roots = crate::tls::roots(self.ca.as_deref())?;
        // Every certificate of --ca is also pinned: a server presenting
        // exactly one of them is trusted (a self-signed certificate).
        let pinned = match &self.ca {
            Some(ca) => crate::tls::load_certs(ca)?,
            None => Vec::new(),
        };
        let identity = match (&self.cert, &self.key) {
            (Some(c), Some(k)) => Some((crate::tls::load_certs(c)?, crate::tls::load_key(k)?)),
            _ => None,
        };
        let name = self.server_name.as_deref().unwrap_or(&self.url.host);
        let device = match self.tls_stack {
            crate::tls::TlsStack::Rustls => None,
            crate::tls::TlsStack::Embedded if identity.is_some() => {
                return Err("--tls-stack embedded offers no client certificate (--cert)".into())
            }
            crate::tls::TlsStack::Embedded => {
                Some(crate::device_tls::DeviceTls::new(self.ca.as_deref(), name)?)
            }
        };
        Ok(Some(crate::client::TlsSetup {
            config: crate::tls::client_config_pinned(roots, pinned, identity)?,
            server_name: crate::tls::server_name(name)?,
            handshake_timeout: self.handshake_timeout,
            device,
        }))
    }

    /// The core's config for these options.
    pub fn config(&self) -> Config {
        let framing = match (self.framing, self.acked) {
            (Some(f), _) => f.into(),
            (None, true) => Framing::Len16,
            (None, false) => Framing::Raw,
        };
        Config {
            transport: self.url.transport,
            framing,
            network_wait: Config::default().network_wait,
            radio_off: Config::default().radio_off,
            retry_delay: ms(self.retry_delay),
            max_failures: self.max_failures,
            heartbeat_interval: self.heartbeat.0.map(ms),
            // `parse_payload` checked the length.
            heartbeat_payload: payload(self.heartbeat_payload.as_bytes()).unwrap_or_default(),
            heartbeat_when_idle: self.heartbeat_when_idle,
            idle_timeout: self.idle_timeout.0.map(ms),
            connect_timeout: self.connect_timeout.0.map(ms),
            backoff: match self.backoff {
                BackoffArg::Fixed => Backoff::Fixed,
                BackoffArg::Exponential => Backoff::Exponential {
                    max: ms(self.backoff_max),
                },
            },
            seed: self.seed.unwrap_or_else(crate::clock::random_seed),
            delivery: if self.acked {
                Delivery::Acked(Acked {
                    ack_timeout: ms(self.ack_timeout),
                    ..Acked::new(
                        self.session
                            .unwrap_or_else(|| crate::clock::random_seed() as u32),
                    )
                })
            } else {
                Delivery::Socket
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = parse_url("tcp://127.0.0.1:50798").unwrap();
        assert_eq!(t.transport, Transport::Tcp);
        assert_eq!(t.server(), Server::Addr("127.0.0.1:50798".parse().unwrap()));
        let t = parse_url("udp://[::1]:9").unwrap();
        assert_eq!((t.transport, t.host.as_str()), (Transport::Udp, "::1"));
        assert!(!t.tls);
        let t = parse_url("tls://example.com:443").unwrap();
        assert_eq!((t.transport, t.tls, t.port), (Transport::Tcp, true, 443));
        let t = parse_url("TCP://example.invalid:1/").unwrap();
        assert_eq!(t.server(), Server::Host("example.invalid".into(), 1));
        for bad in [
            "127.0.0.1:5",
            "http://a:1",
            "tcp://a",
            "tcp://:5",
            "tcp://a:0",
            "tcp://a:70000",
            "tcp://fe80::x:5",
            "tcp://a b:1",
            "tcp://[::1",
            "tcp://[::1]",
            "tcp://[nope]:1",
            "tcp://a/b:1",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        for bad in ["", "s", "5x", "0", "0.1ms", "-1s", "1e9h", "ms5"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_opt_duration("off"), Ok(Toggle(None)));
        assert!(parse_url("tcp://[::1").unwrap_err().contains("']'"));
        assert!(parse_url("tcp://a b:1").unwrap_err().contains("' '"));
        assert_eq!(
            parse_listen("localhost:5000").map(|a| (a.ip().is_loopback(), a.port())),
            Ok((true, 5000))
        );
        assert!(parse_listen("a b:5000").is_err());
        assert_eq!(
            parse_opt_duration("2s"),
            Ok(Toggle(Some(Duration::from_secs(2))))
        );
    }

    #[test]
    fn defaults_are_the_tutorial() {
        let cli = Cli::try_parse_from(["longlink", "client", "tcp://127.0.0.1:50798"]).unwrap();
        let Command::Client(args) = cli.command else {
            panic!("not a client command");
        };
        let c = args.config();
        let t = Config::default();
        assert_eq!(c.retry_delay, t.retry_delay);
        assert_eq!(c.max_failures, t.max_failures);
        assert_eq!(c.heartbeat_interval, t.heartbeat_interval);
        assert_eq!(c.heartbeat_payload, t.heartbeat_payload);
        assert_eq!(c.network_wait, t.network_wait);
        assert_eq!(c.framing, t.framing);
        assert_eq!(c.backoff, t.backoff);
        assert_eq!((c.idle_timeout, c.connect_timeout), (None, None));
    }

    #[test]
    fn lab_limits_and_their_help() {
        let cli = Cli::try_parse_from(["longlink", "lab"]).unwrap();
        let Command::Lab(args) = cli.command else {
            panic!("not a lab command");
        };
        assert_eq!(args.limits(), crate::lab::Limits::default());
        let cli = Cli::try_parse_from([
            "longlink",
            "lab",
            "--max-clients",
            "7",
            "--idle-timeout",
            "30s",
            "--peer-expiry",
            "5s",
        ])
        .unwrap();
        let Command::Lab(args) = cli.command else {
            panic!("not a lab command");
        };
        let l = args.limits();
        assert_eq!(l.max_clients, 7);
        assert_eq!(l.idle_timeout, Some(Duration::from_secs(30)));
        assert_eq!(l.peer_expiry, Duration::from_secs(5));
        assert!(Cli::try_parse_from(["longlink", "lab", "--max-clients", "0"]).is_err());
        // The help states the constants the lab runs with.
        use crate::lab::*;
        let d = Limits::default();
        for fact in [
            format!("{EVENT_MESSAGES} events and {} MiB", EVENT_BYTES >> 20),
            format!("message\n  of at most {} MiB", MAX_FRAME >> 20),
            format!("{} KiB outgoing", OUTBOX >> 10),
            format!("at most {} MiB (a client", INBOUND_BUDGET >> 20),
            format!("default {} clients", d.max_clients),
            format!("under {} MiB", d.memory_bound(false).div_ceil(1 << 20)),
            format!(
                "({} MiB with --tls)",
                d.memory_bound(true).div_ceil(1 << 20)
            ),
            format!("at most {} ms for room", STALL.as_millis()),
            format!("longer than {MAX_LINE} bytes"),
            format!("at most {} device sessions", d.max_sessions),
        ] {
            assert!(LAB_BOUNDS.contains(&fact), "--help lacks {fact:?}");
        }
    }

    #[test]
    fn every_option_reaches_the_config() {
        let cli = Cli::try_parse_from([
            "longlink",
            "-v",
            "client",
            "udp://localhost:7",
            "--heartbeat",
            "off",
            "--heartbeat-payload",
            "hb",
            "--retry-delay",
            "200ms",
            "--max-failures",
            "3",
            "--framing",
            "len16",
            "--idle-timeout",
            "30s",
            "--connect-timeout",
            "2s",
            "--backoff",
            "exponential",
            "--backoff-max",
            "1m",
            "--seed",
            "42",
        ])
        .unwrap();
        assert_eq!(cli.verbose, 1);
        let Command::Client(args) = cli.command else {
            panic!("not a client command");
        };
        let c = args.config();
        assert_eq!(c.transport, Transport::Udp);
        assert_eq!(c.heartbeat_interval, None);
        assert_eq!(c.heartbeat_payload, b"hb");
        assert_eq!(c.retry_delay.as_millis(), 200);
        assert_eq!(c.max_failures, 3);
        assert_eq!(c.framing, Framing::Len16);
        assert_eq!(c.idle_timeout.map(|d| d.as_millis()), Some(30_000));
        assert_eq!(c.connect_timeout.map(|d| d.as_millis()), Some(2_000));
        assert_eq!(
            c.backoff,
            Backoff::Exponential {
                max: longlink_core::time::Duration::from_secs(60)
            }
        );
        assert_eq!(c.seed, 42);
        assert!(
            Cli::try_parse_from(["longlink", "client", "tcp://a:1", "--max-failures", "0"])
                .is_err()
        );
    }
}
