//! The log: `env_logger` on stderr, one line per record with an RFC 3339
//! date to the millisecond (soak tests run for days), the level and the
//! message. `-q`/`-v` set the level; `RUST_LOG` (env_logger's syntax, such
//! as `debug` or `longlink=trace`) overrides them.

use std::io::Write;
use std::time::SystemTime;

use log::LevelFilter;

/// `2026-12-01T23:25:33.123Z` (UTC), the date of log and lab lines.
pub fn timestamp(t: SystemTime) -> String {
    crate::text::rfc3339(t)
}

/// The level for `-q`/`-v` counts: default info, `-q` warnings only, `-v`
/// debug, `-vv` trace.
pub fn level(quiet: u8, verbose: u8) -> LevelFilter {
    match i16::from(verbose) - i16::from(quiet) {
        i16::MIN..=-2 => LevelFilter::Error,
        -1 => LevelFilter::Warn,
        0 => LevelFilter::Info,
        1 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    }
}

/// Installs the logger (once; later calls only change the level). `RUST_LOG`,
/// when set, takes precedence over `level`.
pub fn init(level: LevelFilter) {
    let mut b = env_logger::Builder::new();
    b.filter_level(level)
        .parse_env(env_logger::Env::default())
        .target(env_logger::Target::Stderr)
        .format(|buf, record| {
            writeln!(
                buf,
                "{} {:<5} {}",
                timestamp(SystemTime::now()),
                record.level(),
                record.args()
            )
        });
    if b.try_init().is_err() {
        log::set_max_level(level);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn dates_log_lines() {
        let t = UNIX_EPOCH + Duration::from_millis(86_400_000 * 3 + 3_723_045);
        assert_eq!(timestamp(t), "1970-01-04T01:02:03.045Z");
    }

    #[test]
    fn quiet_and_verbose_move_the_level() {
        assert_eq!(level(0, 0), LevelFilter::Info);
        assert_eq!(level(1, 0), LevelFilter::Warn);
        assert_eq!(level(0, 1), LevelFilter::Debug);
        assert_eq!(level(0, 3), LevelFilter::Trace);
        assert_eq!(level(3, 0), LevelFilter::Error);
    }
}
