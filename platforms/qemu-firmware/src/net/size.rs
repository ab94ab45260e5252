//! Size-measurement variants of the `net` firmware (see `SIZES.md`):
//! `net-nic` links the runtime and the LAN9118 driver, `net-stack` adds
//! smoltcp behind smoltcp-nal, used through the embedded-nal traits the way
//! `longlink-nal` uses them. `net` minus `net-stack` is longlink plus the
//! board code around it. Each prints what `baseline` prints.

use core::hint::black_box;
#[cfg(feature = "net-stack")]
use core::net::{IpAddr, Ipv4Addr, SocketAddr};

#[cfg(feature = "net-stack")]
use embedded_nal::{TcpClientStack, UdpClientStack};
use smoltcp::phy::{Device, RxToken, TxToken};

use super::lan9118::Lan9118;
#[cfg(feature = "net-stack")]
use super::Buffers;
use super::MAC;

/// The NIC alone: bring it up, echo whatever frames arrive.
#[cfg(not(feature = "net-stack"))]
pub fn nic() -> bool {
    let Ok((mut nic, ctl)) = Lan9118::new(MAC) else {
        return false;
    };
    let mut n = 0u32;
    for _ in 0..black_box(3) {
        let now = smoltcp::time::Instant::from_millis(0);
        if let Some((rx, tx)) = nic.receive(now) {
            let mut frame = [0u8; 64];
            let len = rx.consume(|f| {
                let l = f.len().min(64);
                frame[..l].copy_from_slice(&f[..l]);
                l
            });
            tx.consume(len, |out| out.copy_from_slice(&frame[..len]));
            n += 1;
        }
        n += u32::from(black_box(ctl.link_up()));
    }
    crate::report(n);
    true
}

/// The stack: the NIC under smoltcp-nal, a TCP and a UDP socket opened,
/// written, read and closed through the embedded-nal traits.
#[cfg(feature = "net-stack")]
pub fn stack() -> bool {
    let Some(cp) = cortex_m::Peripherals::take() else {
        return false;
    };
    super::clock::start_clock(cp.SYST);
    let Ok((nic, ctl)) = Lan9118::new(MAC) else {
        return false;
    };
    let mut buffers = Buffers::new();
    let mut stack = super::stack(nic, &mut buffers, black_box(7));
    let server = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), black_box(50798));
    let mut n = 0u32;
    let mut buf = [0u8; 64];
    for _ in 0..black_box(3) {
        let _ = stack.poll();
        if let Ok(mut s) = TcpClientStack::socket(&mut stack) {
            let _ = TcpClientStack::connect(&mut stack, &mut s, server);
            if let Ok(k) = TcpClientStack::send(&mut stack, &mut s, black_box(b"hello")) {
                n += k as u32;
            }
            if let Ok(k) = TcpClientStack::receive(&mut stack, &mut s, &mut buf) {
                n += k as u32;
            }
            let _ = TcpClientStack::close(&mut stack, s);
        }
        if let Ok(mut s) = UdpClientStack::socket(&mut stack) {
            let _ = UdpClientStack::connect(&mut stack, &mut s, server);
            let _ = UdpClientStack::send(&mut stack, &mut s, black_box(b"hello"));
            if let Ok((k, _)) = UdpClientStack::receive(&mut stack, &mut s, &mut buf) {
                n += k as u32;
            }
            let _ = UdpClientStack::close(&mut stack, s);
        }
        n += u32::from(black_box(ctl.link_up()));
    }
    crate::report(n);
    true
}
