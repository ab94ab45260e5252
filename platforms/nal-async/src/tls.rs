//! TLS 1.3 for the driver on no_std targets (feature `tls`), with
//! [embedded-tls](embedded_tls): no heap, caller-provided buffers and RNG.
//!
//! TLS stays out of the core and out of the driver: [`TlsTcp`] is a
//! [`TcpConnect`] whose connect is a TCP connect plus a verified handshake,
//! so every TLS failure is a failed connect (counted, retried, up to a link
//! reset) and nothing is ever sent in the clear.
//!
//! ## Shape: a TLS task beside the driver
//!
//! embedded-tls borrows its record buffers (`&mut [u8]`) for the life of a
//! connection, while `TcpConnect::connect` only gets `&self`; lending the
//! same buffers to one connection after another from `&self` needs `unsafe`,
//! which this crate forbids. So the TLS session lives in a task of its own,
//! [`TlsTcp::run`], that owns the buffers and runs one connection after
//! another in a fresh scope. The driver's connection is a thin handle that
//! exchanges plaintext with the task through two small buffers (`RX` and
//! `TX` bytes) inside [`TlsTcp`]. Run both futures together:
//!
//! ```no_run
//! # use longlink_nal_async::{tls::*, *};
//! # async fn f<T: embedded_nal_async::TcpConnect, C: Clock, M: Modem, R: rand_core::RngCore + rand_core::CryptoRng>(
//! #     link: &Longlink<NoopRawMutex, longlink_core::TestProtocol, 512, 256>, tcp: T, clock: C, mut modem: M, mut rng: R,
//! #     ca_der: &[u8], server: core::net::SocketAddr) {
//! let tls: TlsTcp<NoopRawMutex, 512, 512> = TlsTcp::new();
//! let mut read_record = [0u8; 16640]; // a whole TLS record (2^14 + 256)
//! let mut write_record = [0u8; 1024]; // >= 512; larger writes are split
//! let mut scratch = [0u8; 256];
//! let check = ServerCheck::new(ca_der, "server.example"); // + .clock::<WallClock>()
//! embassy_futures::join::join(
//!     tls.run(tcp, check, &mut rng, &mut read_record, &mut write_record),
//!     link.run(Net::tcp(&tls), longlink_core::Remote::Addr(server), &clock, &mut modem, &mut scratch, |_| {}),
//! )
//! .await;
//! # }
//! ```
//!
//! Only the TLS task ever touches the socket and the embedded-tls session,
//! and it never abandons a write halfway (a half-written record would leave
//! the next one reusing its nonce): the driver's reads, writes and flushes
//! only copy plaintext under a short lock, so dropping them loses nothing.
//! The task itself does drop a pending read to serve a write; embedded-tls
//! keeps a record header in a local variable, so the socket below it is
//! wrapped to hand over each record header and each record body in one
//! piece, and to hand the header over again if the read that took it was
//! dropped (see `Pump`; this relies on embedded-tls 0.19 reading a record
//! as one header read and one body read into the same place).
//!
//! ## What is verified, and what is not
//!
//! [`ServerCheck`] configures embedded-tls's `CertVerifier` (feature
//! `rustpki`) with exactly one trusted CA certificate (DER) and the server
//! name. On every handshake:
//!
//! - verified: every certificate the server sends, from the one the CA
//!   signed down to the leaf, carries a valid signature by the one before it
//!   (ECDSA P-256 with SHA-256; P-384, Ed25519 and RSA are not compiled in,
//!   so servers with such keys or CAs fail to connect); the server's
//!   CertificateVerify signature over the handshake, with the leaf's key;
//!   the server's Finished MAC; the server name against the leaf's DNS
//!   subject alternative names (the common name only when there are none;
//!   `*.` wildcards in the left-most label);
//! - verified here, on top of embedded-tls: that the server did send a
//!   certificate and a CertificateVerify (embedded-tls alone completes a
//!   handshake in which the server omits both), and a CertificateVerify
//!   before any certificate is refused instead of reaching a panic in
//!   embedded-tls;
//! - verified only with a clock: the validity period of every certificate in
//!   the chain, when the clock type given to [`ServerCheck::clock`] returns
//!   the time ([`WallClock`] once set; the default `NoClock` skips it, so an
//!   expired certificate is accepted);
//! - not verified: issuer and subject names along the chain (only
//!   signatures link certificates), basic constraints (an ordinary leaf
//!   issued by the CA could sign another certificate), key usage and
//!   extended key usage, name constraints, revocation (CRL, OCSP), the CA
//!   certificate's own validity period, IP address subject alternative names
//!   (the server name must be a DNS name), more than one trusted CA.
//! - client certificates (mutual TLS) are not offered by this module.
//!
//! Cipher suite TLS_AES_128_GCM_SHA256, key exchange secp256r1, TLS 1.3
//! only. embedded-tls 0.19 as released panics when a *verified* server (its
//! records are authenticated first) sends a record with an empty inner
//! plaintext or a handshake message after the handshake, and drops the
//! connection on a KeyUpdate; this workspace builds it patched
//! (`patches/embedded-tls/PATCH.md`: errors instead of panics, KeyUpdate
//! handled). The crates.io release of this crate cannot carry that patch:
//! add the same `[patch.crates-io]` entry to your firmware.
//!
//! ## Memory
//!
//! The read record buffer must hold the largest record the server sends
//! (16640 bytes in general; less if the server is configured with a smaller
//! maximum fragment). The write record buffer must hold the ClientHello
//! (512 bytes is plenty); it bounds each record the client sends. `TlsTcp`
//! holds `RX + TX` bytes of plaintext; the task holds the embedded-tls
//! session (key schedule and the server's certificate list, up to `CERT`
//! bytes, see [`ServerCheck::cert_capacity`]).

