//! The board around the connection: the watchdog (CMSDK APB watchdog), the run's settings (the semihosting
//! command line) and the status LED (a semihosting line).

use cortex_m_semihosting::hprintln;
use longlink_core::Status;

use super::clock::SYSCLK_HZ;
use super::hw::{self, Reg};

/// The CMSDK APB watchdog at 0x40008000, clocked at SYSCLK. QEMU emulates
/// it: the first timeout raises an NMI (see `hw`), the second resets the
/// machine (and with `-no-reboot` QEMU exits).
pub struct Watchdog {
    feeds: u32,
}

const WDOG_LOAD: Reg = Reg::watchdog(0x000);
const WDOG_CONTROL: Reg = Reg::watchdog(0x008);
const WDOG_INTCLR: Reg = Reg::watchdog(0x00c);
const WDOG_LOCK: Reg = Reg::watchdog(0xc00);
const WDOG_UNLOCK_KEY: u32 = 0x1ACC_E551;

impl Watchdog {
    /// Arms the watchdog: NMI after `timeout_ms` without a feed, reset after
    /// twice that.
    pub fn start(timeout_ms: u32) -> Watchdog {
        WDOG_LOCK.write(WDOG_UNLOCK_KEY);
        WDOG_LOAD.write(SYSCLK_HZ / 1000 * timeout_ms);
        // INTEN | RESEN.
        WDOG_CONTROL.write(0b11);
        WDOG_LOCK.write(0);
        Watchdog { feeds: 0 }
    }

    /// Whether the register block answered like a watchdog (LOAD reads back).
    pub fn present(timeout_ms: u32) -> bool {
        WDOG_LOAD.read() == SYSCLK_HZ / 1000 * timeout_ms
    }

    /// Reloads the counter.
    pub fn feed(&mut self) {
        WDOG_LOCK.write(WDOG_UNLOCK_KEY);
        WDOG_INTCLR.write(1);
        WDOG_LOCK.write(0);
        self.feeds += 1;
    }

    /// How often it was fed.
    pub fn feeds(&self) -> u32 {
        self.feeds
    }
}

/// The run's settings, from the semihosting command line
/// (`-semihosting-config enable=on,arg=longlink,arg=udp,arg=heartbeat=2000`):
/// words `udp`, `fault`, `rows`, and `key=milliseconds` for `heartbeat`, `retry`,
/// `idle`, `connect`, `network-wait`, `flight`, `run`, `hang`.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// UDP instead of TCP.
    pub udp: bool,
    /// Queue numbered messages each time the connection is lost (the fault
    /// run checks they arrive once, in order).
    pub queue_on_loss: bool,
    /// At `run=`, pass only if the flight-mode and link-reset rows ran
    /// (radio turned off and on, the link reset) and the connection is up.
    pub expect_rows: bool,
    /// Heartbeat interval.
    pub heartbeat_ms: u32,
    /// Pause between connect attempts.
    pub retry_ms: u32,
    /// Reconnect when nothing was received for this long.
    pub idle_ms: u32,
    /// Give up on a connect after this long.
    pub connect_ms: u32,
    /// How long to wait for the network before flight mode.
    pub network_wait_ms: u32,
    /// How long flight mode lasts.
    pub flight_ms: u32,
    /// Stop (PASS) after this long; 0: run until QEMU is stopped.
    pub run_ms: u32,
    /// Stop feeding the watchdog after this long (0: never): the watchdog
    /// check.
    pub hang_ms: u32,
}

impl Default for Settings {
    fn default() -> Self {
        // The tutorial's timings; timeouts for a stack that reports neither
        // a refused connect nor a FIN (smoltcp-nal).
        Settings {
            udp: false,
            queue_on_loss: false,
            expect_rows: false,
            heartbeat_ms: 10_000,
            retry_ms: 5_000,
            idle_ms: 60_000,
            connect_ms: 10_000,
            network_wait_ms: 300_000,
            flight_ms: 20_000,
            run_ms: 0,
            hang_ms: 0,
        }
    }
}

impl Settings {
    /// Reads the command line; unknown words are reported and ignored.
    pub fn from_command_line() -> Settings {
        let mut buf = [0u8; 256];
        let n = hw::command_line(&mut buf);
        let line = core::str::from_utf8(&buf[..n]).unwrap_or("");
        let mut s = Settings::default();
        for word in line.split_ascii_whitespace() {
            let (key, value) = word.split_once('=').unwrap_or((word, ""));
            let ms = value.parse::<u32>().ok();
            let slot = match key {
                "udp" => {
                    s.udp = true;
                    continue;
                }
                "tcp" => {
                    s.udp = false;
                    continue;
                }
                "fault" => {
                    s.queue_on_loss = true;
                    continue;
                }
                "rows" => {
                    s.expect_rows = true;
                    continue;
                }
                "longlink" => continue,
                "heartbeat" => &mut s.heartbeat_ms,
                "retry" => &mut s.retry_ms,
                "idle" => &mut s.idle_ms,
                "connect" => &mut s.connect_ms,
                "network-wait" => &mut s.network_wait_ms,
                "flight" => &mut s.flight_ms,
                "run" => &mut s.run_ms,
                "hang" => &mut s.hang_ms,
                _ => {
                    hprintln!("settings: ignored {:?}", word);
                    continue;
                }
            };
            match ms {
                Some(v) => *slot = v,
                None => hprintln!("settings: {:?} needs milliseconds", word),
            }
        }
        s
    }
}

/// The tutorial's network LED, as one semihosting line per change.
pub fn led(status: Status, at_ms: u32) {
    let pattern = match status {
        Status::WaitingForNetwork | Status::RadioOff => "slow blink",
        Status::Connecting | Status::BackingOff => "fast blink",
        Status::Connected => "on",
    };
    hprintln!("[{:>7} ms] led: {} ({:?})", at_ms, pattern, status);
}
