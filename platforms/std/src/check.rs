//! `longlink lab --check`: the tutorial's acceptance script, run against
//! whatever client connects to the lab (any client, not only ours).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use longlink_core::{Framing, Transport, BIN_REPLY};

use crate::lab::{Lab, LabEvent};
use crate::text::{duration, escape};

/// One check and its outcome.
#[derive(Debug, Clone)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// Whether it passed.
    pub passed: bool,
    /// Measurements or the reason it failed.
    pub detail: String,
}

/// Every check of a run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// In the order they ran.
    pub checks: Vec<Check>,
}

impl Report {
    /// Records a check.
    pub fn add(&mut self, name: &str, passed: bool, detail: impl Into<String>) {
        self.checks.push(Check {
            name: name.into(),
            passed,
            detail: detail.into(),
        });
    }

    /// True when there was at least one check and all passed.
    pub fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.passed)
    }

    /// A table with one line per check, then `N passed, M failed`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for c in &self.checks {
            out.push_str(&format!(
                "{}  {:<34} {}\n",
                if c.passed { "PASS" } else { "FAIL" },
                c.name,
                c.detail
            ));
        }
        let passed = self.checks.iter().filter(|c| c.passed).count();
        out.push_str(&format!(
            "{} passed, {} failed\n",
            passed,
            self.checks.len() - passed
        ));
        out
    }
}

/// What the script expects from the client.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// The client's heartbeat message.
    pub heartbeat: Vec<u8>,
    /// Heartbeats to time (at least 2).
    pub heartbeats: u32,
    /// Longest wait for any one step.
    pub timeout: Duration,
}

/// A reply the script waits for.
#[derive(Debug, Clone, Copy)]
pub enum Expect<'a> {
    /// Exactly these bytes.
    Bytes(&'a [u8]),
    /// The Unix time in decimal seconds, within `tolerance_s` of ours.
    UnixTime {
        /// Allowed difference in seconds.
        tolerance_s: u64,
    },
}

/// Sends `request` to `peer` and waits for the reply, ignoring heartbeats.
/// Returns the reply and the round-trip time.
pub fn request(
    lab: &Lab,
    peer: SocketAddr,
    request: &[u8],
    expect: Expect<'_>,
    heartbeat: &[u8],
    timeout: Duration,
) -> Result<(Vec<u8>, Duration), String> {
    let sent = Instant::now();
    lab.send_to(peer, request)
        .map_err(|e| format!("cannot send: {e}"))?;
    let deadline = sent + timeout;
    let mut got: Vec<u8> = Vec::new();
    loop {
        // Checked before each event: a flood of other events must not keep
        // the step going past its deadline.
        let left = deadline.saturating_duration_since(Instant::now());
        let event = if left.is_zero() {
            None
        } else {
            lab.next_event(left)
        };
        let Some(event) = event else {
            return Err(format!(
                "no reply within {} (got {:?})",
                duration(timeout),
                escape(&got)
            ));
        };
        match event {
            LabEvent::Message { peer: p, at, bytes } if p == peer => {
                if lab.framing() == Framing::Raw && !lab.acked() {
                    got.extend_from_slice(&bytes);
                    // Raw TCP may glue a heartbeat to a reply.
                    got = remove_all(&got, heartbeat);
                } else if bytes != heartbeat {
                    got.extend_from_slice(&bytes);
                }
                match expect {
                    Expect::Bytes(want) if got.len() >= want.len() => {
                        return if got == want {
                            Ok((got, at - sent))
                        } else {
                            Err(format!("got {:?}", escape(&got)))
                        };
                    }
                    Expect::UnixTime { tolerance_s } if got.len() >= 10 => {
                        let text = String::from_utf8_lossy(&got).to_string();
                        let theirs: u64 = text
                            .trim()
                            .parse()
                            .map_err(|_| format!("not a decimal time: {text:?}"))?;
                        let ours = crate::clock::unix_time_ms().unwrap_or(0) / 1000;
                        return if theirs.abs_diff(ours) <= tolerance_s {
                            Ok((got, at - sent))
                        } else {
                            Err(format!("{theirs} is {}s off", theirs.abs_diff(ours)))
                        };
                    }
                    _ => {}
                }
            }
            LabEvent::Disconnected { peer: p, .. } if p == peer => {
                return Err("the client disconnected".into())
            }
            _ => {}
        }
    }
}

