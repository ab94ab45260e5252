//! The virtual clock: milliseconds that pass only when the test says so.

use std::cell::Cell;
use std::rc::Rc;

/// A monotonic virtual clock in milliseconds, shared by everything in one
/// test (clones see the same time). It starts at 0.
///
/// A clock made by [`VirtualClock::driving_embassy_time`] also moves
/// embassy-time's mock driver by the same amount, so embassy-net's timers
/// and this clock never disagree.
#[derive(Clone, Debug, Default)]
pub struct VirtualClock {
    now: Rc<Cell<u64>>,
    embassy: bool,
}

impl VirtualClock {
    /// A clock at 0 that only this crate's users read.
    pub fn new() -> Self {
        VirtualClock::default()
    }

    /// A clock at 0 that also advances embassy-time's (global) mock driver.
    /// Only [`crate::embassy::EmbassyWorld`] makes one, after resetting the
    /// mock driver to 0.
    pub(crate) fn driving_embassy_time() -> Self {
        VirtualClock {
            now: Rc::default(),
            embassy: true,
        }
    }

    /// Milliseconds since the start.
    pub fn now_ms(&self) -> u64 {
        self.now.get()
    }

    /// Lets `ms` milliseconds pass.
    pub fn advance(&self, ms: u64) {
        self.now.set(self.now.get() + ms);
        if self.embassy {
            embassy_time::MockDriver::get().advance(embassy_time::Duration::from_millis(ms));
        }
    }

    /// The time as smoltcp sees it.
    pub fn smoltcp_now(&self) -> smoltcp::time::Instant {
        // Virtual time stays far below i64::MAX milliseconds.
        smoltcp::time::Instant::from_millis(i64::try_from(self.now_ms()).unwrap_or(i64::MAX))
    }

    /// This clock as an [`embedded_time::Clock`], for smoltcp-nal.
    pub fn embedded_time(&self) -> NalClock {
        NalClock(self.clone())
    }
}

/// [`VirtualClock`] as the [`embedded_time::Clock`] smoltcp-nal's
/// `NetworkStack` reads: 32-bit milliseconds.
#[derive(Clone, Debug)]
pub struct NalClock(VirtualClock);

impl embedded_time::Clock for NalClock {
    type T = u32;
    const SCALING_FACTOR: embedded_time::rate::Fraction =
        embedded_time::rate::Fraction::new(1, 1000);

    fn try_now(&self) -> Result<embedded_time::Instant<Self>, embedded_time::clock::Error> {
        // Wraps after 49 days of virtual time, as a 32-bit tick counter does.
        Ok(embedded_time::Instant::new(self.0.now_ms() as u32))
    }
}
