//! The embedded-nal-async driver, end to end over loopback: the driver runs
//! as firmware would (its own `Longlink::run`, small buffers, a scripted
//! modem), over `std-embedded-nal-async` sockets, against the plain
//! independent test server of `longlink_tests::server`.
// Test harness helpers outside #[test] fns unwrap too.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use embassy_futures::select::select;
use embassy_sync::signal::Signal;
use longlink_core::time::Duration as Ms;
use longlink_core::{Config, Connection, Framing, Remote, Status, TestProtocol, Transport};
use longlink_nal_async::{Clock, CriticalSectionRawMutex as Cs, Event, Longlink, Modem, Net};
use longlink_std::clock::StdClock;
use longlink_tests::server::{lines, noise, TestServer};
use longlink_tests::Setup;
use std_embedded_nal_async::Stack;

const Q: usize = 2048;
const R: usize = 256;
type Link = Longlink<Cs, TestProtocol, Q, R>;

/// A modem the test scripts: network up/down, counts resets and radio cycles.
#[derive(Default)]
struct ModemState {
    up: AtomicBool,
    changed: Signal<Cs, ()>,
    resets: AtomicUsize,
    radio_off: AtomicUsize,
    radio_on: AtomicUsize,
}

impl ModemState {
    fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
        self.changed.signal(());
    }
}

struct TestModem(Arc<ModemState>);

impl Modem for TestModem {
    async fn network_change(&mut self, known: bool) -> bool {
        loop {
            let up = self.0.up.load(Ordering::SeqCst);
            if up != known {
                return up;
            }
            self.0.changed.wait().await;
        }
    }
    async fn reset_link(&mut self) {
        self.0.resets.fetch_add(1, Ordering::SeqCst);
    }
    async fn set_radio(&mut self, on: bool) {
        let counter = if on {
            &self.0.radio_on
        } else {
            &self.0.radio_off
        };
        counter.fetch_add(1, Ordering::SeqCst);
    }
}

/// The driver on a thread of its own, as a firmware task.
struct Driver {
    link: Arc<Link>,
    modem: Arc<ModemState>,
    events: Arc<Mutex<Vec<String>>>,
    stop: Arc<Signal<Cs, ()>>,
    thread: Option<JoinHandle<()>>,
}

impl Driver {
    fn start(setup: Setup) -> Driver {
        let Setup { addr, config } = setup;
        let clock = StdClock::new();
        let conn = Connection::new(config, TestProtocol::default(), clock.now()).unwrap();
        let link = Arc::new(Longlink::new(conn));
        let modem = Arc::new(ModemState::default());
        modem.up.store(true, Ordering::SeqCst);
        let events = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(Signal::new());
        let (l, m, e, s) = (link.clone(), modem.clone(), events.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut scratch = vec![0u8; Q.max(R)];
            let mut modem = TestModem(m);
            let hook = |ev: Event<'_>| {
                let text = match ev {
                    Event::Sent(_) | Event::Received(_) => return,
                    other => format!("{other:?}"),
                };
                e.lock().unwrap().push(text);
            };
            async_io::block_on(select(
                l.run(
                    Net::all(Stack::default()),
                    Remote::Addr(addr),
                    &clock,
                    &mut modem,
                    &mut scratch,
                    hook,
                ),
                s.wait(),
            ));
        });
        Driver {
            link,
            modem,
            events,
            stop,
            thread: Some(thread),
        }
    }

    fn wait_status(&self, want: Status, timeout: Duration) -> bool {
        wait(timeout, || self.link.status() == want)
    }

    fn saw(&self, needle: &str) -> bool {
        self.events
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.contains(needle))
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

fn any() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn config(addr: SocketAddr, transport: Transport, framing: Framing) -> Setup {
    Setup {
        addr,
        config: Config {
            transport,
            framing,
            retry_delay: Ms::from_millis(100),
            heartbeat_interval: Some(Ms::from_secs(30)),
            ..Config::default()
        },
    }
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    count(hay, needle) > 0
}

const T: Duration = Duration::from_secs(10);

