//! The tutorial's scenario against the in-memory lab server.

use core::cell::Cell;
use core::net::{IpAddr, Ipv4Addr, SocketAddr};

use cortex_m_semihosting::hprintln;
use longlink_core::sntp::SntpConfig;
use longlink_core::time::{Duration, Instant};
use longlink_core::{Config, Event as CoreEvent, Remote, Status, TestProtocol};
use longlink_memnet::lab::LabPeer;
use longlink_memnet::{Accept, Behaviour, MemNet};
use longlink_nal::{Clock, Driver, Event, Modem, NoDns, Quirks, Sntp};

/// The lab's wall clock at virtual time zero: 2024-11-25 00:00:00 UTC.
const BASE_UNIX_MS: u64 = 1_732_492_800_000;

type Net = MemNet<LabPeer<1024>>;
type Hook<'a> = &'a mut dyn FnMut(Event<'_>);
type Link<'a> =
    Driver<'a, Net, VirtualClock<'a>, Board, TestProtocol, 256, 128, NoDns, Sntp<Net>, Hook<'a>>;

/// The virtual clock (see the crate docs).
struct VirtualClock<'a>(&'a Cell<u64>);

impl Clock for VirtualClock<'_> {
    fn now(&mut self) -> Instant {
        Instant::from_millis(self.0.get())
    }
}

/// The board: the modem's link reset, recorded.
#[derive(Default)]
struct Board {
    link_resets: u32,
}

impl Modem for Board {
    fn reset_link(&mut self) {
        self.link_resets += 1;
        hprintln!("  modem: link reset (link.shut)");
    }
}

/// The tutorial's netLed, driven by the status events: one pattern per
/// state; counts the changes.
fn led(changes: &Cell<u32>, event: Event<'_>) {
    if let Event::Core(CoreEvent::Status(status)) = event {
        changes.set(changes.get() + 1);
        let pattern = match status {
            Status::WaitingForNetwork | Status::RadioOff => "slow blink",
            Status::Connecting | Status::BackingOff => "fast blink",
            Status::Connected => "on",
        };
        let _ = pattern;
    }
}

/// A watchdog stand-in: the loop must feed it at least once per second of
/// (virtual) time. On a board this is the IWDG/WDT reload.
struct Watchdog {
    fed_at: u64,
    feeds: u32,
}

impl Watchdog {
    fn feed(&mut self, now: u64) -> bool {
        let ok = now - self.fed_at <= 1_000;
        self.fed_at = now;
        self.feeds += 1;
        ok
    }
}

macro_rules! check {
    ($cond:expr, $what:literal) => {
        if $cond {
            hprintln!("  ok: {}", $what);
        } else {
            hprintln!("  FAILED: {}", $what);
            return false;
        }
    };
}

struct Sim<'a> {
    link: Link<'a>,
    clock: &'a Cell<u64>,
    dog: Watchdog,
}

impl Sim<'_> {
    fn now(&self) -> u64 {
        self.clock.get()
    }

    fn peer(&mut self) -> &mut LabPeer<1024> {
        &mut self.link.stack_mut().peer
    }

    /// The firmware main loop: poll, feed the watchdog, sleep until the
    /// deadline or the next 100 ms tick. Stops when `done` holds or after
    /// `limit_ms`; fails on a spin or a starved watchdog.
    fn run(&mut self, limit_ms: u64, mut done: impl FnMut(&mut Self) -> bool) -> bool {
        let end = self.now() + limit_ms;
        let mut same = 0u32;
        loop {
            let now = self.now();
            self.peer().wall_ms = BASE_UNIX_MS + now;
            let next = self.link.poll();
            if !self.dog.feed(now) {
                hprintln!("  watchdog starved at {} ms", now);
                return false;
            }
            if done(self) {
                return true;
            }
            if now >= end {
                return false;
            }
            let next = next.map_or(u64::MAX, Instant::as_millis);
            let wake = next.max(now).min(now + 100).min(end);
            same = if wake == now { same + 1 } else { 0 };
            if same > 1_000 {
                hprintln!("  driver spins at {} ms", now);
                return false;
            }
            // WFI until the deadline or the tick.
            self.clock.set(wake);
        }
    }

    fn advance(&mut self, ms: u64) {
        self.run(ms, |_| false);
    }
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

/// Runs the scenario on both stack behaviours.
pub fn run() -> bool {
    // Read by scripts/size-report.sh.
    hprintln!(
        "size_of: state machine fixed {} B; Connection<TestProtocol, 256, 128> {} B; Driver with SNTP {} B",
        core::mem::size_of::<longlink_core::Connection<(), 0, 0>>(),
        core::mem::size_of::<longlink_core::Connection<TestProtocol, 256, 128>>(),
        core::mem::size_of::<Link<'static>>(),
    );
    hprintln!("stack following the embedded-nal docs:");
    if !scenario(Behaviour::CONFORMANT, Quirks::CONFORMANT) {
        return false;
    }
    hprintln!("stack behaving like smoltcp-nal 0.7:");
    scenario(Behaviour::SMOLTCP_NAL, Quirks::SMOLTCP_NAL)
}