/// `haystack` without any occurrence of `needle`.
pub fn remove_all(haystack: &[u8], needle: &[u8]) -> Vec<u8> {
    if needle.is_empty() {
        return haystack.to_vec();
    }
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(needle) {
            i += needle.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

/// Heartbeats in one received message (raw TCP may carry several).
fn heartbeats_in(framing: Framing, bytes: &[u8], heartbeat: &[u8]) -> usize {
    if framing == Framing::Raw {
        bytes
            .len()
            .saturating_sub(remove_all(bytes, heartbeat).len())
            / heartbeat.len().max(1)
    } else {
        usize::from(bytes == heartbeat)
    }
}

/// Runs the whole script; `progress` gets a line as each step starts.
pub fn run(lab: &Lab, opts: &CheckOptions, mut progress: impl FnMut(&str)) -> Report {
    let mut report = Report::default();
    let start = Instant::now();
    progress(&format!(
        "waiting for a client on {} ({:?}, {:?} framing)",
        lab.local_addr(),
        lab.transport(),
        lab.framing()
    ));
    let Some(peer) = lab.wait_for(
        start + opts.timeout,
        |e| match e {
            LabEvent::Connected { peer, .. } => Some(*peer),
            _ => None,
        },
        drop,
    ) else {
        report.add(
            "client connects",
            false,
            format!("none within {}", duration(opts.timeout)),
        );
        return report;
    };
    report.add(
        "client connects",
        true,
        format!("{peer} after {}", duration(start.elapsed())),
    );

    // Heartbeats and their cadence.
    progress(&format!("timing {} heartbeats", opts.heartbeats));
    let mut beats: Vec<Instant> = Vec::new();
    let deadline = Instant::now() + opts.timeout;
    while beats.len() < opts.heartbeats as usize {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match lab.next_event(left) {
            // Acknowledged mode: heartbeats are the `H` frames.
            Some(LabEvent::Beat { peer: p, at, .. }) if p == peer && lab.acked() => {
                beats.push(at);
            }
            Some(LabEvent::Message { peer: p, at, bytes }) if p == peer && !lab.acked() => {
                for _ in 0..heartbeats_in(lab.framing(), &bytes, &opts.heartbeat) {
                    beats.push(at);
                }
            }
            Some(_) => {}
            None => break,
        }
    }
    let intervals: Vec<Duration> = beats.windows(2).map(|w| w[1] - w[0]).collect();
    if beats.len() < opts.heartbeats as usize || intervals.is_empty() {
        report.add(
            "heartbeats",
            false,
            format!(
                "{} of {} within {}",
                beats.len(),
                opts.heartbeats,
                duration(opts.timeout)
            ),
        );
    } else {
        let mut sorted = intervals.clone();
        sorted.sort();
        let (min, max, median) = (
            sorted[0],
            sorted[sorted.len() - 1],
            sorted[sorted.len() / 2],
        );
        // Regular: every interval within 25% (and at least 150 ms, for a
        // loaded machine) of the median.
        let slack = (median / 4).max(Duration::from_millis(150));
        let regular = max <= median + slack && min + slack >= median;
        report.add(
            "heartbeats",
            regular,
            format!(
                "{} received, interval {} (min {}, max {})",
                beats.len(),
                duration(median),
                duration(min),
                duration(max)
            ),
        );
    }

    // The test protocol.
    let token = format!("back {:08x}", crate::cli::random_seed() as u32);
    let hb = &opts.heartbeat;
    let step_timeout = opts.timeout.min(Duration::from_secs(10));
    for (name, req, expect) in [
        (
            "back -> the same bytes",
            token.as_bytes(),
            Expect::Bytes(token.as_bytes()),
        ),
        ("bin -> 11 22 33", &b"bin"[..], Expect::Bytes(&BIN_REPLY)),
        (
            "time -> Unix time",
            &b"time"[..],
            Expect::UnixTime { tolerance_s: 2 },
        ),
    ] {
        progress(&format!("sending {:?}", escape(req)));
        match request(lab, peer, req, expect, hb, step_timeout) {
            Ok((reply, rtt)) => report.add(
                name,
                true,
                format!("\"{}\", round trip {}", escape(&reply), duration(rtt)),
            ),
            Err(e) => report.add(name, false, e),
        }
    }

    // Drop the client and time its return.
    progress("dropping the client");
    let dropped = Instant::now();
    lab.drop_clients();
    let back = lab.wait_for(
        dropped + opts.timeout,
        |e| match e {
            LabEvent::Connected { peer, at } => Some((*peer, *at)),
            _ => None,
        },
        drop,
    );
    let name = match lab.transport() {
        Transport::Tcp => "reconnects after a drop",
        Transport::Udp => "traffic resumes after a drop",
    };
    let Some((peer2, at)) = back else {
        report.add(
            name,
            false,
            format!("not within {}", duration(opts.timeout)),
        );
        return report;
    };
    let detail = match lab.transport() {
        Transport::Tcp => format!("after {}", duration(at - dropped)),
        // UDP has no connection to drop: the lab forgets the client and
        // times its next datagram.
        Transport::Udp => format!(
            "next datagram after {} (UDP: nothing to drop)",
            duration(at - dropped)
        ),
    };
    report.add(name, true, detail);
    progress("checking the new connection");
    let again = b"back again";
    match request(lab, peer2, again, Expect::Bytes(again), hb, step_timeout) {
        Ok((_, rtt)) => report.add(
            "answers after the reconnect",
            true,
            format!("round trip {}", duration(rtt)),
        ),
        Err(e) => report.add("answers after the reconnect", false, e),
    }
    if lab.acked() {
        progress("losing the acks of 3 messages across a drop");
        let (passed, detail) = exactly_once(lab, peer2, opts.timeout);
        report.add("acked: once, in order, acks lost", passed, detail);
    }
    report
}

/// Acknowledged mode: the lab asks for three replies, delivers them and
/// withholds their acks ([`Lab::withhold_acks`]), then drops the client
/// before acknowledging. The client must send all three again after it is
/// back; the lab must recognise each copy as a duplicate. Passes when each
/// reply was delivered exactly once, in order, and at least one duplicate
/// was dropped.
pub fn exactly_once(lab: &Lab, peer: SocketAddr, timeout: Duration) -> (bool, String) {
    let token = format!("{:08x}", crate::cli::random_seed() as u32);
    let want: Vec<Vec<u8>> = (1..=3)
        .map(|i| format!("back once {token} {i}").into_bytes())
        .collect();
    let before = lab.stats();
    lab.withhold_acks();
    for w in &want {
        if let Err(e) = lab.send_to(peer, w) {
            return (false, format!("cannot send: {e}"));
        }
    }
    let start = Instant::now();
    let deadline = start + timeout;
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut dropped_at = None;
    let mut back_at = None;
    // Collect until the three arrived, the lab dropped the client, it came
    // back and a duplicate was recognised; then a little longer, for any
    // second delivery.
    let mut settle: Option<Instant> = None;
    let mut resent = Duration::ZERO;
    loop {
        let now = Instant::now();
        if now >= deadline || settle.is_some_and(|s| now >= s) {
            break;
        }
        let until = settle.unwrap_or(deadline).min(deadline);
        let event = lab.next_event(
            until
                .saturating_duration_since(now)
                .min(Duration::from_millis(100)),
        );
        match event {
            Some(LabEvent::Message { bytes, .. }) if bytes.starts_with(b"back once ") => {
                got.push(bytes)
            }
            Some(LabEvent::Connected { at, .. }) if dropped_at.is_some() && back_at.is_none() => {
                back_at = Some(at);
            }
            _ => {}
        }
        if dropped_at.is_none() && got.len() >= want.len() {
            // Delivered, not acknowledged: drop it now.
            lab.drop_clients();
            dropped_at = Some(Instant::now());
        }
        // The lab stops withholding when a copy of one of the three came
        // back.
        if settle.is_none() && dropped_at.is_some() && !lab.withholding() {
            let now = Instant::now();
            resent = dropped_at.map_or(Duration::ZERO, |d| now - d);
            settle = Some(now + Duration::from_millis(500));
        }
    }
    let dups = lab.stats().duplicates - before.duplicates;
    let resent_seen = !lab.withholding();
    lab.release_acks();
    let once = got == want;
    let passed = once && dups > 0 && resent_seen;
    let detail = if passed {
        format!(
            "3 delivered once each, in order; {dups} resent cop{} dropped as duplicate{}, the first {} after the drop",
            if dups == 1 { "y" } else { "ies" },
            if dups == 1 { "" } else { "s" },
            duration(resent)
        )
    } else if dropped_at.is_none() {
        format!(
            "only {} of 3 delivered within {}",
            got.len(),
            duration(timeout)
        )
    } else if !once {
        format!(
            "delivered {:?}, wanted each once in order",
            got.iter().map(|g| escape(g)).collect::<Vec<_>>()
        )
    } else {
        format!(
            "no resent copy recognised as a duplicate within {}",
            duration(timeout)
        )
    };
    (passed, detail)
}

/// `longlink lab --check`.
pub fn main(lab: &Lab, args: &crate::cli::LabArgs) -> std::process::ExitCode {
    let opts = CheckOptions {
        heartbeat: args.heartbeat_payload.as_bytes().to_vec(),
        heartbeats: args.heartbeats,
        timeout: args.timeout,
    };
    let report = run(lab, &opts, |line| {
        eprintln!(
            "{} {line}",
            crate::logger::timestamp(std::time::SystemTime::now())
        );
    });
    print!("{}", report.render());
    if report.passed() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_glued_heartbeats() {
        assert_eq!(
            remove_all(b"heart beatback 1heart beat", b"heart beat"),
            b"back 1"
        );
        assert_eq!(remove_all(b"abc", b""), b"abc");
        assert_eq!(heartbeats_in(Framing::Raw, b"hbhbx", b"hb"), 2);
        assert_eq!(heartbeats_in(Framing::Lines, b"hb", b"hb"), 1);
        assert_eq!(heartbeats_in(Framing::Lines, b"hbhb", b"hb"), 0);
    }

    #[test]
    fn a_report_passes_only_when_every_check_did() {
        let mut r = Report::default();
        assert!(!r.passed(), "an empty report proves nothing");
        r.add("a", true, "");
        assert!(r.passed());
        r.add("b", false, "why");
        assert!(!r.passed());
        assert!(r.render().ends_with("1 passed, 1 failed\n"));
    }
}