/// Sends `request` and waits for `reply` to show up in what the server got.
fn ask(server: &TestServer, request: &[u8], reply: &[u8]) {
    server.send(request).unwrap();
    assert!(
        server.wait_for(T, |b| contains(b, reply)),
        "no reply {reply:?} to {request:?}; got {:?}",
        String::from_utf8_lossy(&server.bytes())
    );
}

fn framed(framing: Framing, m: &[u8]) -> Vec<u8> {
    let mut out = vec![0; m.len() + 2];
    let n = framing.encode(m, &mut out).unwrap();
    out.truncate(n);
    out
}

fn answers_the_test_protocol(server: &TestServer, framing: Framing) {
    let f = |m: &[u8]| framed(framing, m);
    ask(server, &f(b"back 42"), &f(b"back 42"));
    ask(server, &f(b"bin"), &f(&[0x11, 0x22, 0x33]));
    let now = longlink_std::clock::unix_time_ms().unwrap() / 1000;
    server.send(&f(b"time")).unwrap();
    // Any of the current second or the next two.
    assert!(server.wait_for(T, |b| {
        (now..now + 3).any(|t| contains(b, t.to_string().as_bytes()))
    }));
}

#[test]
fn tcp_heartbeats_keep_their_cadence_and_the_server_is_answered() {
    let server = TestServer::tcp(any()).unwrap();
    let mut c = config(server.addr(), Transport::Tcp, Framing::Raw);
    c.heartbeat_interval = Some(Ms::from_millis(100));
    let d = Driver::start(c);
    assert!(server.wait_for(T, |b| count(b, b"heart beat") >= 6));
    let times: Vec<Instant> = server
        .chunks()
        .iter()
        .filter(|(_, b)| b == b"heart beat")
        .map(|(t, _)| *t)
        .collect();
    assert!(times.len() >= 5, "heartbeats arrive one by one");
    let span = times[times.len() - 1] - times[0];
    let mean = span / (times.len() as u32 - 1);
    assert!(
        mean >= Duration::from_millis(80) && mean <= Duration::from_millis(300),
        "mean heartbeat interval {mean:?}, want ~100ms"
    );
    answers_the_test_protocol(&server, Framing::Raw);
    assert_eq!(d.link.stats().connects, 1);
    assert_eq!(d.link.stats().heartbeats_skipped, 0);
}

#[test]
fn tcp_a_queued_message_goes_out_without_waiting_for_a_timer() {
    let server = TestServer::tcp(any()).unwrap();
    let d = Driver::start(config(server.addr(), Transport::Tcp, Framing::Lines));
    assert!(server.wait_for(T, |b| contains(b, b"heart beat\n")));
    // The next timer is 30 s away: only the enqueue wake-up can send this.
    for i in 0..20 {
        let msg = format!("now {i}");
        let sent = Instant::now();
        d.link.try_enqueue(msg.as_bytes()).unwrap();
        assert!(server.wait_for(Duration::from_secs(2), |b| contains(b, msg.as_bytes())));
        assert!(sent.elapsed() < Duration::from_secs(2));
    }
}

#[test]
fn tcp_server_restart_delivers_queued_messages_once_in_order() {
    let server = TestServer::tcp(any()).unwrap();
    let addr = server.addr();
    let d = Driver::start(config(addr, Transport::Tcp, Framing::Lines));
    assert!(server.wait_for(T, |b| contains(b, b"heart beat\n")));
    d.link.try_enqueue(b"before").unwrap();
    assert!(server.wait_for(T, |b| contains(b, b"before\n")));
    drop(server);
    // Queued once the client knows the server is gone: nothing is written
    // into a dead socket.
    assert!(wait(T, || d.link.status() != Status::Connected));
    for i in 0..50 {
        d.link.try_enqueue(format!("m{i}").as_bytes()).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300)); // a few refused connects
    assert!(d.link.stats().connect_failures >= 1);
    let server = TestServer::tcp(addr).unwrap();
    assert!(server.wait_for(T, |b| contains(b, b"m49\n")));
    std::thread::sleep(Duration::from_millis(100));
    let bytes = server.bytes();
    let got: Vec<&[u8]> = lines(&bytes)
        .into_iter()
        .filter(|l| *l != b"heart beat")
        .collect();
    let want: Vec<Vec<u8>> = (0..50).map(|i| format!("m{i}").into_bytes()).collect();
    assert_eq!(got, want, "each queued message once, in order");
    assert_eq!(d.link.queued(), 0);
    answers_the_test_protocol(&server, Framing::Lines);
}

