//! longlink on a Cortex-M4 (QEMU `mps2-an386`, thumbv7em-none-eabihf).
//!
//! Default build (`scenario`): the tutorial's client, `longlink-core` +
//! `TestProtocol` + `longlink-nal`, runs against an in-memory embedded-nal
//! stack (`longlink-memnet`) whose far end plays the tutorial's lab server.
//! The scenario: connect, SNTP sync, heartbeats every 10 s, `back`/`bin`/
//! `time` answered, the server drops the connection, messages queued
//! meanwhile arrive once and in order on the reconnect, then refused
//! connects count to a link reset. It runs twice: on a stack that follows
//! the embedded-nal docs, and on one that behaves like smoltcp-nal 0.7.
//! Results go out over semihosting; the exit code is the verdict.
//!
//! Time is a **virtual clock** the firmware advances itself, the way a
//! tickless firmware sleeps until the driver's deadline: after each
//! `poll()` the loop "sleeps" to `min(deadline, next 100 ms tick)` by
//! setting the clock there. Minutes of the tutorial's timings (5 s retry,
//! 10 s heartbeat) thus run in milliseconds, deterministically. On a board,
//! the clock closure reads a hardware timer and the loop executes `WFI`.
//!
//! `--features net` builds the real-stack firmware instead: smoltcp (via
//! smoltcp-nal and `longlink-nal`) on the board's LAN9118, talking to
//! `qemu-bridge` on the host; `--features net-async` the same on embassy-net
//! with `longlink-nal-async`. `scripts/qemu-lab.sh` runs them (see `net`).
//!
//! The `product` and `baseline` features (and `net-nic`, `net-stack`) build
//! the variants that `scripts/size-report.sh` compares (see `SIZES.md`).
#![no_std]
#![no_main]
// The `net` firmware drives device registers: its one `unsafe` module is
// `net::hw`. Every other build forbids unsafe code outright.
#![cfg_attr(
    not(any(
        feature = "net",
        feature = "net-async",
        feature = "net-nic",
        feature = "net-stack"
    )),
    forbid(unsafe_code)
)]
#![cfg_attr(
    any(
        feature = "net",
        feature = "net-async",
        feature = "net-nic",
        feature = "net-stack"
    ),
    deny(unsafe_code)
)]

use core::panic::PanicInfo;

use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprintln};

#[cfg(all(
    feature = "scenario",
    not(any(feature = "product", feature = "baseline"))
))]
mod scenario;

#[cfg(feature = "product")]
mod product;

#[cfg(any(
    feature = "net",
    feature = "net-async",
    feature = "net-nic",
    feature = "net-stack"
))]
mod net;

#[entry]
fn main() -> ! {
    #[cfg(all(
        feature = "scenario",
        not(any(feature = "product", feature = "baseline"))
    ))]
    let ok = scenario::run();
    #[cfg(feature = "net")]
    let ok = net::run();
    #[cfg(feature = "net-async")]
    let ok = net::asynch::run();
    #[cfg(all(feature = "net-stack", not(feature = "net")))]
    let ok = net::size::stack();
    #[cfg(all(feature = "net-nic", not(any(feature = "net", feature = "net-stack"))))]
    let ok = net::size::nic();
    #[cfg(feature = "product")]
    let ok = product::run();
    #[cfg(all(feature = "baseline", not(feature = "product")))]
    let ok = baseline();
    finish(ok)
}

/// The runtime every variant has: a line with a number over semihosting.
#[cfg(all(feature = "baseline", not(feature = "product")))]
fn baseline() -> bool {
    report(core::hint::black_box(7u32));
    true
}

/// The one line every size variant prints, depending on a value the
/// compiler cannot see. No integer formatting: `core::fmt`'s number code is
/// inlined differently in each variant, which would blur the difference.
#[cfg(any(
    feature = "baseline",
    feature = "product",
    feature = "net-nic",
    feature = "net-stack"
))]
#[inline(never)]
pub(crate) fn report(n: u32) {
    let line: &[u8] = if n == 0 {
        b"result: none\n"
    } else {
        b"result: some\n"
    };
    if let Ok(mut out) = cortex_m_semihosting::hio::hstdout() {
        let _ = out.write_all(line);
    }
}

fn finish(ok: bool) -> ! {
    if ok {
        hprintln!("PASS");
        debug::exit(debug::EXIT_SUCCESS);
    } else {
        hprintln!("FAIL");
        debug::exit(debug::EXIT_FAILURE);
    }
    // Only reached without a debugger/QEMU to take the exit.
    loop {
        cortex_m::asm::wfi();
    }
}

/// A panic is a failed run. The message is not formatted, so `core::fmt`
/// is not pulled in through panics (the size report stays honest).
#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    hprintln!("PANIC");
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}