use core::cell::{Cell, RefCell};
use core::convert::Infallible;
use core::marker::PhantomData;
use core::net::SocketAddr;
use core::sync::atomic::{AtomicU32, Ordering};

use embassy_futures::select::{select, Either};
use embassy_sync::blocking_mutex::raw::RawMutex;
use embassy_sync::blocking_mutex::Mutex;
use embassy_sync::signal::Signal;
use embedded_io_async::{Error as _, ErrorKind, ErrorType, Read, Write};
use embedded_nal_async::TcpConnect;
use embedded_tls::pki::CertVerifier;
use embedded_tls::{
    Aes128GcmSha256, Certificate, CertificateRef, CertificateVerifyRef, CryptoProvider,
    CryptoRngCore, NoClock, TlsCipherSuite, TlsClock, TlsConfig, TlsConnection, TlsContext,
    TlsError, TlsVerifier,
};

pub use embedded_tls;
pub use rand_core;

/// Why a TLS connection failed or ended.
#[derive(Debug, Clone, Copy)]
pub enum Error {
    /// The TCP connect failed.
    Tcp(ErrorKind),
    /// The handshake or a record failed (certificate, signature, name,
    /// protocol, socket errors seen by embedded-tls).
    Tls(TlsError),
    /// The handshake ended without the server proving its identity (no
    /// certificate or no CertificateVerify).
    NotVerified,
    /// The connection is gone (after an error already reported, or dropped).
    Closed,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Tcp(k) => write!(f, "TCP connect failed: {k:?}"),
            Error::Tls(e) => write!(f, "TLS failed: {e:?}"),
            Error::NotVerified => f.write_str("TLS: server not verified"),
            Error::Closed => f.write_str("TLS connection closed"),
        }
    }
}

impl core::error::Error for Error {}

impl embedded_io_async::Error for Error {
    fn kind(&self) -> ErrorKind {
        match self {
            Error::Tcp(k) => *k,
            Error::Tls(TlsError::Io(k)) => *k,
            Error::Tls(_) | Error::NotVerified => ErrorKind::InvalidData,
            Error::Closed => ErrorKind::NotConnected,
        }
    }
}

/// A wall clock for certificate validity, set by the application (from an
/// RTC or SNTP) with [`WallClock::set`]. Until then, validity periods are not
/// checked. embedded-tls asks its clock through a function without a
/// receiver, hence one clock per program.
#[derive(Debug, Clone, Copy)]
pub struct WallClock;

static UNIX_SECONDS: AtomicU32 = AtomicU32::new(0);

impl WallClock {
    /// Sets the current Unix time in seconds (0: unknown). The clock does
    /// not advance by itself: set it again from time to time (at every
    /// SNTP sync, say); an hour's lag only widens validity by an hour.
    pub fn set(unix_seconds: u32) {
        UNIX_SECONDS.store(unix_seconds, Ordering::Relaxed);
    }
}