#[test]
fn tcp_failures_count_to_a_link_reset_and_the_radio_cycles_without_network() {
    // A port with nothing behind it.
    let addr = std::net::TcpListener::bind(any())
        .unwrap()
        .local_addr()
        .unwrap();
    let mut c = config(addr, Transport::Tcp, Framing::Raw);
    c.retry_delay = Ms::from_millis(30);
    c.max_failures = 3;
    c.network_wait = Ms::from_millis(200);
    c.radio_off = Ms::from_millis(100);
    let d = Driver::start(c);
    assert!(wait(T, || d.modem.resets.load(Ordering::SeqCst) >= 1));
    let s = d.link.stats();
    assert!(s.connect_failures >= 3 && s.link_resets >= 1, "{s:?}");
    assert!(d.saw("ConnectFailed"));

    // Network gone: no more connects; after network_wait the radio cycles.
    d.modem.set_up(false);
    assert!(d.wait_status(Status::WaitingForNetwork, T) || d.link.status() == Status::RadioOff);
    assert!(wait(T, || d.modem.radio_on.load(Ordering::SeqCst) >= 1));
    assert!(d.modem.radio_off.load(Ordering::SeqCst) >= 1);
    let attempts = d.link.stats().connect_attempts;
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        d.link.stats().connect_attempts,
        attempts,
        "no connects without network"
    );

    // Network back and a server there: connected.
    let server = TestServer::tcp(addr).unwrap();
    d.modem.set_up(true);
    assert!(d.wait_status(Status::Connected, T));
    assert!(server.wait_for(T, |b| contains(b, b"heart beat")));
}

#[test]
fn tcp_garbage_from_the_server_is_survived() {
    let server = TestServer::tcp(any()).unwrap();
    let d = Driver::start(config(server.addr(), Transport::Tcp, Framing::Raw));
    assert!(server.wait_for(T, |b| contains(b, b"heart beat")));
    // Raw framing: every read is one message; none of this is a command.
    let junk = noise(7, 1 << 20);
    let bad_utf8 = b"\xff\xfe\xfd invalid utf-8 \xc3\x28";
    server.send(&junk).unwrap();
    server.send(bad_utf8).unwrap();
    server.send(&[0u8; 4096]).unwrap();
    let total = (junk.len() + bad_utf8.len() + 4096) as u64;
    assert!(
        wait(T, || d.link.stats().bytes_in >= total),
        "{:?}",
        d.link.stats()
    );
    d.link.try_enqueue(b"still here").unwrap();
    assert!(server.wait_for(T, |b| contains(b, b"still here")));
    answers_the_test_protocol(&server, Framing::Raw);
    assert_eq!(
        d.link.stats().connects,
        1,
        "raw garbage does not break the connection"
    );
}

#[test]
fn tcp_oversized_frames_reset_the_connection_and_nothing_queued_is_lost() {
    for (framing, bomb) in [
        (Framing::Lines, vec![b'x'; 4 * R]),
        (Framing::Len16, vec![0xff, 0xff, 1, 2, 3]),
    ] {
        let server = TestServer::tcp(any()).unwrap();
        let d = Driver::start(config(server.addr(), Transport::Tcp, framing));
        assert!(server.wait_accepted(1, T));
        assert!(wait(T, || d.link.stats().heartbeats_sent >= 1));
        server.send(&bomb).unwrap();
        assert!(
            wait(T, || d.link.stats().frames_rejected == 1),
            "{framing:?}"
        );
        d.link.try_enqueue(b"keep me").unwrap();
        assert!(server.wait_accepted(2, T), "{framing:?}: reconnects");
        let frame = |m: &[u8]| framed(framing, m);
        assert!(server.wait_for(T, |b| contains(b, &frame(b"keep me"))));
        ask(&server, &frame(b"back after"), &frame(b"back after"));
    }
}

