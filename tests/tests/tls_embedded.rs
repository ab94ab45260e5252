//! The embedded TLS path end to end: the nal-async driver with
//! `longlink_nal_async::tls` (embedded-tls, no alloc) in a TLS task beside
//! it, over `std-embedded-nal-async` sockets, against the lab serving TLS
//! with rustls, over loopback, with certificates made in the test.
// Test harness helpers outside #[test] fns unwrap too.
#![allow(clippy::unwrap_used)]

mod tls_common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use embassy_futures::join::join;
use embassy_futures::select::select;
use embassy_sync::signal::Signal;
use longlink_core::time::Duration as Ms;
use longlink_core::{
    Config, Connection, Event as CoreEvent, Framing, Remote, Stats, Status, TestProtocol,
};
use longlink_nal_async::tls::embedded_tls::{NoClock, TlsClock};
use longlink_nal_async::tls::rand_core::{CryptoRng, Error as RngError, RngCore};
use longlink_nal_async::tls::{ServerCheck, TlsTcp};
use longlink_nal_async::{
    AlwaysUp, Clock, CriticalSectionRawMutex as Cs, Event, Longlink, Net, NoopRawMutex,
};
use longlink_std::check::{self, CheckOptions};
use longlink_std::clock::StdClock;
use longlink_std::lab::{Lab, LabEvent};
use longlink_tests::Setup;
use std_embedded_nal_async::Stack;
use tls_common::{server, Ca, Validity};

const Q: usize = 2048;
const R: usize = 256;
const T: Duration = Duration::from_secs(10);
type Link = Longlink<Cs, TestProtocol, Q, R>;

/// Not a secure generator: a test needs distinct keys per handshake, not
/// secrecy.
struct TestRng(u64);

impl RngCore for TestRng {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }
    fn next_u64(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), RngError> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for TestRng {}

/// The host's clock, for certificate validity.
struct SysClock;

impl TlsClock for SysClock {
    fn now() -> Option<u64> {
        Some(longlink_std::clock::unix_time_ms()? / 1000)
    }
}

/// What a test wants verified.
#[derive(Clone)]
struct Trust {
    ca: Vec<u8>,
    name: &'static str,
    clock: bool,
}

/// The driver and its TLS task on a thread of their own, as firmware runs
/// them.
struct Driver {
    link: Arc<Link>,
    events: Arc<Mutex<Vec<String>>>,
    stop: Arc<Signal<Cs, ()>>,
    thread: Option<JoinHandle<()>>,
}

