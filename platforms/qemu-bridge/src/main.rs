//! `qemu-bridge`: the host end of the QEMU firmware's emulated Ethernet.
//!
//! QEMU's `-netdev dgram` carries the LAN9118's frames as UDP datagrams on
//! 127.0.0.1. This program is the other end: its own smoltcp interface at
//! 192.0.2.1 on that link (TEST-NET-1, the firmware is 192.0.2.2). It
//! answers ARP (smoltcp), SNTP on port 123 (from the host's clock), and
//! forwards the firmware's TCP or UDP session on port 50798 to a server on
//! 127.0.0.1 through ordinary std sockets. Nothing leaves loopback.
//!
//! Faults: `--pull-at`/`--pull-for` drop every frame in both directions for
//! a while (a pulled cable that the PHY does not notice); with `--expect`
//! the bridge then checks that the given messages reach the server exactly
//! once, in order, after the link came back, and exits 0 or 1.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::socket::{tcp, udp};
use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr, IpEndpoint};

/// The bridge's MAC and address on the emulated link.
const MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
const ADDRESS: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The port the firmware connects to.
const SESSION_PORT: u16 = 50798;
const NTP_PORT: u16 = 123;
/// Seconds from 1900 (NTP) to 1970 (Unix).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// Forward the QEMU firmware's session to a server on loopback.
#[derive(Debug, Parser)]
#[command(name = "qemu-bridge", version, about)]
struct Args {
    /// Where this bridge receives QEMU's frames (QEMU's `remote.port`).
    #[arg(long, default_value = "127.0.0.1:50801", value_parser = loopback)]
    listen: SocketAddr,
    /// QEMU's end of the link (its `local.port`).
    #[arg(long, default_value = "127.0.0.1:50800", value_parser = loopback)]
    qemu: SocketAddr,
    /// The server the firmware's session goes to.
    #[arg(long, default_value = "127.0.0.1:50798", value_parser = loopback)]
    server: SocketAddr,
    /// Forward UDP instead of TCP.
    #[arg(long)]
    udp: bool,
    /// Pull the link this long after the first session started.
    #[arg(long, value_parser = parse_duration)]
    pull_at: Option<Duration>,
    /// How long the link stays pulled.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pull_for: Duration,
    /// With --pull-at: messages (comma separated) that must reach the server
    /// exactly once each, in this order, after the link is back. The bridge
    /// then exits 0 when they did, 1 when not by --seconds.
    #[arg(long, value_delimiter = ',')]
    expect: Vec<String>,
    /// With --expect: messages that must never reach the server.
    #[arg(long, value_delimiter = ',')]
    forbid: Vec<String>,
    /// QEMU's monitor (`-monitor tcp:127.0.0.1:PORT,server,nowait -S`): the
    /// bridge pulls the PHY's link there for --link-down-for, then resumes
    /// the machine (`cont`).
    #[arg(long, value_parser = loopback)]
    monitor: Option<SocketAddr>,
    /// With --monitor: how long the PHY reports no link from boot.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    link_down_for: Duration,
    /// Answer the firmware's connects with RST (no listener) for this long
    /// from start: refused connects, towards the link reset.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    refuse_for: Duration,
    /// Stop after this long (exit 1 in a --expect run, else 0).
    #[arg(long, value_parser = parse_duration)]
    seconds: Option<Duration>,
    /// Log every frame.
    #[arg(short, long)]
    verbose: bool,
}

fn loopback(s: &str) -> Result<SocketAddr, String> {
    let a: SocketAddr = s.parse().map_err(|e| format!("{s}: {e}"))?;
    if a.ip() != IpAddr::V4(Ipv4Addr::LOCALHOST) {
        return Err(format!("{a}: only 127.0.0.1 is allowed"));
    }
    Ok(a)
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, "s"), |i| (&s[..i], &s[i..]));
    let n: u64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("bad duration unit in {s:?} (ms, s, m)")),
    }
}

/// A line on stderr with the time since start.
fn log(start: Instant, msg: &str) {
    eprintln!("[bridge {:>8.3}s] {msg}", start.elapsed().as_secs_f64());
}