impl TlsClock for WallClock {
    fn now() -> Option<u64> {
        match UNIX_SECONDS.load(Ordering::Relaxed) {
            0 => None,
            s => Some(u64::from(s)),
        }
    }
}

/// How the server is verified: one trusted CA certificate (DER), the name
/// the server's certificate must carry, the clock for validity periods and
/// the room kept for the server's certificate list (`CERT` bytes, 2048 by
/// default; a longer list fails the handshake).
#[derive(Debug)]
pub struct ServerCheck<'a, C = NoClock, const CERT: usize = 2048> {
    ca_der: &'a [u8],
    server_name: &'a str,
    clock: PhantomData<fn() -> C>,
}

impl<C, const CERT: usize> Clone for ServerCheck<'_, C, CERT> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<C, const CERT: usize> Copy for ServerCheck<'_, C, CERT> {}

impl<'a> ServerCheck<'a> {
    /// Trust `ca_der` (one X.509 certificate, DER) and expect `server_name`
    /// (a DNS name; also sent as SNI). Validity periods are not checked
    /// until a clock is given.
    pub fn new(ca_der: &'a [u8], server_name: &'a str) -> Self {
        ServerCheck {
            ca_der,
            server_name,
            clock: PhantomData,
        }
    }
}

impl<'a, C: TlsClock, const CERT: usize> ServerCheck<'a, C, CERT> {
    /// Checks validity periods against `C` (for example [`WallClock`]).
    pub fn clock<C2: TlsClock>(self) -> ServerCheck<'a, C2, CERT> {
        ServerCheck {
            ca_der: self.ca_der,
            server_name: self.server_name,
            clock: PhantomData,
        }
    }

    /// Keeps `N` bytes for the server's certificate list.
    pub fn cert_capacity<const N: usize>(self) -> ServerCheck<'a, C, N> {
        ServerCheck {
            ca_der: self.ca_der,
            server_name: self.server_name,
            clock: PhantomData,
        }
    }
}

/// What the driver's side sees of the current connection.
#[derive(Debug, Clone, Copy)]
enum Phase {
    Idle,
    Connecting,
    Open,
    Failed(Error),
    /// Ended by the server: `None` a clean end, else the error.
    Ended(Option<Error>),
}

struct Shared<const RX: usize, const TX: usize> {
    /// Which connection (or attempt) is current; bumped by every connect
    /// and by the driver dropping its connection, so the task can tell it
    /// was abandoned.
    generation: u32,
    request: Option<(u32, SocketAddr)>,
    phase: Phase,
    rx: [u8; RX],
    rx_len: usize,
    tx: [u8; TX],
    tx_len: usize,
    flush_asked: u32,
    flush_done: u32,
}

impl<const RX: usize, const TX: usize> Shared<RX, TX> {
    fn reset(&mut self) {
        self.rx_len = 0;
        self.tx_len = 0;
        self.flush_done = self.flush_asked;
    }
}

/// TLS over a TCP stack, shared by the TLS task ([`run`](Self::run)) and the
/// driver (as its `TcpConnect`, `Net::tcp(&tls)`). `RX` and `TX` are the
/// plaintext buffers between them (any size from 1; the driver's receive
/// room and message sizes are good choices). `M`: [`NoopRawMutex`] when both
/// run on one executor.
///
/// [`NoopRawMutex`]: crate::NoopRawMutex
pub struct TlsTcp<M: RawMutex, const RX: usize, const TX: usize> {
    shared: Mutex<M, RefCell<Shared<RX, TX>>>,
    /// Wakes the task: a request, plaintext to send, room to receive, an
    /// abandoned connection.
    to_task: Signal<M, ()>,
    /// Wakes the driver's connection: a result, plaintext received, room to
    /// send, a flush done.
    to_conn: Signal<M, ()>,
}

impl<M: RawMutex, const RX: usize, const TX: usize> Default for TlsTcp<M, RX, TX> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M: RawMutex, const RX: usize, const TX: usize> TlsTcp<M, RX, TX> {
    /// A new, idle TLS link.
    pub const fn new() -> Self {
        TlsTcp {
            shared: Mutex::new(RefCell::new(Shared {
                generation: 0,
                request: None,
                phase: Phase::Idle,
                rx: [0; RX],
                rx_len: 0,
                tx: [0; TX],
                tx_len: 0,
                flush_asked: 0,
                flush_done: 0,
            })),
            to_task: Signal::new(),
            to_conn: Signal::new(),
        }
    }