fn scenario(behaviour: Behaviour, quirks: Quirks) -> bool {
    let lab = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 50798);
    let ntp = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 123);
    let clock = Cell::new(0u64);
    let mut peer = LabPeer::new(lab);
    peer.ntp = Some(ntp);
    let config = Config {
        // smoltcp-nal never reports a refused connect (the connect timeout
        // ends the attempt); the idle timeout finds a peer that died
        // silently. Harmless on a conforming stack.
        connect_timeout: Some(Duration::from_secs(10)),
        idle_timeout: Some(Duration::from_secs(60)),
        ..Config::default()
    };
    let Ok(link) = Driver::new(
        MemNet::new(peer, behaviour),
        VirtualClock(&clock),
        Board::default(),
        Remote::Addr(lab),
        config,
        TestProtocol::default(),
    ) else {
        hprintln!("  bad config");
        return false;
    };
    let led_changes = Cell::new(0u32);
    let mut hook = |e: Event<'_>| led(&led_changes, e);
    let link = link
        .quirks(quirks)
        .with_wall_clock(Sntp::new(ntp, SntpConfig::default(), 0x5eed))
        .on_event(&mut hook as Hook<'_>);
    let mut s = Sim {
        link,
        clock: &clock,
        dog: Watchdog {
            fed_at: 0,
            feeds: 0,
        },
    };

    check!(
        s.run(1_000, |s| s.link.status() == Status::Connected),
        "connected"
    );
    s.advance(500);
    check!(s.peer().received() == b"heart beat", "heartbeat on connect");
    let wall = s
        .link
        .connection()
        .unix_time_ms(Instant::from_millis(s.now()));
    check!(
        wall.is_some_and(|w| w.abs_diff(BASE_UNIX_MS + s.now()) < 200),
        "wall clock synced by SNTP"
    );
    let until = 35_000 - s.now();
    s.advance(until);
    check!(
        count(s.peer().received(), b"heart beat") == 4,
        "heartbeats at 0, 10, 20, 30 s"
    );

    s.peer().clear_received();
    s.peer().push(b"back hello");
    s.advance(200);
    check!(s.peer().received() == b"back hello", "back echoed");
    s.peer().push(b"bin");
    s.advance(200);
    check!(
        s.peer().received() == b"back hello\x11\x22\x33",
        "bin -> 11 22 33"
    );
    s.peer().push(b"time");
    s.advance(200);
    let want = (BASE_UNIX_MS + s.now()) / 1000;
    let mut digits = [0u8; 10];
    let mut t = want;
    for d in digits.iter_mut().rev() {
        *d = b'0' + (t % 10) as u8;
        t /= 10;
    }
    let rx = s.peer().received();
    check!(
        rx.len() == 23 && rx[13..21] == digits[..8],
        "time -> Unix seconds"
    );

    let dropped_at = s.now();
    s.peer().fin();
    check!(
        s.run(120_000, |s| s.link.status() != Status::Connected),
        "server drop noticed"
    );
    hprintln!("  drop noticed after {} ms", s.now() - dropped_at);
    let msgs: [&[u8]; 5] = [b"m-1;", b"m-2;", b"m-3;", b"m-4;", b"m-5;"];
    for m in msgs {
        if s.link.enqueue(m).is_err() {
            hprintln!("  queue refused a message");
            return false;
        }
    }
    check!(
        s.run(10_000, |s| s.link.status() == Status::Connected),
        "reconnected"
    );
    s.advance(100);
    let rx = s.peer().received();
    check!(
        rx.starts_with(b"m-1;m-2;m-3;m-4;m-5;heart beat") && count(rx, b"m-") == 5,
        "queued messages delivered once, in order"
    );

    s.peer().accept = Accept::Refuse;
    s.peer().reset();
    check!(
        s.run(300_000, |s| s.link.connection().stats().link_resets == 1),
        "refused connects led to a link reset"
    );
    let st = *s.link.connection().stats();
    check!(
        st.connect_failures == 5 && s.link.modem_mut().link_resets == 1,
        "after exactly 5 failures"
    );
    s.peer().accept = Accept::Yes;
    check!(
        s.run(120_000, |s| s.link.status() == Status::Connected),
        "connected again"
    );
    let net = s.link.stack_mut();
    check!(
        net.stats.misuse == 0 && net.stats.sockets_exhausted == 0,
        "stack used correctly, no socket leak"
    );
    let st = *s.link.connection().stats();
    hprintln!(
        "  {} s virtual: {} connects, {} failures, {} heartbeats, {} msgs in, {} out, {} LED changes, {} watchdog feeds",
        s.now() / 1000,
        st.connects,
        st.connect_failures,
        st.heartbeats_sent,
        st.messages_in,
        st.messages_out,
        led_changes.get(),
        s.dog.feeds
    );
    true
}