// ------------------------------------------------------------ the wire

/// Frame counters.
#[derive(Debug, Default, Clone, Copy)]
struct WireStats {
    rx: u64,
    tx: u64,
    dropped: u64,
    /// TCP SYNs from the firmware (connect attempts as the wire sees them).
    syns: u64,
}

/// Whether `frame` is an Ethernet/IPv4/TCP segment with SYN set and ACK not.
fn is_syn(frame: &[u8]) -> bool {
    use smoltcp::wire::{EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet, TcpPacket};
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return false;
    };
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return false;
    }
    let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
        return false;
    };
    if ip.next_header() != IpProtocol::Tcp {
        return false;
    }
    TcpPacket::new_checked(ip.payload()).is_ok_and(|tcp| tcp.syn() && !tcp.ack())
}

/// QEMU's dgram netdev as a smoltcp device: one datagram, one frame.
struct Wire {
    sock: UdpSocket,
    /// The link is pulled: every frame is dropped, both ways.
    pulled: bool,
    stats: WireStats,
    verbose: bool,
}

impl Device for Wire {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _: smoltcp::time::Instant) -> Option<(RxToken, TxToken<'_>)> {
        let mut buf = vec![0u8; 2048];
        loop {
            let n = self.sock.recv(&mut buf).ok()?;
            if self.pulled {
                self.stats.dropped += 1;
                continue;
            }
            self.stats.rx += 1;
            if is_syn(&buf[..n]) {
                self.stats.syns += 1;
            }
            if self.verbose {
                eprintln!("  <- frame {n} B");
            }
            buf.truncate(n);
            return Some((
                RxToken(buf),
                TxToken {
                    wire: self,
                    _p: std::marker::PhantomData,
                },
            ));
        }
    }

    fn transmit(&mut self, _: smoltcp::time::Instant) -> Option<TxToken<'_>> {
        Some(TxToken {
            wire: self,
            _p: std::marker::PhantomData,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = 1514;
        caps
    }
}

struct RxToken(Vec<u8>);

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

struct TxToken<'a> {
    wire: &'a mut Wire,
    _p: std::marker::PhantomData<&'a ()>,
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0u8; len];
        let r = f(&mut frame);
        if self.wire.pulled {
            self.wire.stats.dropped += 1;
        } else {
            // A full socket buffer loses the frame, like a busy wire.
            match self.wire.sock.send(&frame) {
                Ok(_) => self.wire.stats.tx += 1,
                Err(_) => self.wire.stats.dropped += 1,
            }
            if self.wire.verbose {
                eprintln!("  -> frame {len} B");
            }
        }
        r
    }
}

// ------------------------------------------------------------ SNTP

/// The 48-byte server answer to an SNTP request, stamped with `now`.
fn sntp_answer(request: &[u8], now: SystemTime) -> Option<[u8; 48]> {
    if request.len() < 48 || request[0] & 0x07 != 3 {
        return None; // not a client request
    }
    let since = now.duration_since(UNIX_EPOCH).ok()?;
    let secs = (since.as_secs() + NTP_UNIX_OFFSET) as u32;
    let frac = ((u64::from(since.subsec_nanos()) << 32) / 1_000_000_000) as u32;
    let mut stamp = [0u8; 8];
    stamp[..4].copy_from_slice(&secs.to_be_bytes());
    stamp[4..].copy_from_slice(&frac.to_be_bytes());
    let mut a = [0u8; 48];
    a[0] = (4 << 3) | 4; // leap 0, version 4, mode 4 (server)
    a[1] = 1; // stratum 1: the host's clock is our reference
    a[2] = request[2];
    a[3] = 0xec; // precision 2^-20 s
    a[12..16].copy_from_slice(b"LOCL");
    a[16..24].copy_from_slice(&stamp); // reference
    a[24..32].copy_from_slice(&request[40..48]); // origin = their transmit
    a[32..40].copy_from_slice(&stamp); // receive
    a[40..48].copy_from_slice(&stamp); // transmit
    Some(a)
}

// ------------------------------------------------------------ sessions

