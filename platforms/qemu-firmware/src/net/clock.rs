//! The millisecond clock for longlink and smoltcp-nal, and the 1 kHz tick
//! that wakes the main loop from `WFI`.
//!
//! Time is read from the board's CMSDK APB timer 0, free-running down from
//! 0xFFFFFFFF at 25 MHz, extended to 64 bits in software. Counting SysTick
//! interrupts instead drifts under QEMU (each late interrupt delays the next
//! period: 20 s of firmware time took 21.3 s, measured), so SysTick only
//! wakes the loop.

use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::SYST;
use cortex_m_rt::exception;

/// The core clock of mps2-an385/an386 (QEMU: SYSCLK, 25 MHz).
pub const SYSCLK_HZ: u32 = 25_000_000;

use super::hw::Reg;

/// Timer 0: control (bit 0 enable), current value, reload value.
const TIMER_CTRL: Reg = Reg::timer0(0x00);
const TIMER_VALUE: Reg = Reg::timer0(0x04);
const TIMER_RELOAD: Reg = Reg::timer0(0x08);
/// Its clock (PCLK = SYSCLK on these boards).
const TIMER_HZ: u64 = 25_000_000;

/// The timer as an up-counter.
fn counter() -> u32 {
    !TIMER_VALUE.read()
}

/// The counter at the last read, and how often it wrapped (every 172 s).
static LAST: AtomicU32 = AtomicU32::new(0);
static WRAPS: AtomicU32 = AtomicU32::new(0);
/// The counter at boot ([`start_clock`]).
static ORIGIN: AtomicU32 = AtomicU32::new(0);

#[exception]
fn SysTick() {
    // Only the wake-up from WFI matters.
}

/// Starts the 1 kHz SysTick interrupt that wakes the main loop, and sets
/// time zero.
pub fn start_clock(mut syst: SYST) {
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(SYSCLK_HZ / 1000 - 1);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
    TIMER_CTRL.write(0);
    TIMER_RELOAD.write(u32::MAX);
    TIMER_VALUE.write(u32::MAX);
    TIMER_CTRL.write(1);
    let now = counter();
    LAST.store(now, Ordering::Relaxed);
    ORIGIN.store(now, Ordering::Relaxed);
}

/// Milliseconds since [`start_clock`] (wraps after 49 days; the runs here
/// are minutes). Call from thread mode only, at least every 172 s (the main
/// loop wakes every 10 ms), so that no wrap of the counter is missed.
pub fn millis() -> u32 {
    (ticks() / (TIMER_HZ / 1000)) as u32
}

/// Microseconds since [`start_clock`] (same rules as [`millis`]).
#[cfg(feature = "net-async")]
pub fn micros() -> u64 {
    ticks() / (TIMER_HZ / 1_000_000)
}

fn ticks() -> u64 {
    let raw = counter();
    if raw < LAST.swap(raw, Ordering::Relaxed) {
        WRAPS.fetch_add(1, Ordering::Relaxed);
    }
    (u64::from(WRAPS.load(Ordering::Relaxed)) << 32 | u64::from(raw))
        - u64::from(ORIGIN.load(Ordering::Relaxed))
}

/// The clock smoltcp-nal reads.
#[derive(Clone, Copy, Debug, Default)]
pub struct MilliClock;

impl embedded_time::Clock for MilliClock {
    type T = u32;
    const SCALING_FACTOR: embedded_time::rate::Fraction =
        embedded_time::rate::Fraction::new(1, 1000);
    fn try_now(&self) -> Result<embedded_time::Instant<Self>, embedded_time::clock::Error> {
        Ok(embedded_time::Instant::new(millis()))
    }
}
