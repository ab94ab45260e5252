//! One logging shim: `trace!`, `debug!`, `info!`, `warn!` expand to `defmt`,
//! to `log`, or to nothing (the arguments are still type-checked, so a
//! feature combination cannot hide a broken log line).
//!
//! Format strings use only `{}` and `{:?}`, which both backends accept.
#![allow(unused_macros)]

macro_rules! log_impl {
    ($level:ident, $($arg:tt)*) => {{
        #[cfg(feature = "defmt")]
        ::defmt::$level!($($arg)*);
        #[cfg(all(feature = "log", not(feature = "defmt")))]
        ::log::$level!(target: "longlink", $($arg)*);
        #[cfg(not(any(feature = "log", feature = "defmt")))]
        {
            let _ = format_args!($($arg)*);
        }
    }};
}

macro_rules! trace {
    ($($arg:tt)*) => { log_impl!(trace, $($arg)*) };
}
macro_rules! debug {
    ($($arg:tt)*) => { log_impl!(debug, $($arg)*) };
}
macro_rules! info {
    ($($arg:tt)*) => { log_impl!(info, $($arg)*) };
}
macro_rules! warn {
    ($($arg:tt)*) => { log_impl!(warn, $($arg)*) };
}