/// One forwarded TCP connection.
struct TcpSession {
    handle: SocketHandle,
    id: u32,
    up: Option<TcpStream>,
    /// The server closed its side.
    up_eof: bool,
    /// The firmware's FIN was passed on.
    fw_eof: bool,
    to_fw: VecDeque<u8>,
    to_up: VecDeque<u8>,
    /// Closed and waiting for smoltcp to send its last segment.
    dead_since: Option<Instant>,
}

/// The firmware's UDP endpoint and the host socket that stands for it.
struct UdpPeer {
    firmware: IpEndpoint,
    sock: UdpSocket,
    id: u32,
}

/// What went to the server, for the fault verdict.
#[derive(Default)]
struct Ledger {
    bytes: Vec<u8>,
    /// Index into `bytes` when the link came back.
    restored_at: Option<usize>,
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    if needle.is_empty() {
        return 0;
    }
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl Ledger {
    /// `Ok(detail)` when every expected message reached the server exactly
    /// once, in order, after the restore, and no forbidden one did.
    fn verdict(&self, expect: &[String], forbid: &[String]) -> Result<String, String> {
        let Some(restored) = self.restored_at else {
            return Err("the link was never restored".into());
        };
        let mut last = restored;
        for m in expect {
            let n = count(&self.bytes, m.as_bytes());
            if n != 1 {
                return Err(format!("{m:?} reached the server {n} times"));
            }
            let at = find(&self.bytes, m.as_bytes()).unwrap_or(0);
            if at < last {
                return Err(format!("{m:?} out of order or before the restore"));
            }
            last = at;
        }
        for m in forbid {
            if count(&self.bytes, m.as_bytes()) != 0 {
                return Err(format!("{m:?} reached the server"));
            }
        }
        Ok(format!(
            "{} message(s) once each, in order, after the restore ({} B forwarded in all)",
            expect.len(),
            self.bytes.len()
        ))
    }
}

struct Bridge {
    args: Args,
    start: Instant,
    sessions: Vec<TcpSession>,
    udp_session: Option<SocketHandle>,
    udp_peers: Vec<UdpPeer>,
    sntp: SocketHandle,
    next_id: u32,
    first_session: Option<Instant>,
    ledger: Ledger,
    sntp_answers: u32,
    refused_logged: bool,
    accepting_logged: bool,
}

/// QEMU's human monitor over loopback TCP.
struct Monitor(TcpStream);

impl Monitor {
    fn connect(addr: SocketAddr) -> std::io::Result<Monitor> {
        let mut last = None;
        for _ in 0..50 {
            match TcpStream::connect(addr) {
                Ok(s) => {
                    s.set_nonblocking(true)?;
                    return Ok(Monitor(s));
                }
                Err(e) => last = Some(e),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(last.unwrap_or_else(|| ErrorKind::TimedOut.into()))
    }

    fn command(&mut self, cmd: &str) -> std::io::Result<()> {
        self.0.write_all(format!("{cmd}\n").as_bytes())?;
        self.drain();
        Ok(())
    }

    /// Reads and drops what the monitor printed.
    fn drain(&mut self) {
        let mut buf = [0u8; 1024];
        while matches!(self.0.read(&mut buf), Ok(n) if n > 0) {}
    }
}

impl Bridge {
    fn log(&self, msg: &str) {
        log(self.start, msg);
    }

    fn sntp(&mut self, sockets: &mut SocketSet<'_>) {
        let sock = sockets.get_mut::<udp::Socket>(self.sntp);
        let mut buf = [0u8; 128];
        while let Ok((n, meta)) = sock.recv_slice(&mut buf) {
            if let Some(answer) = sntp_answer(&buf[..n], SystemTime::now()) {
                if sock.send_slice(&answer, meta.endpoint).is_ok() {
                    self.sntp_answers += 1;
                    log(
                        self.start,
                        &format!("sntp: answered {} with the host's time", meta.endpoint),
                    );
                }
            }
        }
    }

    fn new_listener(sockets: &mut SocketSet<'_>) -> Option<SocketHandle> {
        let mut sock = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 8192]),
            tcp::SocketBuffer::new(vec![0; 8192]),
        );
        sock.listen(SESSION_PORT).ok()?;
        Some(sockets.add(sock))
    }

