//! The desktop clock: `std::time::Instant` for the monotonic side, async-io
//! timers for sleeping, the system clock for the `time` command.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use longlink_core::time::Instant;
use longlink_nal_async::Clock;

/// Milliseconds since the clock was created, and async-io timers.
#[derive(Clone, Copy, Debug)]
pub struct StdClock {
    origin: std::time::Instant,
}

impl StdClock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        StdClock {
            origin: std::time::Instant::now(),
        }
    }

    /// The std instant of a core instant.
    pub fn to_std(&self, at: Instant) -> std::time::Instant {
        self.origin + Duration::from_millis(at.as_millis())
    }
}

impl Default for StdClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for StdClock {
    fn now(&self) -> Instant {
        // Truncating to whole milliseconds keeps `now` at or before the real
        // time, so a timer set for `at` always finds `now >= at` on waking.
        Instant::from_millis(u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    async fn sleep_until(&self, at: Instant) {
        async_io::Timer::at(self.to_std(at)).await;
    }

    fn unix_time_ms(&self) -> Option<u64> {
        unix_time_ms()
    }
}

/// The system clock in milliseconds since the Unix epoch.
pub fn unix_time_ms() -> Option<u64> {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
    u64::try_from(since.as_millis()).ok()
}

/// A seed from the standard library's per-process random hash keys.
pub fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleeps_until_the_deadline_and_now_has_reached_it() {
        let clock = StdClock::new();
        let at = clock.now() + longlink_core::time::Duration::from_millis(20);
        async_io::block_on(clock.sleep_until(at));
        assert!(clock.now() >= at);
    }

    #[test]
    fn system_clock_is_plausible() {
        let ms = unix_time_ms().unwrap();
        assert!(ms > longlink_core::MIN_PLAUSIBLE_UNIX_MS);
    }
}
