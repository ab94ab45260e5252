//! Size-measurement variant: what a product links. The driver, the core and
//! `TestProtocol` over a stack, clock and modem the compiler cannot see
//! through (`black_box`), so nothing is folded away; no scripted server.
//! Under QEMU it runs three polls. It prints exactly what `baseline` prints
//! (one line with one number), so the difference is longlink alone.

use core::hint::black_box;
use core::net::{IpAddr, Ipv4Addr, SocketAddr};

use embedded_nal::{nb, TcpClientStack, TcpError, TcpErrorKind, UdpClientStack};
use longlink_core::time::Instant;
use longlink_core::{Config, Event as CoreEvent, Remote, TestProtocol};
use longlink_nal::{Driver, Event, Modem};

#[derive(Debug)]
pub struct E;

impl TcpError for E {
    fn kind(&self) -> TcpErrorKind {
        TcpErrorKind::Other
    }
}

/// Stands for a real stack: every answer comes from `black_box`.
pub struct Opaque;

fn answer<T>(ok: T) -> nb::Result<T, E> {
    match black_box(0u8) {
        0 => Ok(ok),
        1 => Err(nb::Error::WouldBlock),
        _ => Err(nb::Error::Other(E)),
    }
}

impl TcpClientStack for Opaque {
    type TcpSocket = u8;
    type Error = E;
    fn socket(&mut self) -> Result<u8, E> {
        Ok(black_box(1))
    }
    fn connect(&mut self, s: &mut u8, a: SocketAddr) -> nb::Result<(), E> {
        black_box((s, a));
        answer(())
    }
    fn send(&mut self, s: &mut u8, b: &[u8]) -> nb::Result<usize, E> {
        black_box((s, b));
        answer(black_box(b.len()))
    }
    fn receive(&mut self, s: &mut u8, b: &mut [u8]) -> nb::Result<usize, E> {
        black_box((s, &b));
        answer(black_box(0usize).min(b.len()))
    }
    fn close(&mut self, s: u8) -> Result<(), E> {
        black_box(s);
        Ok(())
    }
}

impl UdpClientStack for Opaque {
    type UdpSocket = u8;
    type Error = E;
    fn socket(&mut self) -> Result<u8, E> {
        Ok(black_box(2))
    }
    fn connect(&mut self, s: &mut u8, a: SocketAddr) -> Result<(), E> {
        black_box((s, a));
        Ok(())
    }
    fn send(&mut self, s: &mut u8, b: &[u8]) -> nb::Result<(), E> {
        black_box((s, b));
        answer(())
    }
    fn receive(&mut self, s: &mut u8, b: &mut [u8]) -> nb::Result<(usize, SocketAddr), E> {
        black_box((s, &b));
        let from = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 50798);
        answer((black_box(0usize).min(b.len()), from))
    }
    fn close(&mut self, s: u8) -> Result<(), E> {
        black_box(s);
        Ok(())
    }
}

struct Board;

impl Modem for Board {
    fn network_ready(&mut self) -> bool {
        black_box(true)
    }
    fn reset_link(&mut self) {
        black_box(1u8);
    }
    fn set_radio(&mut self, on: bool) {
        black_box(on);
    }
}

pub fn run() -> bool {
    #[cfg(not(feature = "product-acked"))]
    let config = Config::default();
    #[cfg(feature = "product-acked")]
    let config = Config {
        framing: longlink_core::Framing::Len16,
        delivery: longlink_core::Delivery::Acked(longlink_core::Acked::new(black_box(7))),
        ..Config::default()
    };
    let server = Remote::Addr(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 50798));
    let clock = || Instant::from_millis(black_box(0u64));
    let Ok(link) = Driver::<_, _, _, TestProtocol, 256, 128>::new(
        Opaque,
        clock,
        Board,
        server,
        config,
        TestProtocol::default(),
    ) else {
        return false;
    };
    // The status LED, as a product wires it.
    let mut link = link.on_event(|e| {
        if let Event::Core(CoreEvent::Status(status)) = e {
            black_box(status as u8);
        }
    });
    let _ = link.set_wall_clock(black_box(1_732_492_800_000));
    for _ in 0..black_box(3) {
        let _ = link.enqueue(black_box(b"hello"));
        black_box(link.poll());
    }
    let n = black_box(link.connection().stats().messages_out);
    crate::report(n);
    true
}
