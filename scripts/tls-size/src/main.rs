//! What TLS adds on a Cortex-M4: `longlink-nal-async`'s driver (core +
//! `TestProtocol`) over an opaque TCP stack, and with `--features tls` the
//! embedded-tls task beside it, as firmware would link them. The stack,
//! clock and RNG hide their values behind `black_box`, so nothing is
//! optimised away; the run itself only prints the sizes of the futures and
//! buffers (RAM that lives on a task's stack) over semihosting and exits.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use core::hint::black_box;
use core::net::SocketAddr;
use core::panic::PanicInfo;

use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprintln};
use embedded_io_async::{ErrorKind, ErrorType, Read, Write};
use embedded_nal_async::TcpConnect;
use longlink_core::time::Instant;
use longlink_core::{Config, Connection, Remote, TestProtocol};
use longlink_nal_async::{AlwaysUp, Clock, Longlink, Net, NoopRawMutex};

/// A TCP stack the optimiser cannot see through.
struct Opaque;

struct OpaqueConn;

impl ErrorType for OpaqueConn {
    type Error = ErrorKind;
}

impl Read for OpaqueConn {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        let n = black_box(buf.len());
        for b in buf.iter_mut().take(n) {
            *b = black_box(0);
        }
        Ok(n)
    }
}

impl Write for OpaqueConn {
    async fn write(&mut self, data: &[u8]) -> Result<usize, ErrorKind> {
        Ok(black_box(data.len()))
    }
    async fn flush(&mut self) -> Result<(), ErrorKind> {
        black_box(Ok(()))
    }
}

impl TcpConnect for Opaque {
    type Error = ErrorKind;
    type Connection<'a> = OpaqueConn;
    async fn connect(&self, _: SocketAddr) -> Result<OpaqueConn, ErrorKind> {
        if black_box(true) {
            Ok(OpaqueConn)
        } else {
            Err(ErrorKind::Other)
        }
    }
}

struct OpaqueClock;

impl Clock for OpaqueClock {
    fn now(&self) -> Instant {
        Instant::from_millis(black_box(0))
    }
    async fn sleep_until(&self, at: Instant) {
        black_box(at);
    }
}

#[cfg(feature = "tls")]
mod tls {
    use super::black_box;
    use rand_core::{CryptoRng, Error, RngCore};

    /// Stands for the board's TRNG.
    pub struct Trng;

    impl RngCore for Trng {
        fn next_u32(&mut self) -> u32 {
            black_box(4)
        }
        fn next_u64(&mut self) -> u64 {
            black_box(4)
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            for b in dest {
                *b = black_box(4);
            }
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), Error> {
            self.fill_bytes(dest);
            Ok(())
        }
    }

    impl CryptoRng for Trng {}

    pub static CA: [u8; 512] = [0x30; 512];
}

#[entry]
fn main() -> ! {
    let config = Config {
        remote: Remote::Addr(black_box(SocketAddr::from(([10, 0, 0, 1], 50799)))),
        ..Config::default()
    };
    let Ok(conn) = Connection::<TestProtocol, 256, 256>::new(
        config,
        TestProtocol::default(),
        Instant::from_millis(0),
    ) else {
        finish(false)
    };
    let link: Longlink<NoopRawMutex, TestProtocol, 256, 256> = Longlink::new(conn);
    let clock = OpaqueClock;
    let mut modem = AlwaysUp;
    let mut scratch = [0u8; 256];

    #[cfg(not(feature = "tls"))]
    {
        let run = link.run(Net::tcp(Opaque), &clock, &mut modem, &mut scratch, |e| {
            black_box(e);
        });
        hprintln!("size_of: driver future {}", core::mem::size_of_val(&run));
        if black_box(false) {
            let _ = embassy_futures::block_on(run);
        }
    }

    #[cfg(feature = "tls")]
    {
        use longlink_nal_async::tls::{ServerCheck, TlsTcp, WallClock};
        let tls_link: TlsTcp<NoopRawMutex, 256, 256> = TlsTcp::new();
        let mut read_record = [0u8; 16640];
        let mut write_record = [0u8; 1024];
        let mut rng = tls::Trng;
        let check = ServerCheck::new(black_box(&tls::CA[..]), black_box("server.example"))
            .clock::<WallClock>();
        let run = link.run(Net::tcp(&tls_link), &clock, &mut modem, &mut scratch, |e| {
            black_box(e);
        });
        let task = tls_link.run(Opaque, check, &mut rng, &mut read_record, &mut write_record);
        hprintln!("size_of: driver future {}", core::mem::size_of_val(&run));
        hprintln!("size_of: tls task future {}", core::mem::size_of_val(&task));
        hprintln!(
            "size_of: TlsTcp<256, 256> {}",
            core::mem::size_of::<TlsTcp<NoopRawMutex, 256, 256>>()
        );
        hprintln!("size_of: record buffers {}", 16640 + 1024);
        if black_box(false) {
            embassy_futures::block_on(embassy_futures::join::join(run, task));
        }
    }
    finish(true)
}

fn finish(ok: bool) -> ! {
    debug::exit(if ok {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    });
    loop {
        cortex_m::asm::wfi();
    }
}

#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    hprintln!("PANIC");
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}
