//! A millisecond clock from SysTick, for longlink and for smoltcp-nal.

use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::SYST;
use cortex_m_rt::exception;

/// The core clock of mps2-an385/an386 (QEMU: SYSCLK, 25 MHz).
pub const SYSCLK_HZ: u32 = 25_000_000;

static MILLIS: AtomicU32 = AtomicU32::new(0);

#[exception]
fn SysTick() {
    MILLIS.fetch_add(1, Ordering::Relaxed);
}

/// Starts the 1 kHz SysTick interrupt behind [`millis`].
pub fn start_clock(mut syst: SYST) {
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(SYSCLK_HZ / 1000 - 1);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
}

/// Milliseconds since boot (wraps after 49 days; the runs here are minutes).
pub fn millis() -> u32 {
    MILLIS.load(Ordering::Relaxed)
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