    fn lock<T>(&self, f: impl FnOnce(&mut Shared<RX, TX>) -> T) -> T {
        self.shared.lock(|s| f(&mut s.borrow_mut()))
    }

    /// Runs the TLS connections the driver asks for, one after another,
    /// over `tcp`: connect, handshake verified by `check`, then moving
    /// plaintext both ways. Never returns; run it beside the driver.
    ///
    /// `rng` provides the handshake's key shares and randoms: it must be a
    /// cryptographically secure generator (a hardware TRNG, or a CSPRNG
    /// seeded from one). `read_record` and `write_record` are embedded-tls's
    /// record buffers (see the module docs for sizes).
    pub async fn run<T, R, C, const CERT: usize>(
        &self,
        tcp: T,
        check: ServerCheck<'_, C, CERT>,
        rng: &mut R,
        read_record: &mut [u8],
        write_record: &mut [u8],
    ) -> Infallible
    where
        T: TcpConnect,
        R: rand_core::RngCore + rand_core::CryptoRng,
        C: TlsClock,
    {
        loop {
            self.to_task.reset();
            let Some((generation, addr)) = self.lock(|s| s.request.take()) else {
                self.to_task.wait().await;
                continue;
            };
            let outcome = self
                .serve(
                    generation,
                    addr,
                    &tcp,
                    check,
                    rng,
                    &mut *read_record,
                    &mut *write_record,
                )
                .await;
            if let Some(phase) = outcome {
                self.lock(|s| {
                    if s.generation == generation {
                        s.phase = phase;
                    }
                });
                self.to_conn.signal(());
            }
        }
    }

    /// Resolves once the driver gave up on connection `generation`.
    async fn abandoned(&self, generation: u32) {
        loop {
            if self.lock(|s| s.generation != generation) {
                return;
            }
            self.to_task.wait().await;
        }
    }

    /// One connection, from connect to its end. Returns the final phase,
    /// `None` if the driver abandoned it.
    #[allow(clippy::too_many_arguments)]
    async fn serve<T, R, C, const CERT: usize>(
        &self,
        generation: u32,
        addr: SocketAddr,
        tcp: &T,
        check: ServerCheck<'_, C, CERT>,
        rng: &mut R,
        read_record: &mut [u8],
        write_record: &mut [u8],
    ) -> Option<Phase>
    where
        T: TcpConnect,
        R: rand_core::RngCore + rand_core::CryptoRng,
        C: TlsClock,
    {
        let socket = match select(tcp.connect(addr), self.abandoned(generation)).await {
            Either::First(Ok(s)) => s,
            Either::First(Err(e)) => return Some(Phase::Failed(Error::Tcp(e.kind()))),
            Either::Second(()) => return None,
        };
        let fresh = Cell::new(false);
        let eof = Cell::new(false);
        let pump = Pump::new(socket, &fresh, &eof);
        let mut tls: TlsConnection<'_, _, Aes128GcmSha256> =
            TlsConnection::new(pump, read_record, write_record);
        let config = TlsConfig::new().with_server_name(check.server_name);
        let mut provider = Provider {
            rng,
            verifier: Checked::new(CertVerifier::<Aes128GcmSha256, C, CERT>::new(
                Certificate::X509(check.ca_der),
            )),
        };
        let opened = select(
            tls.open(TlsContext::new(&config, &mut provider)),
            self.abandoned(generation),
        )
        .await;
        match opened {
            Either::First(Ok(())) if provider.verifier.complete() => {}
            Either::First(Ok(())) => return Some(Phase::Failed(Error::NotVerified)),
            Either::First(Err(e)) => return Some(Phase::Failed(Error::Tls(e))),
            Either::Second(()) => return None,
        }
        let open = self.lock(|s| {
            let current = s.generation == generation;
            if current {
                s.phase = Phase::Open;
            }
            current
        });
        if !open {
            return None;
        }
        self.to_conn.signal(());

        let mut chunk = [0u8; 64];
        loop {
            self.to_task.reset();
            if self.lock(|s| s.generation != generation) {
                return None;
            }
            // Plaintext from the driver first, so a write never waits
            // behind a read.
            let n = self.lock(|s| {
                let n = s.tx_len.min(chunk.len());
                chunk[..n].copy_from_slice(&s.tx[..n]);
                n
            });
            if n > 0 {
                match select(tls.write(&chunk[..n]), self.abandoned(generation)).await {
                    Either::First(Ok(taken)) => {
                        self.lock(|s| {
                            let taken = taken.min(s.tx_len);
                            s.tx.copy_within(taken..s.tx_len, 0);
                            s.tx_len -= taken;
                        });
                        self.to_conn.signal(());
                        continue;
                    }
                    Either::First(Err(e)) => return Some(Phase::Ended(Some(Error::Tls(e)))),
                    Either::Second(()) => return None,
                }
            }
            let flush = self.lock(|s| (s.flush_asked != s.flush_done).then_some(s.flush_asked));
            if let Some(asked) = flush {
                match select(tls.flush(), self.abandoned(generation)).await {
                    Either::First(Ok(())) => {
                        self.lock(|s| s.flush_done = asked);
                        self.to_conn.signal(());
                        continue;
                    }
                    Either::First(Err(e)) => return Some(Phase::Ended(Some(Error::Tls(e)))),
                    Either::Second(()) => return None,
                }
            }
            if self.lock(|s| s.rx_len == RX) {
                // Backpressure: nothing is read until the driver makes room.
                self.to_task.wait().await;
                continue;
            }
            fresh.set(true);
            match select(tls.read_buffered(), self.to_task.wait()).await {
                Either::First(Ok(mut plain)) => {
                    self.lock(|s| {
                        let bytes = plain.pop(RX - s.rx_len);
                        s.rx[s.rx_len..s.rx_len + bytes.len()].copy_from_slice(bytes);
                        s.rx_len += bytes.len();
                    });
                    self.to_conn.signal(());
                }
                Either::First(Err(TlsError::ConnectionClosed)) => return Some(Phase::Ended(None)),
                Either::First(Err(_)) if eof.get() => return Some(Phase::Ended(None)),
                Either::First(Err(e)) => return Some(Phase::Ended(Some(Error::Tls(e)))),
                // Something for the task to do; the read resumes where it was.
                Either::Second(()) => {}
            }
        }
    }
}

