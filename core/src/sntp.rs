//! SNTP (RFC 4330) for the wall clock behind the tutorial's `time` answer:
//! a 48-byte codec and a sans-IO client that decides when to ask.
//!
//! The tutorial syncs its clock by NTP at boot (`ntp.timeSync()`). On a
//! device without an RTC the same job is one UDP request to an NTP server.
//! Nothing here touches a socket or reads a clock:
//!
//! - [`encode_request`] / [`decode_response`]: the packet format, with the
//!   checks that keep a stray, spoofed or unsynchronised answer out
//!   (origin timestamp must echo our nonce, mode must be "server", stratum
//!   and leap indicator must say "synchronised");
//! - [`SntpClient`]: when to send (at once, then every
//!   [`SntpConfig::resync`]), how long to wait for an answer, when to retry,
//!   and the round-trip correction. Feed its result to
//!   [`Connection::handle_wall_clock`](crate::Connection::handle_wall_clock).
//!
//! ```
//! use longlink_core::sntp::{SntpClient, SntpConfig, PACKET_LEN};
//! use longlink_core::time::Instant;
//!
//! let mut sntp = SntpClient::new(SntpConfig::default(), 0x5eed);
//! let mut packet = [0u8; PACKET_LEN];
//! let now = Instant::from_millis(1_000);
//! // Due at once: send these 48 bytes to the server over UDP.
//! assert!(sntp.poll_request(now, &mut packet));
//! // ...the server's 48-byte answer arrives 40 ms later...
//! # let mut answer = [0u8; PACKET_LEN];
//! # answer[0] = 0x24; answer[1] = 2; // server mode, stratum 2
//! # answer[24..32].copy_from_slice(&packet[40..48]); // origin = our nonce
//! # let t = (1_732_550_400u64 + 2_208_988_800) as u32;
//! # answer[32..36].copy_from_slice(&t.to_be_bytes());
//! # answer[40..44].copy_from_slice(&t.to_be_bytes());
//! let later = Instant::from_millis(1_040);
//! let unix_ms = sntp.handle_response(later, &answer).unwrap();
//! assert_eq!(unix_ms, 1_732_550_400_020); // server time + half the round trip
//! // `conn.handle_wall_clock(later, unix_ms)`; next sync after `resync`.
//! assert!(sntp.poll_timeout() > later);
//! ```

use crate::time::{Duration, Instant};

/// The size of an SNTP request and of the part of a response we read.
pub const PACKET_LEN: usize = 48;

/// The usual NTP server port.
pub const NTP_PORT: u16 = 123;

/// Seconds from the NTP epoch (1900-01-01) to the Unix epoch (1970-01-01).
const NTP_TO_UNIX_SECS: u64 = 2_208_988_800;

/// Why a response was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SntpError {
    /// Shorter than 48 bytes.
    TooShort,
    /// Not a server (mode 4) answer of NTP version 1 to 4.
    NotAServer,
    /// The origin timestamp does not echo our request: a stray, late or
    /// spoofed packet, or no request outstanding.
    Unsolicited,
    /// A kiss-o'-death (stratum 0): the server asks us to go away or slow
    /// down. The client waits [`SntpConfig::retry`] before asking again.
    KissOfDeath,
    /// The server says its own clock is not synchronised (leap indicator 3,
    /// or a zero transmit timestamp).
    Unsynchronised,
}

impl core::fmt::Display for SntpError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            SntpError::TooShort => "SNTP packet shorter than 48 bytes",
            SntpError::NotAServer => "not an NTP server response",
            SntpError::Unsolicited => "SNTP response does not match our request",
            SntpError::KissOfDeath => "SNTP kiss-o'-death",
            SntpError::Unsynchronised => "NTP server not synchronised",
        })
    }
}

#[cfg(feature = "std")]
impl std::error::Error for SntpError {}

/// The fields of a server response that a client uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Response {
    /// When the server received the request, Unix milliseconds.
    pub receive_unix_ms: u64,
    /// When the server sent the response, Unix milliseconds.
    pub transmit_unix_ms: u64,
    /// The server's stratum (1 = primary reference).
    pub stratum: u8,
}

/// Writes a version-4 client request whose transmit timestamp is `nonce`.
///
/// RFC 4330 lets a client put any value there; the server copies it into
/// the origin timestamp of its answer, so a random nonce lets
/// [`decode_response`] reject answers to someone else's request.
pub fn encode_request(nonce: u64, out: &mut [u8; PACKET_LEN]) {
    *out = [0; PACKET_LEN];
    // LI 0, version 4, mode 3 (client).
    out[0] = (4 << 3) | 3;
    out[40..48].copy_from_slice(&nonce.to_be_bytes());
}

