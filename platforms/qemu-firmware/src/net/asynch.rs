//! The async variant (`--features net-async`): the same board, NIC driver
//! and settings, with `longlink-nal-async` over **embassy-net** (smoltcp
//! 0.13 inside) instead of `longlink-nal` over smoltcp-nal. TCP only:
//! embassy-net implements embedded-nal-async's `TcpConnect`, not its UDP
//! traits. SNTP is a task of its own on an embassy-net UDP socket, feeding
//! the clock's `unix_time_ms`.
//!
//! The executor is the smallest that works without `unsafe`: one future
//! (everything `join`ed/`select`ed) polled once per 1 ms SysTick wake-up
//! (`WFI` in between), with a no-op waker. Every future here is therefore
//! polled at least every millisecond; the NIC driver and the sleeps rely on
//! that instead of wakers.

use core::cell::Cell;
use core::future::{poll_fn, Future};
use core::net::{IpAddr, Ipv4Addr, SocketAddr};
use core::pin::pin;
use core::task::{Context, Poll, Waker};

use cortex_m_semihosting::hprintln;
use embassy_futures::select::{select, select4, Either};
use embassy_net::tcp::client::{TcpClient, TcpClientState};
use embassy_net::udp::{PacketMetadata, UdpSocket};
use embassy_net::{Ipv4Cidr, Stack, StackResources, StaticConfigV4};
use longlink_core::sntp::{SntpClient, SntpConfig, NTP_PORT, PACKET_LEN};
use longlink_core::time::{Duration, Instant};
use longlink_core::{Config, Connection, Event as CoreEvent, Remote, Status, TestProtocol};
use longlink_nal_async::{Clock, Event, Longlink, Modem, Net, NoopRawMutex};

use super::board::{self, Settings, Watchdog};
use super::clock;
use super::lan9118::{Lan9118, LinkControl};
use super::{ADDRESS, MAC, WATCHDOG_MS};

const BRIDGE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const SERVER_PORT: u16 = 50798;

/// Polls `fut` on every wake-up from `WFI` (at least every 1 ms: SysTick).
fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        cortex_m::asm::wfi();
    }
}