/// Bumps the generation if a connect is dropped before it finished, so the
/// task abandons the attempt.
struct Abandon<'a, M: RawMutex, const RX: usize, const TX: usize> {
    link: &'a TlsTcp<M, RX, TX>,
    generation: u32,
}

impl<M: RawMutex, const RX: usize, const TX: usize> Drop for Abandon<'_, M, RX, TX> {
    fn drop(&mut self) {
        self.link.lock(|s| {
            if s.generation == self.generation {
                s.generation = s.generation.wrapping_add(1);
                s.request = None;
                s.phase = Phase::Idle;
                s.reset();
            }
        });
        self.link.to_task.signal(());
    }
}

impl<M: RawMutex, const RX: usize, const TX: usize> TcpConnect for TlsTcp<M, RX, TX> {
    type Error = Error;
    type Connection<'a>
        = TlsConn<'a, M, RX, TX>
    where
        Self: 'a;

    async fn connect<'a>(&'a self, remote: SocketAddr) -> Result<TlsConn<'a, M, RX, TX>, Error> {
        let generation = self.lock(|s| {
            s.generation = s.generation.wrapping_add(1);
            s.request = Some((s.generation, remote));
            s.phase = Phase::Connecting;
            s.reset();
            s.generation
        });
        self.to_task.signal(());
        // From here until the result, dropping this future abandons the
        // attempt; on success the connection takes over that duty.
        let guard = Abandon {
            link: self,
            generation,
        };
        loop {
            self.to_conn.reset();
            match self.lock(|s| s.phase) {
                Phase::Open => {
                    core::mem::forget(guard);
                    return Ok(TlsConn {
                        link: self,
                        generation,
                    });
                }
                Phase::Failed(e) => return Err(e),
                Phase::Ended(_) | Phase::Idle => return Err(Error::Closed),
                Phase::Connecting => self.to_conn.wait().await,
            }
        }
    }
}

/// The driver's handle on an open TLS connection: plaintext in and out.
/// Dropping it closes the connection.
pub struct TlsConn<'a, M: RawMutex, const RX: usize, const TX: usize> {
    link: &'a TlsTcp<M, RX, TX>,
    generation: u32,
}

impl<M: RawMutex, const RX: usize, const TX: usize> Drop for TlsConn<'_, M, RX, TX> {
    fn drop(&mut self) {
        drop(Abandon {
            link: self.link,
            generation: self.generation,
        });
    }
}