/// Checks and decodes a server response to the request carrying `nonce`.
pub fn decode_response(packet: &[u8], nonce: u64) -> Result<Response, SntpError> {
    let p = packet.get(..PACKET_LEN).ok_or(SntpError::TooShort)?;
    let (leap, version, mode) = (p[0] >> 6, (p[0] >> 3) & 7, p[0] & 7);
    if mode != 4 || !(1..=4).contains(&version) {
        return Err(SntpError::NotAServer);
    }
    if be64(&p[24..32]) != nonce {
        return Err(SntpError::Unsolicited);
    }
    let stratum = p[1];
    if stratum == 0 {
        return Err(SntpError::KissOfDeath);
    }
    let transmit = be64(&p[40..48]);
    if leap == 3 || transmit == 0 {
        return Err(SntpError::Unsynchronised);
    }
    Ok(Response {
        receive_unix_ms: ntp_to_unix_ms(be64(&p[32..40])),
        transmit_unix_ms: ntp_to_unix_ms(transmit),
        stratum,
    })
}

/// Converts a 64-bit NTP timestamp (32.32 fixed point seconds since 1900) to
/// Unix milliseconds.
///
/// The seconds field wraps in February 2036 (era 1). As RFC 4330 section 3
/// suggests, a value with the top bit clear is taken as era 1, so the
/// result is right from 1968 to 2104.
pub fn ntp_to_unix_ms(ts: u64) -> u64 {
    let secs = ts >> 32;
    let frac = ts & 0xFFFF_FFFF;
    let secs = if secs & 0x8000_0000 == 0 {
        secs + (1 << 32)
    } else {
        secs
    };
    let millis = (frac * 1000) >> 32;
    (secs.saturating_sub(NTP_TO_UNIX_SECS)) * 1000 + millis
}

fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

/// When [`SntpClient`] asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SntpConfig {
    /// Time between successful syncs. Default: 1 hour (a crystal drifting by
    /// 50 ppm loses 0.2 s in that time).
    pub resync: Duration,
    /// How long to wait for an answer. Default: 5 s.
    pub timeout: Duration,
    /// Pause after a timeout or a refused answer before asking again.
    /// Default: 30 s, so a device never hammers a public server.
    pub retry: Duration,
}

impl Default for SntpConfig {
    fn default() -> Self {
        SntpConfig {
            resync: Duration::from_mins(60),
            timeout: Duration::from_secs(5),
            retry: Duration::from_secs(30),
        }
    }
}

/// A sans-IO SNTP client: one request outstanding at most, re-sync on a
/// schedule, retries after timeouts.
///
/// Call order, like [`Connection`](crate::Connection): [`poll_request`]
/// (send the packet when it returns `true`), [`handle_response`] for every
/// datagram from the server, and sleep until [`poll_timeout`].
///
/// [`poll_request`]: SntpClient::poll_request
/// [`handle_response`]: SntpClient::handle_response
/// [`poll_timeout`]: SntpClient::poll_timeout
#[derive(Clone, Debug)]
pub struct SntpClient {
    config: SntpConfig,
    seed: u64,
    requests: u32,
    /// The outstanding request: its nonce and when it was sent.
    outstanding: Option<(u64, Instant)>,
    /// When to send the next request (no request outstanding) or give up on
    /// the outstanding one.
    deadline: Instant,
    synced: bool,
}

impl SntpClient {
    /// A client whose first request is due at once. `seed` makes the nonces
    /// unpredictable to an off-path attacker; pass something device-specific
    /// (a hardware RNG draw is best).
    pub fn new(config: SntpConfig, seed: u64) -> Self {
        SntpClient {
            config,
            seed,
            requests: 0,
            outstanding: None,
            deadline: Instant::ZERO,
            synced: false,
        }
    }

    /// Writes a request into `out` and returns `true` when one is due at
    /// `now`; the caller sends those 48 bytes to the server. A request left
    /// unanswered for [`SntpConfig::timeout`] is abandoned here, and the next
    /// one is due [`SntpConfig::retry`] later.
    pub fn poll_request(&mut self, now: Instant, out: &mut [u8; PACKET_LEN]) -> bool {
        if now < self.deadline {
            return false;
        }
        if self.outstanding.take().is_some() {
            self.deadline = now + self.config.retry;
            return false;
        }
        self.requests = self.requests.wrapping_add(1);
        let nonce = crate::rng::splitmix64(self.seed ^ u64::from(self.requests).rotate_left(17));
        encode_request(nonce, out);
        self.outstanding = Some((nonce, now));
        self.deadline = now + self.config.timeout;
        true
    }

