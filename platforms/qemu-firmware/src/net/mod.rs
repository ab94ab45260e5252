//! The real-stack firmware (`--features net`): the tutorial's client on
//! smoltcp 0.12 (through smoltcp-nal 0.7 and `longlink-nal`) over the
//! board's LAN9118, talking through QEMU's loopback netdev to
//! `qemu-bridge` on the host, which answers ARP and SNTP and forwards the
//! session to a server on 127.0.0.1. `scripts/qemu-lab.sh` runs it.
//!
//! Around the connection, the tutorial's `main.lua`: SNTP at boot (via
//! `longlink-nal`'s `Sntp`), a status LED (a semihosting line per change),
//! a watchdog (the emulated CMSDK watchdog, fed every loop), and a modem
//! mapped onto the Ethernet link (see [`link::Board`]).
//!
//! Time is real: SysTick counts milliseconds; the loop sleeps (`WFI`)
//! until the driver's deadline, a 10 ms tick for smoltcp's timers, or a
//! received frame.

// The size variants (`net-nic`, `net-stack`) use only part of it.
#![cfg_attr(not(feature = "net"), allow(dead_code, unused_imports))]

#[cfg(feature = "net-async")]
pub mod asynch;
#[cfg(any(feature = "net", feature = "net-async"))]
mod board;
mod clock;
mod hw;
mod lan9118;
#[cfg(feature = "net")]
mod link;
#[cfg(not(any(feature = "net", feature = "net-async")))]
pub mod size;

use cortex_m_semihosting::hprintln;
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketSet, SocketStorage};
use smoltcp::socket::{tcp, udp};
use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr};

#[cfg(feature = "net")]
use board::{Settings, Watchdog};
use clock::MilliClock;
use lan9118::Lan9118;

/// The firmware's MAC (locally administered) and address.
const MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02];
const ADDRESS: [u8; 4] = [192, 0, 2, 2];
/// The watchdog's timeout (NMI; the reset follows after as long again).
const WATCHDOG_MS: u32 = 2_000;
/// Longest sleep: smoltcp's own timers (retransmits, delayed ACKs).
const TICK_MS: u64 = 10;

/// The firmware's socket buffers and storage, shared by `net` and the
/// `net-stack` size variant.
#[cfg(any(feature = "net", feature = "net-stack"))]
pub struct Buffers<'a> {
    storage: [SocketStorage<'a>; 3],
    tcp_rx: [u8; 1024],
    tcp_tx: [u8; 1024],
    udp_meta: [[udp::PacketMetadata; 4]; 2],
    udp_rx: [[u8; 512]; 2],
    udp_meta_tx: [[udp::PacketMetadata; 4]; 2],
    udp_tx: [[u8; 512]; 2],
}

#[cfg(any(feature = "net", feature = "net-stack"))]
impl Buffers<'_> {
    /// Empty buffers.
    pub fn new() -> Self {
        Buffers {
            storage: Default::default(),
            tcp_rx: [0; 1024],
            tcp_tx: [0; 1024],
            udp_meta: [[udp::PacketMetadata::EMPTY; 4]; 2],
            udp_rx: [[0; 512]; 2],
            udp_meta_tx: [[udp::PacketMetadata::EMPTY; 4]; 2],
            udp_tx: [[0; 512]; 2],
        }
    }
}

/// The smoltcp interface on `nic` at 192.0.2.2/24 behind smoltcp-nal, with
/// one TCP socket (the session) and two UDP (the session, SNTP).
#[cfg(any(feature = "net", feature = "net-stack"))]
pub fn stack<'a>(
    mut nic: Lan9118,
    b: &'a mut Buffers<'a>,
    seed: u64,
) -> smoltcp_nal::NetworkStack<'a, Lan9118, MilliClock> {
    let mut iface_config = IfaceConfig::new(EthernetAddress(MAC).into());
    iface_config.random_seed = seed;
    let mut iface = Interface::new(
        iface_config,
        &mut nic,
        smoltcp::time::Instant::from_millis(0),
    );
    iface.update_ip_addrs(|addrs| {
        let [a, b, c, d] = ADDRESS;
        let _ = addrs.push(IpCidr::new(IpAddress::v4(a, b, c, d), 24));
    });
    let mut sockets = SocketSet::new(&mut b.storage[..]);
    sockets.add(tcp::Socket::new(
        tcp::SocketBuffer::new(&mut b.tcp_rx[..]),
        tcp::SocketBuffer::new(&mut b.tcp_tx[..]),
    ));
    let [m0, m1] = &mut b.udp_meta;
    let [r0, r1] = &mut b.udp_rx;
    let [mt0, mt1] = &mut b.udp_meta_tx;
    let [t0, t1] = &mut b.udp_tx;
    for (meta, rx, meta_tx, tx) in [(m0, r0, mt0, t0), (m1, r1, mt1, t1)] {
        sockets.add(udp::Socket::new(
            udp::PacketBuffer::new(&mut meta[..], &mut rx[..]),
            udp::PacketBuffer::new(&mut meta_tx[..], &mut tx[..]),
        ));
    }
    let mut stack = smoltcp_nal::NetworkStack::new(iface, nic, sockets, MilliClock);
    stack.seed_random_port(&seed.to_le_bytes());
    stack
}