#[test]
fn tcp_a_flood_of_back_requests_is_answered_in_full_and_in_order() {
    let server = TestServer::tcp(any()).unwrap();
    let d = Driver::start(config(server.addr(), Transport::Tcp, Framing::Lines));
    assert!(server.wait_for(T, |b| contains(b, b"heart beat\n")));
    server.clear();
    // The server does not read for a while: replies back up into the
    // client's small queue, and the client must stop reading rather than
    // drop anything.
    server.pause_reading(true);
    const N: usize = 3000;
    let flood: Vec<u8> = (0..N)
        .flat_map(|i| format!("back {i}\n").into_bytes())
        .collect();
    let addr_server = Arc::new(server);
    let s2 = addr_server.clone();
    let writer = std::thread::spawn(move || s2.send(&flood).unwrap());
    let app: Vec<String> = (0..20).map(|i| format!("app {i}")).collect();
    std::thread::sleep(Duration::from_millis(200));
    addr_server.pause_reading(false);
    for m in &app {
        async_io::block_on(d.link.enqueue(m.as_bytes())).unwrap();
    }
    writer.join().unwrap();
    let last = format!("back {}\n", N - 1);
    assert!(addr_server.wait_for(T, |b| contains(b, last.as_bytes())
        && contains(b, b"app 19\n")));
    let bytes = addr_server.bytes();
    let got = lines(&bytes);
    let backs: Vec<&[u8]> = got
        .iter()
        .copied()
        .filter(|l| l.starts_with(b"back"))
        .collect();
    let want: Vec<Vec<u8>> = (0..N).map(|i| format!("back {i}").into_bytes()).collect();
    assert_eq!(backs, want);
    let apps: Vec<&[u8]> = got
        .iter()
        .copied()
        .filter(|l| l.starts_with(b"app"))
        .collect();
    assert_eq!(apps, app.iter().map(|s| s.as_bytes()).collect::<Vec<_>>());
    let s = d.link.stats();
    assert_eq!(
        (s.replies_dropped, s.frames_rejected, s.connects),
        (0, 0, 1),
        "{s:?}"
    );
}

#[test]
fn udp_heartbeats_answers_and_bad_datagrams() {
    let server = TestServer::udp(any()).unwrap();
    let mut c = config(server.addr(), Transport::Udp, Framing::Raw);
    c.heartbeat_interval = Some(Ms::from_millis(100));
    let d = Driver::start(c);
    assert!(server.wait_for(T, |b| count(b, b"heart beat") >= 3));
    answers_the_test_protocol(&server, Framing::Raw);
    // Larger than the receive buffer: dropped, not truncated into a command.
    let mut big = b"back ".to_vec();
    big.extend(vec![b'y'; R * 2]);
    server.send(&big).unwrap();
    assert!(wait(T, || d.saw("FrameRejected")));
    for seed in 0..50 {
        server.send(&noise(seed, 200)).unwrap();
    }
    server.send(b"").unwrap();
    server.send(b"\0\0\0").unwrap();
    ask(&server, b"back udp", b"back udp");
    assert!(
        !contains(&server.bytes(), &big[..R - 1]),
        "an oversized datagram is never echoed, not even cut"
    );
    assert_eq!(d.link.stats().frames_rejected, 1, "counted once");
    d.link.try_enqueue(b"udp message").unwrap();
    assert!(server.wait_for(T, |b| contains(b, b"udp message")));
}

#[test]
fn udp_the_client_recovers_after_the_server_restarts() {
    let server = TestServer::udp(any()).unwrap();
    let addr = server.addr();
    let mut c = config(addr, Transport::Udp, Framing::Lines);
    c.heartbeat_interval = Some(Ms::from_millis(100));
    let d = Driver::start(c);
    assert!(server.wait_for(T, |b| contains(b, b"heart beat\n")));
    drop(server);
    // The refused heartbeats come back as socket errors: the client reopens.
    assert!(wait(T, || d.link.stats().disconnects >= 1));
    let server = TestServer::udp(addr).unwrap();
    assert!(server.wait_for(T, |b| count(b, b"heart beat\n") >= 2));
    ask(&server, b"back again\n", b"back again\n");
    d.link.try_enqueue(b"after restart").unwrap();
    assert!(server.wait_for(T, |b| contains(b, b"after restart\n")));
}