    /// A datagram from the server arrived at `now`. Returns the Unix time in
    /// milliseconds at `now` (server time corrected by half the round trip),
    /// ready for
    /// [`Connection::handle_wall_clock`](crate::Connection::handle_wall_clock).
    ///
    /// A packet that does not answer the outstanding request changes nothing
    /// (the real answer may still come); a kiss-o'-death or an unsynchronised
    /// server ends the request and schedules a retry.
    pub fn handle_response(&mut self, now: Instant, packet: &[u8]) -> Result<u64, SntpError> {
        let (nonce, sent) = self.outstanding.ok_or(SntpError::Unsolicited)?;
        match decode_response(packet, nonce) {
            Ok(r) => {
                self.outstanding = None;
                self.synced = true;
                self.deadline = now + self.config.resync;
                // RFC 4330: delay = (T4 - T1) - (T3 - T2); the answer left the
                // server half that delay ago.
                let round_trip = (now - sent).as_millis();
                let server_hold = r.transmit_unix_ms.saturating_sub(r.receive_unix_ms);
                Ok(r.transmit_unix_ms + round_trip.saturating_sub(server_hold) / 2)
            }
            Err(e @ (SntpError::KissOfDeath | SntpError::Unsynchronised)) => {
                self.outstanding = None;
                self.deadline = now + self.config.retry;
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Forget the outstanding request and ask again at `now` (for example
    /// after the network came back, or the socket was replaced).
    pub fn restart(&mut self, now: Instant) {
        self.outstanding = None;
        self.deadline = now;
    }

    /// When to call [`poll_request`](Self::poll_request) next.
    #[must_use]
    pub fn poll_timeout(&self) -> Instant {
        self.deadline
    }

    /// Whether a request is waiting for its answer.
    #[must_use]
    pub fn is_waiting(&self) -> bool {
        self.outstanding.is_some()
    }

    /// Whether any answer was accepted so far.
    #[must_use]
    pub fn is_synced(&self) -> bool {
        self.synced
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNIX_2024_11_25: u64 = 1_732_492_800;

    fn ntp_ts(unix_ms: u64) -> u64 {
        let secs = (unix_ms / 1000 + NTP_TO_UNIX_SECS) & 0xFFFF_FFFF;
        let frac = ((unix_ms % 1000) << 32) / 1000 + 1;
        (secs << 32) | frac
    }

    fn answer(request: &[u8; PACKET_LEN], rx_ms: u64, tx_ms: u64) -> [u8; PACKET_LEN] {
        let mut a = [0u8; PACKET_LEN];
        a[0] = (4 << 3) | 4;
        a[1] = 2;
        a[24..32].copy_from_slice(&request[40..48]);
        a[32..40].copy_from_slice(&ntp_ts(rx_ms).to_be_bytes());
        a[40..48].copy_from_slice(&ntp_ts(tx_ms).to_be_bytes());
        a
    }

    #[test]
    fn request_is_a_v4_client_packet_carrying_the_nonce() {
        let mut p = [0xAA; PACKET_LEN];
        encode_request(0x0102_0304_0506_0708, &mut p);
        assert_eq!(p[0], 0x23);
        assert!(p[1..40].iter().all(|&b| b == 0));
        assert_eq!(&p[40..], &[1, 2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn timestamps_convert_across_the_2036_era_wrap() {
        assert_eq!(ntp_to_unix_ms(NTP_TO_UNIX_SECS << 32), 0);
        let ms = UNIX_2024_11_25 * 1000 + 250;
        assert_eq!(ntp_to_unix_ms(ntp_ts(ms)), ms);
        // 2040 has NTP seconds past 2^32: era 1, top bit clear.
        let y2040 = 2_208_988_800_000u64;
        assert_eq!(ntp_to_unix_ms(ntp_ts(y2040)), y2040);
    }

    #[test]
    fn decode_rejects_what_is_not_our_synchronised_server() {
        let mut req = [0u8; PACKET_LEN];
        encode_request(42, &mut req);
        let t = UNIX_2024_11_25 * 1000;
        let good = answer(&req, t, t);
        assert_eq!(
            decode_response(&good, 42).map(|r| r.transmit_unix_ms),
            Ok(t)
        );
        assert_eq!(decode_response(&good[..47], 42), Err(SntpError::TooShort));
        assert_eq!(decode_response(&good, 43), Err(SntpError::Unsolicited));
        let mut client_mode = good;
        client_mode[0] = 0x23;
        assert_eq!(
            decode_response(&client_mode, 42),
            Err(SntpError::NotAServer)
        );
        let mut kod = good;
        kod[1] = 0;
        assert_eq!(decode_response(&kod, 42), Err(SntpError::KissOfDeath));
        let mut alarm = good;
        alarm[0] |= 0xC0;
        assert_eq!(decode_response(&alarm, 42), Err(SntpError::Unsynchronised));
        let mut zero_tx = good;
        zero_tx[40..48].fill(0);
        assert_eq!(
            decode_response(&zero_tx, 42),
            Err(SntpError::Unsynchronised)
        );
    }

    #[test]
    fn client_asks_at_once_corrects_for_round_trip_and_resyncs() {
        let cfg = SntpConfig::default();
        let mut c = SntpClient::new(cfg, 7);
        let mut req = [0u8; PACKET_LEN];
        let t0 = Instant::from_secs(10);
        assert!(c.poll_request(t0, &mut req));
        assert!(
            !c.poll_request(t0, &mut req),
            "one request outstanding at most"
        );
        let server = UNIX_2024_11_25 * 1000;
        // 100 ms round trip of which the server held 20 ms.
        let a = answer(&req, server, server + 20);
        let t4 = t0 + Duration::from_millis(100);
        assert_eq!(c.handle_response(t4, &a), Ok(server + 20 + 40));
        assert!(c.is_synced());
        assert_eq!(c.poll_timeout(), t4 + cfg.resync);
        // A replay of the same answer is refused.
        assert_eq!(c.handle_response(t4, &a), Err(SntpError::Unsolicited));
        assert!(!c.poll_request(t4 + Duration::from_secs(60), &mut req));
        assert!(c.poll_request(t4 + cfg.resync, &mut req));
    }

    #[test]
    fn timeout_then_retry_with_a_fresh_nonce() {
        let cfg = SntpConfig::default();
        let mut c = SntpClient::new(cfg, 7);
        let mut first = [0u8; PACKET_LEN];
        assert!(c.poll_request(Instant::ZERO, &mut first));
        let late = Instant::ZERO + cfg.timeout;
        let mut second = [0u8; PACKET_LEN];
        assert!(
            !c.poll_request(late, &mut second),
            "timeout starts the retry wait"
        );
        assert!(!c.is_waiting());
        assert_eq!(c.poll_timeout(), late + cfg.retry);
        assert!(c.poll_request(late + cfg.retry, &mut second));
        assert_ne!(first[40..], second[40..]);
        // The answer to the abandoned request no longer counts.
        let a = answer(&first, UNIX_2024_11_25 * 1000, UNIX_2024_11_25 * 1000);
        assert_eq!(
            c.handle_response(late + cfg.retry, &a),
            Err(SntpError::Unsolicited)
        );
    }

    #[test]
    fn kiss_of_death_backs_off_garbage_does_not_cancel() {
        let cfg = SntpConfig::default();
        let mut c = SntpClient::new(cfg, 1);
        let mut req = [0u8; PACKET_LEN];
        assert!(c.poll_request(Instant::ZERO, &mut req));
        assert_eq!(
            c.handle_response(Instant::ZERO, b"garbage"),
            Err(SntpError::TooShort)
        );
        assert!(c.is_waiting(), "garbage does not cancel the request");
        let mut kod = answer(&req, 0, 0);
        kod[1] = 0;
        let t = Instant::from_millis(5);
        assert_eq!(c.handle_response(t, &kod), Err(SntpError::KissOfDeath));
        assert!(!c.is_waiting());
        assert_eq!(c.poll_timeout(), t + cfg.retry);
    }

    #[test]
    fn any_bytes_never_panic() {
        let mut c = SntpClient::new(SntpConfig::default(), 3);
        let mut req = [0u8; PACKET_LEN];
        assert!(c.poll_request(Instant::ZERO, &mut req));
        let mut x = 0x1234_5678u32;
        for len in 0..100 {
            let mut p = [0u8; 100];
            for b in p.iter_mut() {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *b = x as u8;
            }
            let _ = c.handle_response(Instant::from_millis(1), &p[..len]);
            let _ = decode_response(&p[..len], 0);
        }
        assert_eq!(
            ntp_to_unix_ms(0),
            (1u64 << 32) * 1000 - NTP_TO_UNIX_SECS * 1000
        );
        assert_eq!(
            ntp_to_unix_ms(u64::MAX),
            (u64::MAX >> 32) * 1000 - NTP_TO_UNIX_SECS * 1000 + 999
        );
    }
}