impl Driver {
    fn start(setup: Setup, trust: Trust) -> Driver {
        let Setup { addr, config } = setup;
        let clock = StdClock::new();
        let conn = Connection::new(config, TestProtocol::default(), clock.now()).unwrap();
        let link = Arc::new(Longlink::new(conn));
        let events = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(Signal::new());
        let (l, e, s) = (link.clone(), events.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let tls: TlsTcp<NoopRawMutex, 256, 256> = TlsTcp::new();
            let mut read_record = vec![0u8; 16640];
            let mut write_record = vec![0u8; 1024];
            let mut scratch = vec![0u8; 512];
            let seed = longlink_std::clock::random_seed();
            let mut rng = TestRng(seed);
            let mut modem = AlwaysUp;
            let hook = |ev: Event<'_>| {
                let text = match ev {
                    Event::Sent(_) | Event::Received(_) => return,
                    other => format!("{other:?}"),
                };
                e.lock().unwrap().push(text);
            };
            let check = ServerCheck::new(&trust.ca, trust.name);
            let driver = l.run(
                Net::tcp(&tls),
                Remote::Addr(addr),
                &clock,
                &mut modem,
                &mut scratch,
                hook,
            );
            async_io::block_on(async {
                if trust.clock {
                    let task = tls.run(
                        Stack::default(),
                        check.clock::<SysClock>(),
                        &mut rng,
                        &mut read_record,
                        &mut write_record,
                    );
                    select(join(task, driver), s.wait()).await;
                } else {
                    let task = tls.run(
                        Stack::default(),
                        check.clock::<NoClock>(),
                        &mut rng,
                        &mut read_record,
                        &mut write_record,
                    );
                    select(join(task, driver), s.wait()).await;
                }
            });
        });
        Driver {
            link,
            events,
            stop,
            thread: Some(thread),
        }
    }

    fn failures(&self) -> Vec<String> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.starts_with("StackError"))
            .cloned()
            .collect()
    }

    fn saw_reset(&self) -> bool {
        let want = format!("{:?}", Event::Core(CoreEvent::LinkReset));
        self.events.lock().unwrap().contains(&want)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.stop.signal(());
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn any() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn config(addr: SocketAddr) -> Setup {
    Setup {
        addr,
        config: Config {
            framing: Framing::Lines,
            heartbeat_interval: Some(Ms::from_millis(150)),
            retry_delay: Ms::from_millis(100),
            connect_timeout: Some(Ms::from_secs(5)),
            ..Config::default()
        },
    }
}

fn trust(ca: &Ca, name: &'static str) -> Trust {
    Trust {
        ca: ca.cert.to_vec(),
        name,
        clock: true,
    }
}

fn wait(timeout: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while !ok() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

#[test]
fn embedded_tls_passes_the_acceptance_script() {
    let ca = Ca::new("longlink test CA");
    let id = ca.issue(&["localhost"], Validity::Current);
    let lab = Lab::start_tls(any(), Framing::Lines, server(&id, None)).unwrap();
    let d = Driver::start(config(lab.local_addr()), trust(&ca, "localhost"));
    let opts = CheckOptions {
        heartbeat: b"heart beat".to_vec(),
        heartbeats: 3,
        timeout: T,
    };
    let report = check::run(&lab, &opts, |_| {});
    assert!(report.passed(), "{}", report.render());
    assert_eq!(report.checks.len(), 7);
    let s = d.link.stats();
    assert_eq!(
        (s.connect_failures, s.replies_dropped, s.frames_rejected),
        (0, 0, 0),
        "{s:?}"
    );
    assert!(s.connects >= 2, "the script's reconnect: {s:?}");
}

fn assert_rejected(what: &str, d: &Driver, reason: &str) -> Stats {
    assert!(
        wait(T, || d.saw_reset()),
        "{what}: no link reset; {:?}",
        d.failures()
    );
    let s = d.link.stats();
    let failures = d.failures();
    assert!(failures.len() >= 2, "{what}: {failures:?}");
    assert!(
        failures.iter().all(|f| f.contains(reason)),
        "{what}: want {reason:?} in every failure: {failures:?}"
    );
    assert_eq!(s.connects, 0, "{what}: {s:?}");
    assert!(
        s.connect_failures >= 2 && s.link_resets >= 1,
        "{what}: {s:?}"
    );
    assert_eq!(s.messages_out, 0, "{what}: nothing sent in the clear");
    s
}

fn rejecting(addr: SocketAddr, trust: Trust) -> Driver {
    let mut c = config(addr);
    c.retry_delay = Ms::from_millis(30);
    c.max_failures = 2;
    c.connect_timeout = Some(Ms::from_millis(300));
    Driver::start(c, trust)
}

#[test]
fn bad_certificates_and_plain_servers_are_failed_connects_up_to_a_link_reset() {
    let ca = Ca::new("longlink test CA");
    let other = Ca::new("someone else's CA");
    let good = ca.issue(&["localhost"], Validity::Current);
    let expired = ca.issue(&["localhost"], Validity::Expired);
    let stranger = other.issue(&["localhost"], Validity::Current);
    for (what, id, name, reason) in [
        // embedded-tls reports a certificate it cannot verify as
        // InvalidCertificate, whatever the cause.
        ("wrong CA", &stranger, "localhost", "InvalidCertificate"),
        ("wrong name", &good, "example.com", "InvalidCertificate"),
        ("expired", &expired, "localhost", "InvalidCertificate"),
    ] {
        let lab = Lab::start_tls(any(), Framing::Lines, server(id, None)).unwrap();
        let d = rejecting(lab.local_addr(), trust(&ca, name));
        assert_rejected(what, &d, reason);
        drop(d);
        while let Some(e) = lab.next_event(Duration::ZERO) {
            assert!(!matches!(e, LabEvent::Connected { .. }), "{what}: {e:?}");
        }
    }

    // A silent plain TCP server: the core's connect timeout ends each
    // handshake.
    let plain = Lab::start(any(), longlink_core::Transport::Tcp, Framing::Raw).unwrap();
    let d = rejecting(plain.local_addr(), trust(&ca, "localhost"));
    assert!(wait(T, || d.saw_reset()));
    let s = d.link.stats();
    assert!(
        s.connect_timeouts >= 2 && s.connects == 0 && s.link_resets >= 1,
        "{s:?}"
    );
    drop(d);

    // A plain TCP server that answers in the clear.
    let talker = TcpListener::bind(any()).unwrap();
    let addr = talker.local_addr().unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let stop = done.clone();
    let server = std::thread::spawn(move || {
        talker.set_nonblocking(true).unwrap();
        while !stop.load(Ordering::SeqCst) {
            match talker.accept() {
                Ok((mut s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    let mut hello = [0u8; 512];
                    let _ = s.read(&mut hello);
                    let _ = s.write_all(b"back hello\nheart beat\n");
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    let d = rejecting(addr, trust(&ca, "localhost"));
    assert_rejected("talking plain server", &d, "Tls(");
    drop(d);
    done.store(true, Ordering::SeqCst);
    server.join().unwrap();
}

#[test]
fn without_a_clock_an_expired_certificate_is_accepted_as_documented() {
    let ca = Ca::new("longlink test CA");
    let expired = ca.issue(&["localhost"], Validity::Expired);
    let lab = Lab::start_tls(any(), Framing::Lines, server(&expired, None)).unwrap();
    let mut t = trust(&ca, "localhost");
    t.clock = false;
    let d = Driver::start(config(lab.local_addr()), t);
    assert!(wait(T, || d.link.status() == Status::Connected));
}

#[test]
fn over_embedded_tls_a_server_restart_delivers_queued_messages_once_in_order() {
    let ca = Ca::new("longlink test CA");
    let id = ca.issue(&["localhost"], Validity::Current);
    let server_config = server(&id, None);
    let lab = Lab::start_tls(any(), Framing::Lines, server_config.clone()).unwrap();
    let addr = lab.local_addr();
    let mut c = config(addr);
    c.heartbeat_interval = Some(Ms::from_secs(30));
    let d = Driver::start(c, trust(&ca, "localhost"));
    d.link.try_enqueue(b"before").unwrap();
    let got = lab.wait_for(
        Instant::now() + T,
        |e| matches!(e, LabEvent::Message { bytes, .. } if bytes == b"before").then_some(()),
        drop,
    );
    assert_eq!(got, Some(()));
    drop(lab);
    assert!(wait(T, || d.link.status() != Status::Connected));
    for i in 0..50 {
        d.link.try_enqueue(format!("m{i}").as_bytes()).unwrap();
    }
    assert!(wait(T, || d.link.stats().connect_failures >= 1));
    let lab = Lab::start_tls(addr, Framing::Lines, server_config).unwrap();
    let got = messages(&lab, 50, T);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        messages(&lab, 1, Duration::ZERO).is_empty(),
        "no duplicates"
    );
    let want: Vec<Vec<u8>> = (0..50).map(|i| format!("m{i}").into_bytes()).collect();
    assert_eq!(got, want, "each queued message once, in order");
    assert_eq!(d.link.queued(), 0);
    assert_eq!(d.link.stats().connects, 2);
}

/// Messages other than heartbeats, until `n` arrived or `timeout`.
fn messages(lab: &Lab, n: usize, timeout: Duration) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    while got.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match lab.next_event(left) {
            Some(LabEvent::Message { bytes, .. }) if bytes != b"heart beat" => got.push(bytes),
            Some(_) => {}
            None => break,
        }
    }
    got
}

/// Forwards loopback TCP both ways; server-to-client bytes go in `chunk`
/// byte pieces with a pause after each, so TLS records reach the client
/// in many reads.
fn dribbling_proxy(to: SocketAddr, chunk: usize) -> (SocketAddr, Arc<AtomicBool>) {
    let listener = TcpListener::bind(any()).unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let st = stop.clone();
    std::thread::spawn(move || {
        listener.set_nonblocking(true).unwrap();
        while !st.load(Ordering::SeqCst) {
            let Ok((client, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            client.set_nonblocking(false).unwrap();
            let upstream = TcpStream::connect(to).unwrap();
            let (mut c_in, mut u_out) =
                (client.try_clone().unwrap(), upstream.try_clone().unwrap());
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = c_in.read(&mut buf) {
                    if n == 0 || u_out.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = u_out.shutdown(std::net::Shutdown::Both);
            });
            let (mut u_in, mut c_out) = (upstream, client);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = u_in.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    for piece in buf[..n].chunks(chunk) {
                        if c_out.write_all(piece).is_err() {
                            return;
                        }
                        std::thread::sleep(Duration::from_micros(300));
                    }
                }
                let _ = c_out.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    (addr, stop)
}

#[test]
fn records_in_pieces_while_reads_are_interrupted_lose_and_garble_nothing() {
    let ca = Ca::new("longlink test CA");
    let id = ca.issue(&["localhost"], Validity::Current);
    let lab = Lab::start_tls(any(), Framing::Lines, server(&id, None)).unwrap();
    let (proxy, stop) = dribbling_proxy(lab.local_addr(), 3);
    let mut c = config(proxy);
    // Timers and enqueues interrupt the TLS task's reads all the time.
    c.heartbeat_interval = Some(Ms::from_millis(7));
    let d = Driver::start(c, trust(&ca, "localhost"));
    let peer = lab
        .wait_for(
            Instant::now() + T,
            |e| match e {
                LabEvent::Connected { peer, .. } => Some(*peer),
                _ => None,
            },
            drop,
        )
        .unwrap();
    const N: usize = 40;
    let sender = std::thread::spawn({
        let link = d.link.clone();
        move || {
            for i in 0..N {
                async_io::block_on(link.enqueue(format!("app {i}").as_bytes())).unwrap();
                std::thread::sleep(Duration::from_millis(3));
            }
        }
    });
    // Some requests one record each, some many in one record.
    for i in 0..N {
        lab.send_to(peer, format!("back {i}").as_bytes()).unwrap();
    }
    let batch: Vec<u8> = (N..2 * N)
        .flat_map(|i| format!("back {i}\n").into_bytes())
        .collect();
    lab.send_raw(peer, &batch).unwrap();
    sender.join().unwrap();
    let got = messages(&lab, 3 * N, T);
    stop.store(true, Ordering::SeqCst);
    let backs: Vec<&Vec<u8>> = got.iter().filter(|m| m.starts_with(b"back")).collect();
    let apps: Vec<&Vec<u8>> = got.iter().filter(|m| m.starts_with(b"app")).collect();
    let want_backs: Vec<Vec<u8>> = (0..2 * N)
        .map(|i| format!("back {i}").into_bytes())
        .collect();
    let want_apps: Vec<Vec<u8>> = (0..N).map(|i| format!("app {i}").into_bytes()).collect();
    assert_eq!(backs, want_backs.iter().collect::<Vec<_>>());
    assert_eq!(apps, want_apps.iter().collect::<Vec<_>>());
    let s = d.link.stats();
    assert_eq!((s.connects, s.disconnects), (1, 0), "{s:?}");
    assert!(s.heartbeats_sent > 10, "reads were interrupted: {s:?}");
}