impl<M: RawMutex, const RX: usize, const TX: usize> ErrorType for TlsConn<'_, M, RX, TX> {
    type Error = Error;
}

impl<M: RawMutex, const RX: usize, const TX: usize> TlsConn<'_, M, RX, TX> {
    /// `Err` once the connection is no longer open.
    fn ended(s: &Shared<RX, TX>, generation: u32) -> Option<Result<usize, Error>> {
        if s.generation != generation {
            return Some(Err(Error::Closed));
        }
        match s.phase {
            Phase::Open | Phase::Connecting => None,
            Phase::Ended(None) => Some(Ok(0)),
            Phase::Ended(Some(e)) | Phase::Failed(e) => Some(Err(e)),
            Phase::Idle => Some(Err(Error::Closed)),
        }
    }
}

impl<M: RawMutex, const RX: usize, const TX: usize> Read for TlsConn<'_, M, RX, TX> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            self.link.to_conn.reset();
            let got = self.link.lock(|s| {
                if s.generation == self.generation && s.rx_len > 0 {
                    let n = s.rx_len.min(buf.len());
                    buf[..n].copy_from_slice(&s.rx[..n]);
                    s.rx.copy_within(n..s.rx_len, 0);
                    s.rx_len -= n;
                    return Some(Ok(n));
                }
                Self::ended(s, self.generation)
            });
            match got {
                Some(Ok(n)) if n > 0 => {
                    self.link.to_task.signal(());
                    return Ok(n);
                }
                Some(r) => return r,
                None => self.link.to_conn.wait().await,
            }
        }
    }
}

impl<M: RawMutex, const RX: usize, const TX: usize> Write for TlsConn<'_, M, RX, TX> {
    async fn write(&mut self, data: &[u8]) -> Result<usize, Error> {
        if data.is_empty() {
            return Ok(0);
        }
        loop {
            self.link.to_conn.reset();
            let put = self.link.lock(|s| {
                if let Some(end) = Self::ended(s, self.generation) {
                    // Nothing can be sent after the end, clean or not.
                    return Some(end.and(Err(Error::Closed)));
                }
                let n = (TX - s.tx_len).min(data.len());
                if n == 0 {
                    return None;
                }
                s.tx[s.tx_len..s.tx_len + n].copy_from_slice(&data[..n]);
                s.tx_len += n;
                Some(Ok(n))
            });
            match put {
                Some(Ok(n)) => {
                    self.link.to_task.signal(());
                    return Ok(n);
                }
                Some(Err(e)) => return Err(e),
                None => self.link.to_conn.wait().await,
            }
        }
    }

    async fn flush(&mut self) -> Result<(), Error> {
        let asked = self.link.lock(|s| {
            s.flush_asked = s.flush_asked.wrapping_add(1);
            s.flush_asked
        });
        self.link.to_task.signal(());
        loop {
            self.link.to_conn.reset();
            let done = self.link.lock(|s| {
                if let Some(end) = Self::ended(s, self.generation) {
                    return Some(end.and(Err::<usize, _>(Error::Closed)).map(|_| ()));
                }
                // Later requests cover this one.
                (s.flush_done.wrapping_sub(asked) as i32 >= 0).then_some(Ok(()))
            });
            match done {
                Some(r) => return r,
                None => self.link.to_conn.wait().await,
            }
        }
    }
}

/// The embedded-tls crypto provider: the caller's RNG and the checked
/// certificate verifier.
struct Provider<'r, R, V> {
    rng: &'r mut R,
    verifier: V,
}

impl<R, V> CryptoProvider for Provider<'_, R, V>
where
    R: rand_core::RngCore + rand_core::CryptoRng,
    V: TlsVerifier<Aes128GcmSha256>,
{
    type CipherSuite = Aes128GcmSha256;
    // No client certificate, so nothing is ever signed.
    type Signature = [u8; 0];

    fn rng(&mut self) -> impl CryptoRngCore {
        &mut *self.rng
    }

    fn verifier(&mut self) -> Result<&mut impl TlsVerifier<Self::CipherSuite>, TlsError> {
        Ok(&mut self.verifier)
    }
}

/// Wraps a verifier to require that the server proved its identity: a
/// certificate that passed, then a CertificateVerify that passed.
struct Checked<V> {
    inner: V,
    certificate: bool,
    signature: bool,
}

impl<V> Checked<V> {
    fn new(inner: V) -> Self {
        Checked {
            inner,
            certificate: false,
            signature: false,
        }
    }