    fn tcp(&mut self, sockets: &mut SocketSet<'_>, syns: u64) {
        let listening = self
            .sessions
            .iter()
            .any(|s| sockets.get::<tcp::Socket>(s.handle).is_listening());
        let refusing = self.start.elapsed() < self.args.refuse_for;
        if refusing && !self.refused_logged {
            self.refused_logged = true;
            self.log(&format!(
                "refusing connects (RST) for {:?}",
                self.args.refuse_for
            ));
        }
        if !refusing && self.refused_logged && !self.accepting_logged {
            self.accepting_logged = true;
            self.log(&format!(
                "accepting connects again ({syns} SYNs refused meanwhile)"
            ));
        }
        if !listening && !refusing {
            if let Some(handle) = Self::new_listener(sockets) {
                self.sessions.push(TcpSession {
                    handle,
                    id: 0,
                    up: None,
                    up_eof: false,
                    fw_eof: false,
                    to_fw: VecDeque::new(),
                    to_up: VecDeque::new(),
                    dead_since: None,
                });
            }
        }
        let mut buf = vec![0u8; 8192];
        let start = self.start;
        for s in &mut self.sessions {
            let sock = sockets.get_mut::<tcp::Socket>(s.handle);
            if s.id == 0 && sock.state() == tcp::State::Established {
                self.next_id += 1;
                s.id = self.next_id;
                let peer = sock
                    .remote_endpoint()
                    .map_or_else(|| "?".into(), |e| e.to_string());
                self.first_session.get_or_insert_with(Instant::now);
                match TcpStream::connect_timeout(&self.args.server, Duration::from_secs(2)) {
                    Ok(up) => {
                        let _ = up.set_nodelay(true);
                        let _ = up.set_nonblocking(true);
                        log(
                            start,
                            &format!(
                                "tcp session {}: firmware {peer} -> server {}",
                                s.id, self.args.server
                            ),
                        );
                        s.up = Some(up);
                    }
                    Err(e) => {
                        // Passed on as a refused connection.
                        log(
                            start,
                            &format!("tcp session {}: server refused ({e}): RST", s.id),
                        );
                        sock.abort();
                    }
                }
            }
            let Some(up) = s.up.as_mut() else {
                if s.id != 0 && s.dead_since.is_none() && !sock.is_open() {
                    s.dead_since = Some(Instant::now());
                }
                continue;
            };
            // Firmware -> server.
            while sock.can_recv() {
                match sock.recv_slice(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if s.up_eof {
                            // The server's socket is gone: a host answers
                            // data for it with RST.
                            log(
                                start,
                                &format!("tcp session {}: data after the server closed: RST", s.id),
                            );
                            sock.abort();
                            break;
                        }
                        self.ledger.bytes.extend_from_slice(&buf[..n]);
                        s.to_up.extend(&buf[..n]);
                    }
                }
            }
            while !s.to_up.is_empty() && !s.up_eof {
                let (a, _) = s.to_up.as_slices();
                match up.write(a) {
                    Ok(0) => break,
                    Ok(n) => {
                        s.to_up.drain(..n);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => {
                        s.up_eof = true;
                        s.to_up.clear();
                    }
                }
            }
            if !s.fw_eof && !sock.may_recv() && s.to_up.is_empty() {
                // The firmware closed its side (or the socket died).
                s.fw_eof = true;
                let _ = up.shutdown(Shutdown::Write);
                log(start, &format!("tcp session {}: firmware closed", s.id));
            }
            // Server -> firmware.
            while !s.up_eof && s.to_fw.len() < 16384 {
                match up.read(&mut buf) {
                    Ok(0) => {
                        s.up_eof = true;
                        log(
                            start,
                            &format!("tcp session {}: server closed: FIN to the firmware", s.id),
                        );
                    }
                    Ok(n) => s.to_fw.extend(&buf[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => s.up_eof = true,
                }
            }
            while !s.to_fw.is_empty() && sock.can_send() {
                let (a, _) = s.to_fw.as_slices();
                match sock.send_slice(a) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        s.to_fw.drain(..n);
                    }
                }
            }
            if s.up_eof && s.to_fw.is_empty() && sock.may_send() {
                sock.close();
            }
            if !sock.is_open() && s.dead_since.is_none() {
                s.dead_since = Some(Instant::now());
                log(start, &format!("tcp session {}: over", s.id));
            }
        }
        // Forget sessions whose last segment had time to go out.
        let now = Instant::now();
        self.sessions.retain(|s| {
            let gone = s
                .dead_since
                .is_some_and(|t| now - t > Duration::from_millis(500));
            if gone {
                sockets.remove(s.handle);
            }
            !gone
        });
    }

