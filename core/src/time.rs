//! Time as the core sees it: a monotonic [`Instant`] and a [`Duration`], both
//! in milliseconds.
//!
//! The core never reads a clock. The caller passes `now` into every `handle_*`
//! call; shims convert from their platform's clock (`std::time::Instant`, a
//! hardware timer, embassy's `Instant`). Milliseconds are plenty for timers
//! measured in seconds, and a `u64` of them lasts half a billion years.

use core::fmt;
use core::ops::{Add, AddAssign, Sub};

/// A point on the caller's monotonic clock, in milliseconds since an arbitrary
/// origin (typically boot).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Instant {
    millis: u64,
}

impl Instant {
    /// The origin of the clock.
    pub const ZERO: Instant = Instant { millis: 0 };

    /// An instant `millis` milliseconds after the origin.
    pub const fn from_millis(millis: u64) -> Self {
        Instant { millis }
    }

    /// An instant `secs` seconds after the origin.
    pub const fn from_secs(secs: u64) -> Self {
        Instant {
            millis: secs.saturating_mul(1000),
        }
    }

    /// Milliseconds since the origin.
    pub const fn as_millis(self) -> u64 {
        self.millis
    }

    /// The time from `earlier` to `self`, or zero if `earlier` is later.
    pub const fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_millis(self.millis.saturating_sub(earlier.millis))
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03}s", self.millis / 1000, self.millis % 1000)
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A span of time in milliseconds, up to `u32::MAX` (49.7 days).
///
/// 32 bits keep [`Config`](crate::Config) and the timer arithmetic small on
/// 32-bit microcontrollers; every span the state machine deals in (retry
/// delays, heartbeats, timeouts) is far shorter.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Duration {
    millis: u32,
}

impl Duration {
    /// No time at all.
    pub const ZERO: Duration = Duration { millis: 0 };

    /// The longest representable span (49.7 days).
    pub const MAX: Duration = Duration { millis: u32::MAX };

    /// A duration of `millis` milliseconds, saturating at [`Duration::MAX`].
    pub const fn from_millis(millis: u64) -> Self {
        Duration {
            millis: if millis > u32::MAX as u64 {
                u32::MAX
            } else {
                millis as u32
            },
        }
    }

    /// A duration of `secs` seconds, saturating at [`Duration::MAX`].
    pub const fn from_secs(secs: u64) -> Self {
        Self::from_millis(secs.saturating_mul(1000))
    }

    /// A duration of `mins` minutes, saturating at [`Duration::MAX`].
    pub const fn from_mins(mins: u64) -> Self {
        Self::from_millis(mins.saturating_mul(60_000))
    }

    /// The length in milliseconds.
    pub const fn as_millis(self) -> u64 {
        self.millis as u64
    }

    /// `self * 2^exp`, saturating at [`Duration::MAX`].
    pub const fn saturating_shl(self, exp: u32) -> Duration {
        // In 32 bits: it overflows exactly when `millis > MAX >> exp`.
        if self.millis == 0 {
            self
        } else if exp >= 32 || self.millis > u32::MAX >> exp {
            Duration::MAX
        } else {
            Duration {
                millis: self.millis << exp,
            }
        }
    }
}

impl fmt::Debug for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.millis.is_multiple_of(1000) {
            write!(f, "{}s", self.millis / 1000)
        } else {
            write!(f, "{}ms", self.millis)
        }
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    /// Saturates at the end of time rather than wrapping.
    fn add(self, rhs: Duration) -> Instant {
        Instant {
            millis: self.millis.saturating_add(rhs.millis as u64),
        }
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, rhs: Duration) {
        *self = *self + rhs;
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    /// Saturates at zero: the core never computes negative spans.
    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_duration_since(rhs)
    }
}

impl Add for Duration {
    type Output = Duration;
    fn add(self, rhs: Duration) -> Duration {
        Duration {
            millis: self.millis.saturating_add(rhs.millis),
        }
    }
}

#[cfg(feature = "std")]
impl From<std::time::Duration> for Duration {
    fn from(d: std::time::Duration) -> Self {
        Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

#[cfg(feature = "std")]
impl From<Duration> for std::time::Duration {
    fn from(d: Duration) -> Self {
        std::time::Duration::from_millis(u64::from(d.millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_instead_of_wrapping() {
        let end = Instant::from_millis(u64::MAX);
        assert_eq!(end + Duration::from_secs(1), end);
        assert_eq!(Instant::ZERO - Instant::from_secs(5), Duration::ZERO);
        assert_eq!(
            Instant::from_secs(7) - Instant::from_secs(5),
            Duration::from_millis(2000)
        );
    }

    #[test]
    fn formats_as_seconds() {
        extern crate std;
        use std::format;
        assert_eq!(format!("{}", Instant::from_millis(12_345)), "12.345s");
        assert_eq!(format!("{}", Duration::from_secs(20)), "20s");
        assert_eq!(format!("{}", Duration::from_millis(1500)), "1500ms");
        assert_eq!(format!("{:?}", Duration::from_mins(5)), "300s");
    }

    #[test]
    fn durations_saturate() {
        assert_eq!(Duration::from_millis(u64::MAX), Duration::MAX);
        assert_eq!(
            Duration::from_secs(5).saturating_shl(3),
            Duration::from_secs(40)
        );
        assert_eq!(Duration::from_secs(5).saturating_shl(40), Duration::MAX);
        assert_eq!(Duration::ZERO.saturating_shl(40), Duration::ZERO);
        // Against 64-bit arithmetic at every shift and the edges.
        for millis in [
            0,
            1,
            2,
            3,
            5000,
            u32::MAX >> 1,
            (u32::MAX >> 1) + 1,
            u32::MAX,
        ] {
            for exp in 0..70 {
                let wide = if exp >= 32 {
                    if millis == 0 {
                        0
                    } else {
                        u64::MAX
                    }
                } else {
                    u64::from(millis) << exp
                };
                assert_eq!(
                    Duration::from_millis(u64::from(millis)).saturating_shl(exp),
                    Duration::from_millis(wide),
                    "{millis} << {exp}"
                );
            }
        }
    }
}