/// Ready once `ms_since_boot` has passed (polled every tick, see the module
/// docs).
async fn sleep_until_ms(at: u64) {
    poll_fn(|_| {
        if u64::from(clock::millis()) >= at {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
}

/// The monotonic clock, and the wall clock once SNTP answered.
struct FwClock {
    /// Unix milliseconds minus monotonic milliseconds.
    offset: Cell<Option<u64>>,
}

impl Clock for FwClock {
    fn now(&self) -> Instant {
        Instant::from_millis(u64::from(clock::millis()))
    }
    async fn sleep_until(&self, at: Instant) {
        sleep_until_ms(at.as_millis()).await;
    }
    fn unix_time_ms(&self) -> Option<u64> {
        self.offset
            .get()
            .map(|o| o.wrapping_add(u64::from(clock::millis())))
    }
}

/// The modem on the Ethernet link, as for the blocking firmware.
struct AsyncBoard {
    ctl: LinkControl,
    radio_offs: u32,
    link_resets: u32,
}

impl Modem for AsyncBoard {
    async fn network_change(&mut self, known: bool) -> bool {
        loop {
            let up = self.ctl.radio_on() && self.ctl.link_up();
            if up != known {
                hprintln!(
                    "[{:>7} ms] modem: network {}",
                    clock::millis(),
                    if up { "up" } else { "down" }
                );
                return up;
            }
            sleep_until_ms(u64::from(clock::millis()) + 20).await;
        }
    }
    async fn reset_link(&mut self) {
        self.link_resets += 1;
        hprintln!("[{:>7} ms] modem: link reset", clock::millis());
        if self.ctl.reset().is_err() {
            hprintln!("modem: the NIC did not come back from its reset");
        }
    }
    async fn set_radio(&mut self, on: bool) {
        if on {
            hprintln!("[{:>7} ms] modem: radio on", clock::millis());
        } else {
            self.radio_offs += 1;
            hprintln!("[{:>7} ms] modem: radio off (flight mode)", clock::millis());
        }
        self.ctl.set_radio(on);
    }
}

/// SNTP against the bridge: at once, then on the client's schedule.
async fn sntp(stack: Stack<'_>, wall: &FwClock, seed: u64) {
    let mut rx_meta = [PacketMetadata::EMPTY; 2];
    let mut rx = [0u8; 128];
    let mut tx_meta = [PacketMetadata::EMPTY; 2];
    let mut tx = [0u8; 128];
    let mut sock = UdpSocket::new(stack, &mut rx_meta, &mut rx, &mut tx_meta, &mut tx);
    if sock.bind(49_123).is_err() {
        hprintln!("sntp: cannot bind");
        return;
    }
    let mut client = SntpClient::new(SntpConfig::default(), seed);
    client.restart(wall.now());
    loop {
        let mut request = [0u8; PACKET_LEN];
        if client.poll_request(wall.now(), &mut request) {
            let server = (embassy_net::IpAddress::Ipv4(BRIDGE), NTP_PORT);
            let _ = sock.send_to(&request, server).await;
        }
        let mut buf = [0u8; 64];
        let timeout = client.poll_timeout();
        match select(sock.recv_from(&mut buf), wall.sleep_until(timeout)).await {
            Either::First(Ok((n, meta))) if meta.endpoint.port == NTP_PORT => {
                let now = wall.now();
                if let Ok(unix_ms) = client.handle_response(now, &buf[..n]) {
                    let first = wall.offset.get().is_none();
                    wall.offset.set(Some(unix_ms.wrapping_sub(now.as_millis())));
                    if first {
                        hprintln!("[{:>7} ms] sntp: wall clock set", clock::millis());
                    }
                }
            }
            _ => {}
        }
    }
}

/// The core's configuration from the run's settings (as in `link::new`).
fn config(s: &Settings, seed: u64) -> Config {
    let ms = |v: u32| Duration::from_millis(u64::from(v));
    Config {
        network_wait: ms(s.network_wait_ms),
        radio_off: ms(s.flight_ms),
        retry_delay: ms(s.retry_ms),
        heartbeat_interval: Some(ms(s.heartbeat_ms)),
        connect_timeout: Some(ms(s.connect_ms)),
        idle_timeout: Some(ms(s.idle_ms)),
        seed,
        ..Config::default()
    }
}

/// Runs the async firmware; returns the verdict when `run=` elapsed.
pub fn run() -> bool {
    super::hw::paint_stack();
    let Some(cp) = cortex_m::Peripherals::take() else {
        return false;
    };
    clock::start_clock(cp.SYST);
    let settings = Settings::from_command_line();
    hprintln!("longlink net-async firmware (embassy-net): {:?}", settings);
    if settings.udp {
        hprintln!("net-async: TCP only (embassy-net has no embedded-nal-async UDP)");
        return false;
    }
    let mut dog = Watchdog::start(WATCHDOG_MS);
    let (nic, ctl) = match Lan9118::new(MAC) {
        Ok(n) => n,
        Err(e) => {
            hprintln!("lan9118: {:?}", e);
            return false;
        }
    };
    let seed = 0x5eed_0000_0000 ^ u64::from(clock::millis());
    let [a, b, c, d] = ADDRESS;
    let net_config = embassy_net::Config::ipv4_static(StaticConfigV4 {
        address: Ipv4Cidr::new(Ipv4Addr::new(a, b, c, d), 24),
        gateway: None,
        dns_servers: Default::default(),
    });
    let mut resources = StackResources::<3>::new();
    let (stack, mut runner) = embassy_net::new(nic, net_config, &mut resources, seed);
    let state = TcpClientState::<1, 1024, 1024>::new();
    let tcp = TcpClient::new(stack, &state);
    let wall = FwClock {
        offset: Cell::new(None),
    };
    let Ok(conn) = Connection::<TestProtocol, 512, 256>::new(
        config(&settings, seed),
        TestProtocol::default(),
        wall.now(),
    ) else {
        hprintln!("bad settings");
        return false;
    };
    let link: Longlink<NoopRawMutex, TestProtocol, 512, 256> = Longlink::new(conn);
    let mut modem = AsyncBoard {
        ctl,
        radio_offs: 0,
        link_resets: 0,
    };
    let mut scratch = [0u8; 512];
    hprintln!(
        "size_of: Longlink<TestProtocol, 512, 256> {} B; embassy-net StackResources<3> {} B; TcpClientState<1, 1024, 1024> {} B",
        core::mem::size_of::<Longlink<NoopRawMutex, TestProtocol, 512, 256>>(),
        core::mem::size_of::<StackResources<3>>(),
        core::mem::size_of::<TcpClientState<1, 1024, 1024>>()
    );

    let server = Remote::Addr(SocketAddr::new(IpAddr::V4(BRIDGE), SERVER_PORT));
    let keep_alive = link.run(
        Net::tcp(tcp),
        server,
        &wall,
        &mut modem,
        &mut scratch,
        |event| {
            if let Event::Core(CoreEvent::Status(status)) = event {
                board::led(status, clock::millis());
            }
        },
    );
    // The main loop's own work: the watchdog, the fault run's messages,
    // the end.
    let mut was_connected = false;
    let mut losses = 0u32;
    let app = poll_fn(|_| {
        dog.feed();
        let now = clock::millis();
        let connected = link.status() == Status::Connected;
        if connected != was_connected {
            hprintln!(
                "[{:>7} ms] longlink: {}",
                now,
                if connected {
                    "connected"
                } else {
                    "connection lost"
                }
            );
        }
        if was_connected && !connected {
            losses += 1;
            if settings.queue_on_loss {
                let mut buf = [0u8; 24];
                for i in 1..=3 {
                    let msg = super::lost_message(&mut buf, losses, i);
                    let ok = link.try_enqueue(msg).is_ok();
                    hprintln!(
                        "[{:>7} ms] app: queued {:?}{}",
                        now,
                        core::str::from_utf8(msg).unwrap_or("?"),
                        if ok { "" } else { " REFUSED" }
                    );
                }
            }
        }
        was_connected = connected;
        if settings.hang_ms != 0 && now >= settings.hang_ms {
            hprintln!(
                "[{:>7} ms] app: the loop hangs (no more watchdog feeds)",
                now
            );
            loop {
                cortex_m::asm::wfi();
            }
        }
        if settings.run_ms != 0 && now >= settings.run_ms {
            Poll::Ready(link.status() == Status::Connected)
        } else {
            Poll::Pending
        }
    });
    let connected_at_end = match block_on(select4(
        runner.run(),
        keep_alive,
        sntp(stack, &wall, seed),
        app,
    )) {
        embassy_futures::select::Either4::Fourth(c) => c,
        _ => false,
    };
    let st = link.stats();
    hprintln!(
        "stats: {} connects, {} connect failures, {} heartbeats, {} msgs in, {} out; stack peak {} B; watchdog fed {} times",
        st.connects,
        st.connect_failures,
        st.heartbeats_sent,
        st.messages_in,
        st.messages_out,
        super::hw::stack_peak().unwrap_or(0),
        dog.feeds()
    );
    if !settings.expect_rows {
        return connected_at_end;
    }
    let rows = [
        (
            "flight mode: radio off, then on again",
            modem.radio_offs >= 1,
        ),
        ("5 failed connects: link reset", modem.link_resets >= 1),
        ("connected after both", connected_at_end),
    ];
    for (what, ok) in rows {
        hprintln!("{}  {}", if ok { "PASS" } else { "FAIL" }, what);
    }
    rows.iter().all(|(_, ok)| *ok)
}