/// A numbered message for the fault run: `lost-L-I;`.
#[cfg(any(feature = "net", feature = "net-async"))]
fn lost_message(buf: &mut [u8; 24], loss: u32, i: u32) -> &[u8] {
    buf[..5].copy_from_slice(b"lost-");
    let mut n = 5;
    n += write_decimal(&mut buf[n..], loss);
    buf[n] = b'-';
    n += 1;
    n += write_decimal(&mut buf[n..], i);
    buf[n] = b';';
    &buf[..n + 1]
}

#[cfg(any(feature = "net", feature = "net-async"))]
fn write_decimal(out: &mut [u8], mut v: u32) -> usize {
    let mut digits = [0u8; 10];
    let mut len = 0;
    loop {
        digits[len] = b'0' + (v % 10) as u8;
        len += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for (i, d) in digits[..len].iter().rev().enumerate() {
        out[i] = *d;
    }
    len
}

/// Runs the firmware; returns the verdict when `run=` elapsed.
#[cfg(feature = "net")]
pub fn run() -> bool {
    hw::paint_stack();
    let Some(cp) = cortex_m::Peripherals::take() else {
        return false;
    };
    clock::start_clock(cp.SYST);
    let settings = Settings::from_command_line();
    hprintln!("longlink net firmware: {:?}", settings);

    let mut dog = Watchdog::start(WATCHDOG_MS);
    hprintln!(
        "watchdog: {} (CMSDK APB watchdog, {} ms to NMI, reset after another {} ms)",
        if Watchdog::present(WATCHDOG_MS) {
            "armed"
        } else {
            "NOT PRESENT"
        },
        WATCHDOG_MS,
        WATCHDOG_MS
    );

    let (nic, ctl) = match Lan9118::new(MAC) {
        Ok(n) => n,
        Err(e) => {
            hprintln!("lan9118: {:?}", e);
            return false;
        }
    };
    hprintln!(
        "lan9118: id {:#010x}, mac {:02x?}, link {}",
        Lan9118::id(),
        nic.mac(),
        if ctl.link_up() { "up" } else { "down" }
    );

    // A seed from the clock: only the ports and SNTP nonces depend on it.
    let seed = 0x5eed_0000_0000 ^ u64::from(clock::millis());
    let mut buffers = Buffers::new();
    hprintln!(
        "size_of: NIC driver (Lan9118) {} B; stack (NetworkStack without the NIC {} B + socket buffers {} B) {} B; longlink (Driver + Connection<TestProtocol, 512, 256> + Sntp) {} B",
        core::mem::size_of::<Lan9118>(),
        core::mem::size_of::<link::Stack<'static>>() - core::mem::size_of::<Lan9118>(),
        core::mem::size_of::<Buffers<'static>>(),
        core::mem::size_of::<link::Stack<'static>>() - core::mem::size_of::<Lan9118>()
            + core::mem::size_of::<Buffers<'static>>(),
        core::mem::size_of::<link::Link<'static>>() - core::mem::size_of::<link::Stack<'static>>(),
    );
    let stack = stack(nic, &mut buffers, seed);

    let mut link = match link::new(stack, ctl, &settings, seed) {
        Ok(l) => l,
        Err(e) => {
            hprintln!("bad settings: {:?}", e);
            return false;
        }
    };

    let mut was_connected = false;
    let mut synced = false;
    let mut losses = 0u32;
    let mut last_report = 0u32;
    loop {
        let next = link::poll(&mut link);
        dog.feed();
        let now = clock::millis();

        if !synced && link::clock_synced(&link) {
            synced = true;
            hprintln!("[{:>7} ms] sntp: wall clock set", now);
        }
        let connected = link::connected(&link);
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
            link::report(&mut link);
        }
        if was_connected && !connected {
            losses += 1;
            if settings.queue_on_loss {
                // Queued while down: must arrive once, in order, after the
                // reconnect (the bridge checks in the fault run).
                let mut buf = [0u8; 24];
                for i in 1..=3 {
                    let msg = lost_message(&mut buf, losses, i);
                    let ok = link::enqueue(&mut link, msg);
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
        if now.wrapping_sub(last_report) >= 30_000 {
            last_report = now;
            link::report(&mut link);
        }
        if settings.hang_ms != 0 && now >= settings.hang_ms {
            hprintln!(
                "[{:>7} ms] app: the main loop hangs (no more watchdog feeds)",
                now
            );
            loop {
                cortex_m::asm::wfi();
            }
        }
        if settings.run_ms != 0 && now >= settings.run_ms {
            link::report(&mut link);
            hprintln!("watchdog: fed {} times", dog.feeds());
            if !settings.expect_rows {
                return true;
            }
            let (radio_offs, link_resets) = link::modem_counts(&mut link);
            let rows = [
                ("flight mode: radio off, then on again", radio_offs >= 1),
                ("5 failed connects: link reset", link_resets >= 1),
                ("connected after both", connected),
            ];
            for (what, ok) in rows {
                hprintln!("{}  {}", if ok { "PASS" } else { "FAIL" }, what);
            }
            return rows.iter().all(|(_, ok)| *ok);
        }

        // Sleep until the deadline, the tick, or a frame.
        let now64 = u64::from(now);
        let wake = next.map_or(now64 + TICK_MS, |d| d.min(now64 + TICK_MS));
        while u64::from(clock::millis()) < wake && !Lan9118::rx_pending() {
            cortex_m::asm::wfi();
        }
    }
}