    fn udp(&mut self, sockets: &mut SocketSet<'_>) {
        let Some(handle) = self.udp_session else {
            return;
        };
        let sock = sockets.get_mut::<udp::Socket>(handle);
        let mut buf = vec![0u8; 2048];
        while let Ok((n, meta)) = sock.recv_slice(&mut buf) {
            let ep = meta.endpoint;
            let idx = match self.udp_peers.iter().position(|p| p.firmware == ep) {
                Some(i) => i,
                None => {
                    let Ok(host) = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)) else {
                        continue;
                    };
                    if host.connect(self.args.server).is_err()
                        || host.set_nonblocking(true).is_err()
                    {
                        continue;
                    }
                    self.next_id += 1;
                    self.first_session.get_or_insert_with(Instant::now);
                    log(
                        self.start,
                        &format!(
                            "udp session {}: firmware {ep} -> server {} (from {})",
                            self.next_id,
                            self.args.server,
                            host.local_addr()
                                .map_or_else(|_| "?".into(), |a| a.to_string())
                        ),
                    );
                    self.udp_peers.push(UdpPeer {
                        firmware: ep,
                        sock: host,
                        id: self.next_id,
                    });
                    // Older endpoints stay (late answers still find their way).
                    if self.udp_peers.len() > 8 {
                        self.udp_peers.remove(0);
                    }
                    self.udp_peers.len() - 1
                }
            };
            self.ledger.bytes.extend_from_slice(&buf[..n]);
            let _ = self.udp_peers[idx].sock.send(&buf[..n]);
        }
        for p in &self.udp_peers {
            while let Ok(n) = p.sock.recv(&mut buf) {
                if sock.send_slice(&buf[..n], p.firmware).is_err() {
                    log(
                        self.start,
                        &format!("udp session {}: firmware queue full, dropped", p.id),
                    );
                }
            }
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let start = Instant::now();
    if !args.expect.is_empty() && args.pull_at.is_none() {
        eprintln!("qemu-bridge: --expect needs --pull-at");
        return ExitCode::from(2);
    }
    let sock = match UdpSocket::bind(args.listen).and_then(|s| {
        s.connect(args.qemu)?;
        s.set_nonblocking(true)?;
        Ok(s)
    }) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("qemu-bridge: cannot use {}: {e}", args.listen);
            return ExitCode::from(2);
        }
    };
    let mut wire = Wire {
        sock,
        pulled: false,
        stats: WireStats::default(),
        verbose: args.verbose,
    };
    let mut config = Config::new(EthernetAddress(MAC).into());
    config.random_seed = u64::from(std::process::id());
    let mut iface = Interface::new(config, &mut wire, smoltcp::time::Instant::now());
    iface.update_ip_addrs(|a| {
        let _ = a.push(IpCidr::new(IpAddress::Ipv4(ADDRESS), 24));
    });
    let mut sockets = SocketSet::new(vec![]);
    let mut sntp = udp::Socket::new(
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 8], vec![0; 1024]),
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 8], vec![0; 1024]),
    );
    if sntp.bind(NTP_PORT).is_err() {
        return ExitCode::from(2);
    }
    let sntp = sockets.add(sntp);
    let udp_session = if args.udp {
        let mut s = udp::Socket::new(
            udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 64], vec![0; 65536]),
            udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 64], vec![0; 65536]),
        );
        if s.bind(SESSION_PORT).is_err() {
            return ExitCode::from(2);
        }
        Some(sockets.add(s))
    } else {
        None
    };
    log(
        start,
        &format!(
            "192.0.2.1 on QEMU's link ({} <-> {}), {} sessions on port {SESSION_PORT} -> {}, SNTP on 123",
            args.listen,
            args.qemu,
            if args.udp { "UDP" } else { "TCP" },
            args.server
        ),
    );
    let mut bridge = Bridge {
        args,
        start,
        sessions: Vec::new(),
        udp_session,
        udp_peers: Vec::new(),
        sntp,
        next_id: 0,
        first_session: None,
        ledger: Ledger::default(),
        sntp_answers: 0,
        refused_logged: false,
        accepting_logged: false,
    };
    let mut monitor = None;
    let mut link_up_sent = false;
    if let Some(addr) = bridge.args.monitor {
        let mut m = match Monitor::connect(addr) {
            Ok(m) => m,
            Err(e) => {
                bridge.log(&format!("cannot reach QEMU's monitor at {addr}: {e}"));
                return ExitCode::from(2);
            }
        };
        let down = !bridge.args.link_down_for.is_zero();
        let ok = (!down || m.command("set_link n0 off").is_ok()) && m.command("cont").is_ok();
        if !ok {
            bridge.log("QEMU's monitor did not take the commands");
            return ExitCode::from(2);
        }
        if down {
            bridge.log(&format!(
                "PHY link DOWN (QEMU set_link) for {:?}",
                bridge.args.link_down_for
            ));
        } else {
            link_up_sent = true;
        }
        monitor = Some(m);
    }
    let mut pulled_at: Option<Instant> = None;
    let mut restored = false;
    loop {
        let now = Instant::now();
        iface.poll(smoltcp::time::Instant::now(), &mut wire, &mut sockets);
        bridge.sntp(&mut sockets);
        if bridge.args.udp {
            bridge.udp(&mut sockets);
        } else {
            bridge.tcp(&mut sockets, wire.stats.syns);
        }
        iface.poll(smoltcp::time::Instant::now(), &mut wire, &mut sockets);

        if let Some(m) = monitor.as_mut() {
            // Kept open to the end: closing it could drop a command QEMU
            // has not read yet.
            m.drain();
            if !link_up_sent && now - start >= bridge.args.link_down_for {
                link_up_sent = true;
                if m.command("set_link n0 on").is_err() {
                    bridge.log("QEMU's monitor went away");
                    return ExitCode::from(2);
                }
                bridge.log("PHY link UP (QEMU set_link)");
            }
        }

        // The fault: pull the link, then restore it.
        if let (Some(at), Some(first)) = (bridge.args.pull_at, bridge.first_session) {
            if pulled_at.is_none() && !restored && now - first >= at {
                pulled_at = Some(now);
                wire.pulled = true;
                bridge.log(&format!(
                    "link PULLED: every frame dropped for {:?}",
                    bridge.args.pull_for
                ));
            }
            if let Some(p) = pulled_at {
                if !restored && now - p >= bridge.args.pull_for {
                    restored = true;
                    wire.pulled = false;
                    bridge.ledger.restored_at = Some(bridge.ledger.bytes.len());
                    bridge.log(&format!(
                        "link RESTORED ({} frames dropped)",
                        wire.stats.dropped
                    ));
                }
            }
        }
        if !bridge.args.expect.is_empty() && restored {
            if let Ok(detail) = bridge
                .ledger
                .verdict(&bridge.args.expect, &bridge.args.forbid)
            {
                bridge.log(&format!("PASS  delivered after the outage: {detail}"));
                return ExitCode::SUCCESS;
            }
        }
        if bridge.args.seconds.is_some_and(|s| now - start >= s) {
            bridge.log(&format!(
                "time is up: frames rx {} tx {} dropped {}, {} SYNs, {} SNTP answers",
                wire.stats.rx,
                wire.stats.tx,
                wire.stats.dropped,
                wire.stats.syns,
                bridge.sntp_answers
            ));
            if bridge.args.expect.is_empty() {
                return ExitCode::SUCCESS;
            }
            let why = bridge
                .ledger
                .verdict(&bridge.args.expect, &bridge.args.forbid)
                .err()
                .unwrap_or_default();
            bridge.log(&format!("FAIL  delivered after the outage: {why}"));
            return ExitCode::FAILURE;
        }
        let delay = iface
            .poll_delay(smoltcp::time::Instant::now(), &sockets)
            .map_or(Duration::from_millis(2), |d| {
                Duration::from_micros(d.total_micros()).min(Duration::from_millis(2))
            });
        std::thread::sleep(delay);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sntp_answer_echoes_the_nonce_and_stamps_the_time() {
        let mut req = [0u8; 48];
        req[0] = (4 << 3) | 3;
        req[40..48].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        let t = UNIX_EPOCH + Duration::from_secs(1_732_492_800);
        let a = sntp_answer(&req, t).unwrap_or([0; 48]);
        assert_eq!(a[0] & 7, 4);
        assert_eq!(a[1], 1);
        assert_eq!(&a[24..32], &[1, 2, 3, 4, 5, 6, 7, 8]);
        let secs = u32::from_be_bytes([a[40], a[41], a[42], a[43]]);
        assert_eq!(u64::from(secs), 1_732_492_800 + NTP_UNIX_OFFSET);
        // A server answer, or junk, gets none.
        req[0] = (4 << 3) | 4;
        assert!(sntp_answer(&req, t).is_none());
        assert!(sntp_answer(&[0u8; 10], t).is_none());
    }

    #[test]
    fn syns_are_told_from_other_frames() {
        use smoltcp::wire::{
            EthernetAddress, EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Address, Ipv4Packet,
            TcpPacket,
        };
        let mut frame = vec![0u8; 14 + 20 + 20];
        let mut eth = EthernetFrame::new_unchecked(&mut frame[..]);
        eth.set_ethertype(EthernetProtocol::Ipv4);
        eth.set_src_addr(EthernetAddress([2, 0, 0, 0, 0, 2]));
        let mut ip = Ipv4Packet::new_unchecked(eth.payload_mut());
        ip.set_version(4);
        ip.set_header_len(20);
        ip.set_total_len(40);
        ip.set_next_header(IpProtocol::Tcp);
        ip.set_src_addr(Ipv4Address::new(192, 0, 2, 2));
        ip.set_dst_addr(Ipv4Address::new(192, 0, 2, 1));
        let mut tcp = TcpPacket::new_unchecked(ip.payload_mut());
        tcp.set_header_len(20);
        tcp.set_syn(true);
        assert!(is_syn(&frame));
        let mut eth = EthernetFrame::new_unchecked(&mut frame[..]);
        let mut ip = Ipv4Packet::new_unchecked(eth.payload_mut());
        TcpPacket::new_unchecked(ip.payload_mut()).set_ack(true);
        assert!(!is_syn(&frame), "a SYN-ACK is not a connect attempt");
        assert!(!is_syn(&[0u8; 10]));
    }

    #[test]
    fn the_verdict_needs_each_message_once_in_order_after_the_restore() {
        let expect: Vec<String> = ["a;", "b;"].iter().map(|s| s.to_string()).collect();
        let mut l = Ledger {
            bytes: b"hb a;".to_vec(),
            restored_at: None,
        };
        assert!(l.verdict(&expect, &[]).is_err(), "never restored");
        l.restored_at = Some(l.bytes.len());
        l.bytes.extend_from_slice(b"b;a;");
        assert!(l.verdict(&expect, &[]).is_err(), "a twice");
        l.bytes = b"xx".to_vec();
        l.restored_at = Some(2);
        l.bytes.extend_from_slice(b"b;a;");
        assert!(l.verdict(&expect, &[]).is_err(), "out of order");
        l.bytes = b"xxa;b;".to_vec();
        assert!(l.verdict(&expect, &[]).is_ok());
        assert!(l.verdict(&expect, &["x".into()]).is_err(), "forbidden");
        assert!(loopback("10.0.0.1:1").is_err());
        assert!(loopback("127.0.0.1:1").is_ok());
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    }
}