    fn complete(&self) -> bool {
        self.certificate && self.signature
    }
}

impl<CS: TlsCipherSuite, V: TlsVerifier<CS>> TlsVerifier<CS> for Checked<V> {
    fn set_hostname_verification(&mut self, hostname: &str) -> Result<(), TlsError> {
        self.inner.set_hostname_verification(hostname)
    }

    fn verify_certificate(
        &mut self,
        transcript: &CS::Hash,
        cert: CertificateRef<'_>,
    ) -> Result<(), TlsError> {
        if self.certificate {
            return Err(TlsError::InvalidHandshake);
        }
        self.inner.verify_certificate(transcript, cert)?;
        self.certificate = true;
        Ok(())
    }

    fn verify_signature(&mut self, verify: CertificateVerifyRef<'_>) -> Result<(), TlsError> {
        // embedded-tls's verifier unwraps the certificate it kept: without
        // one, this message is a protocol error, not a panic.
        if !self.certificate || self.signature {
            return Err(TlsError::InvalidHandshake);
        }
        self.inner.verify_signature(verify)?;
        self.signature = true;
        Ok(())
    }
}

/// A record being handed to embedded-tls.
#[derive(Clone, Copy)]
struct Body {
    len: usize,
    got: usize,
    /// Where embedded-tls asked for it, to be sure a resumed read continues
    /// into the same place.
    at: usize,
}

/// The socket below embedded-tls. It hands over a record header (5 bytes)
/// in one read and a record body in one read, keeping partial progress in
/// itself, so a read dropped halfway loses nothing: when the task starts a
/// new read (`fresh`) while a body is half delivered, embedded-tls has
/// forgotten the header (it lived in a local), so the header is handed over
/// again and the body read continues into the same place of embedded-tls's
/// buffer, where the bytes already delivered still are.
struct Pump<'f, S> {
    inner: S,
    header: [u8; 5],
    have: usize,
    body: Option<Body>,
    fresh: &'f Cell<bool>,
    eof: &'f Cell<bool>,
}

impl<'f, S> Pump<'f, S> {
    fn new(inner: S, fresh: &'f Cell<bool>, eof: &'f Cell<bool>) -> Self {
        Pump {
            inner,
            header: [0; 5],
            have: 0,
            body: None,
            fresh,
            eof,
        }
    }
}

impl<S: ErrorType> ErrorType for Pump<'_, S> {
    type Error = ErrorKind;
}

impl<S: Read> Read for Pump<'_, S> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        let fresh = self.fresh.replace(false);
        if let Some(mut body) = self.body {
            if fresh {
                let Some(head) = buf.get_mut(..5) else {
                    return Err(ErrorKind::InvalidData);
                };
                head.copy_from_slice(&self.header);
                return Ok(5);
            }
            if buf.len() != body.len || (body.got > 0 && buf.as_ptr() as usize != body.at) {
                return Err(ErrorKind::InvalidData);
            }
            body.at = buf.as_ptr() as usize;
            while body.got < body.len {
                let n = self
                    .inner
                    .read(&mut buf[body.got..])
                    .await
                    .map_err(|e| e.kind())?;
                if n == 0 {
                    self.eof.set(true);
                    return Ok(0);
                }
                body.got += n;
                self.body = Some(body);
            }
            self.body = None;
            self.have = 0;
            return Ok(body.len);
        }
        if buf.len() != self.header.len() {
            return Err(ErrorKind::InvalidData);
        }
        while self.have < self.header.len() {
            let n = self
                .inner
                .read(&mut self.header[self.have..])
                .await
                .map_err(|e| e.kind())?;
            if n == 0 {
                self.eof.set(true);
                return Ok(0);
            }
            self.have += n;
        }
        buf.copy_from_slice(&self.header);
        let len = usize::from(u16::from_be_bytes([self.header[3], self.header[4]]));
        if len == 0 {
            self.have = 0;
        } else {
            self.body = Some(Body { len, got: 0, at: 0 });
        }
        Ok(5)
    }
}

impl<S: Write> Write for Pump<'_, S> {
    async fn write(&mut self, data: &[u8]) -> Result<usize, ErrorKind> {
        self.inner.write(data).await.map_err(|e| e.kind())
    }

    async fn flush(&mut self) -> Result<(), ErrorKind> {
        self.inner.flush().await.map_err(|e| e.kind())
    }
}
