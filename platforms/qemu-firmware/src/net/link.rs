//! Everything the firmware does with `longlink-nal`, in one place: the
//! driver's type, its construction, the modem mapped onto the LAN9118, and
//! one poll. The rest of the firmware sees only these functions.

use core::net::{IpAddr, Ipv4Addr, SocketAddr};

use cortex_m_semihosting::hprintln;
use longlink_core::sntp::SntpConfig;
use longlink_core::time::{Duration, Instant};
use longlink_core::{
    Config, ConfigError, Event as CoreEvent, Remote, Status, TestProtocol, Transport,
};
use longlink_nal::{Driver, Event, Modem, NoDns, Quirks, Sntp};

use super::board::{self, Settings};
use super::clock::{self, MilliClock};
use super::lan9118::{Lan9118, LinkControl};

/// The bridge's side of the emulated link (TEST-NET-1).
pub const BRIDGE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The port the bridge forwards to the server on the host.
pub const SERVER_PORT: u16 = 50798;

/// The stack: smoltcp behind smoltcp-nal, over the LAN9118.
pub type Stack<'a> = smoltcp_nal::NetworkStack<'a, Lan9118, MilliClock>;

/// The driver: 512-byte outgoing queue, 256-byte receive buffer, SNTP.
pub type Link<'a> = Driver<
    'static,
    Stack<'a>,
    fn() -> Instant,
    Board,
    TestProtocol,
    512,
    256,
    NoDns,
    Sntp<Stack<'a>>,
    fn(Event<'_>),
>;

/// The network LED follows the status events.
fn on_event(event: Event<'_>) {
    if let Event::Core(CoreEvent::Status(status)) = event {
        board::led(status, clock::millis());
    }
}

fn now() -> Instant {
    Instant::from_millis(u64::from(clock::millis()))
}

/// The modem, mapped onto the emulated Ethernet link: the network is up
/// while the PHY has a link and the radio (the MAC) is on; flight mode
/// turns the MAC off; a link reset soft-resets the chip and drops the
/// stack's sockets.
pub struct Board {
    ctl: LinkControl,
    /// Link resets done (`link.shut()`).
    pub link_resets: u32,
    /// Radio-off phases (flight mode).
    pub radio_offs: u32,
    reset_pending: bool,
    last_ready: Option<bool>,
}

impl Modem for Board {
    fn network_ready(&mut self) -> bool {
        // A static address: up as soon as the link is.
        let ready = self.ctl.radio_on() && self.ctl.link_up();
        if self.last_ready != Some(ready) {
            self.last_ready = Some(ready);
            hprintln!(
                "[{:>7} ms] modem: network {}",
                clock::millis(),
                if ready { "up" } else { "down" }
            );
        }
        ready
    }

    fn reset_link(&mut self) {
        self.link_resets += 1;
        hprintln!(
            "[{:>7} ms] modem: link reset (interface reset, like link.shut())",
            clock::millis()
        );
        if self.ctl.reset().is_err() {
            hprintln!("modem: the NIC did not come back from its reset");
        }
        self.reset_pending = true;
    }

    fn set_radio(&mut self, on: bool) {
        if !on {
            self.radio_offs += 1;
        }
        hprintln!(
            "[{:>7} ms] modem: radio {}",
            clock::millis(),
            if on { "on" } else { "off (flight mode)" }
        );
        self.ctl.set_radio(on);
    }
}

/// The driver over `stack`, with the run's settings.
pub fn new<'a>(
    stack: Stack<'a>,
    ctl: LinkControl,
    s: &Settings,
    seed: u64,
) -> Result<Link<'a>, ConfigError> {
    let ms = |v: u32| Duration::from_millis(u64::from(v));
    let config = Config {
        transport: if s.udp {
            Transport::Udp
        } else {
            Transport::Tcp
        },
        network_wait: ms(s.network_wait_ms),
        radio_off: ms(s.flight_ms),
        retry_delay: ms(s.retry_ms),
        heartbeat_interval: Some(ms(s.heartbeat_ms)),
        // smoltcp-nal reports neither a refused connect nor the peer's
        // close: the timeouts find both.
        connect_timeout: Some(ms(s.connect_ms)),
        idle_timeout: Some(ms(s.idle_ms)),
        seed,
        ..Config::default()
    };
    let board = Board {
        ctl,
        link_resets: 0,
        radio_offs: 0,
        reset_pending: false,
        last_ready: None,
    };
    let ntp = SocketAddr::new(IpAddr::V4(BRIDGE), longlink_core::sntp::NTP_PORT);
    Ok(Driver::new(
        stack,
        now as fn() -> Instant,
        board,
        Remote::Addr(SocketAddr::new(IpAddr::V4(BRIDGE), SERVER_PORT)),
        config,
        TestProtocol::default(),
    )?
    .quirks(Quirks::SMOLTCP_NAL)
    .with_wall_clock(Sntp::new(ntp, SntpConfig::default(), seed))
    .on_event(on_event as fn(Event<'_>)))
}

/// One step of the stack and the driver. Returns the driver's next
/// deadline in milliseconds since boot.
pub fn poll(link: &mut Link<'_>) -> Option<u64> {
    let _ = link.stack_mut().poll();
    let next = link.poll();
    if core::mem::take(&mut link.modem_mut().reset_pending) {
        // The chip was reset under the stack: drop every socket, as after
        // a cable pull.
        link.stack_mut().handle_link_reset();
    }
    // Put what the driver wrote on the wire now, not at the next tick.
    let _ = link.stack_mut().poll();
    next.map(Instant::as_millis)
}

/// Whether the connection is up.
pub fn connected(link: &Link<'_>) -> bool {
    link.status() == Status::Connected
}

/// Queues a message (false when the queue is full).
pub fn enqueue(link: &mut Link<'_>, message: &[u8]) -> bool {
    link.enqueue(message).is_ok()
}

/// Whether the wall clock was set (by SNTP).
pub fn clock_synced(link: &Link<'_>) -> bool {
    link.connection().unix_time_ms(now()).is_some()
}

/// Radio-off phases and link resets so far.
pub fn modem_counts(link: &mut Link<'_>) -> (u32, u32) {
    let m = link.modem_mut();
    (m.radio_offs, m.link_resets)
}

/// One line of counters.
pub fn report(link: &mut Link<'_>) {
    let st = *link.connection().stats();
    let nic = super::lan9118::stats();
    let modem = link.modem_mut();
    hprintln!(
        "stats: {} connects, {} connect failures, {} heartbeats, {} msgs in, {} out, {} link resets, {} radio-offs; nic rx {} tx {} dropped {}; stack peak {} B",
        st.connects,
        st.connect_failures,
        st.heartbeats_sent,
        st.messages_in,
        st.messages_out,
        modem.link_resets,
        modem.radio_offs,
        nic.rx,
        nic.tx,
        nic.dropped,
        super::hw::stack_peak().unwrap_or(0)
    );
}
