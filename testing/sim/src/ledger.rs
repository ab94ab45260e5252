//! The message ledger: what must come out of the client, in which order.
//!
//! - App messages enqueued `Ok` must be written whole, in order, exactly once
//!   (a copy cut by a disconnect is allowed, and must be a prefix).
//! - Every inbound message the state machine handled must get the reply the
//!   scenario's model gives for it, whole, in order, exactly once (on that
//!   connection or a later one); which messages were handled is known from a
//!   reference decoder over the bytes delivered and `stats.messages_in`.
//! - The outgoing queue holds exactly the undelivered app messages and
//!   replies, in the order they were queued, and at most one heartbeat.
//!
//! Which frame the wire carries next (the next message owed, or a
//! heartbeat) is read from the heartbeat tags of the state machine's queue;
//! its bytes must then be exactly that frame, framed.

use std::collections::VecDeque;

use longlink_core::acked::{seq_before, Frame};
use longlink_core::{Framing, Transport};

/// Queue header bytes per message (the queue's storage format).
pub(crate) const HEADER: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    App,
    Heartbeat,
    Reply,
}

/// The model of the handler under test: the reply it must give to a
/// message at monotonic `now_ms`, with the wall clock `unix_ms` if one was
/// set.
pub(crate) type Model<'a> = &'a mut dyn FnMut(&[u8], u64, Option<u64>) -> Option<Vec<u8>>;

/// What an inbound frame is to the state machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// An application message (acknowledged mode: an `M` frame, stored
    /// without its tag).
    Msg,
    /// Acknowledged mode: an `A` frame (session, next).
    Ack(u32, u32),
    /// Acknowledged mode: a well framed frame that is neither: counted in
    /// `frames_rejected`, the link stays up.
    Junk,
}

/// The acknowledged mode's books: every `D` frame by sequence number, what
/// the device was told was delivered, what the server application got.
pub(crate) struct AckedBook {
    pub(crate) session: u32,
    /// Class and payload of every message queued with an envelope, by seq
    /// (the simulation never wraps the sequence space).
    pub(crate) by_seq: Vec<(Class, Vec<u8>)>,
    /// Every seq before this one was acknowledged to the device (by the
    /// rules the device must follow: its session, nothing beyond what it
    /// ever wrote).
    pub(crate) acked: u32,
    /// One past the highest seq ever written whole.
    pub(crate) written_max: u32,
    /// Messages the server application received (Dedup's deliveries).
    pub(crate) server_delivered: u32,
    /// Acks the device must have ignored (another session, beyond written).
    pub(crate) acks_ignored: u32,
    /// Messages the device must have counted as acknowledged.
    pub(crate) messages_acked: u32,
}

pub(crate) struct Ledger {
    framing: Framing,
    transport: Transport,
    r: usize,
    /// Largest frame a reply may have and still fit the queue some day.
    max_frame: usize,
    hb_payload: Vec<u8>,
    /// App messages and replies (to handled messages) queued and not yet
    /// written whole, in queue order.
    pub(crate) owed: VecDeque<(Class, Vec<u8>)>,
    /// Inbound bytes of the current connection not yet decoded (TCP).
    mirror: Vec<u8>,
    /// Decoded inbound frames not yet handled, with their wire size.
    pub(crate) inbox: VecDeque<(Vec<u8>, usize, Kind)>,
    /// The acknowledged mode's books (`None` in the socket mode).
    pub(crate) acked: Option<AckedBook>,
    /// A bad frame follows the inbox (the state machine must reject it once
    /// the inbox is handled).
    pub(crate) bad: bool,
    /// Messages written whole (socket mode) since the harness last took
    /// them, for `Scenario::delivered`.
    pub(crate) arrived: Vec<Vec<u8>>,
    /// Bytes written on the current connection not yet parsed (TCP).
    wire: Vec<u8>,
    /// The frame `wire` holds the start of is a heartbeat.
    wire_hb: bool,
    /// Unix ms minus monotonic ms, once a plausible wall clock was given.
    pub(crate) wall_offset: Option<i128>,
    // Totals the state machine's Stats must agree with.
    pub(crate) handled: u32,
    pub(crate) frames_out: u32,
    pub(crate) heartbeats_out: u32,
    pub(crate) bytes_out: u64,
    pub(crate) bytes_in: u64,
    pub(crate) rejected: u32,
    pub(crate) replies_dropped: u32,
    pub(crate) rx_discarded: u64,
    pub(crate) queue_full: u32,
    /// App messages written whole (for reports).
    pub(crate) apps_delivered: u64,
    pub(crate) replies_delivered: u64,
    /// Frames cut on the wire by a disconnect (each sent whole later).
    pub(crate) cut_frames: u64,
}

impl Ledger {
    pub(crate) fn new(
        framing: Framing,
        transport: Transport,
        q: usize,
        r: usize,
        hb_payload: &[u8],
        hb_slot: usize,
        session: Option<u32>,
    ) -> Self {
        Ledger {
            acked: session.map(|session| AckedBook {
                session,
                by_seq: Vec::new(),
                acked: 0,
                written_max: 0,
                server_delivered: 0,
                acks_ignored: 0,
                messages_acked: 0,
            }),
            framing,
            transport,
            r,
            max_frame: q.saturating_sub(hb_slot + HEADER),
            hb_payload: hb_payload.to_vec(),
            owed: VecDeque::new(),
            mirror: Vec::new(),
            inbox: VecDeque::new(),
            bad: false,
            arrived: Vec::new(),
            wire: Vec::new(),
            wire_hb: false,
            wall_offset: None,
            handled: 0,
            frames_out: 0,
            heartbeats_out: 0,
            bytes_out: 0,
            bytes_in: 0,
            rejected: 0,
            replies_dropped: 0,
            rx_discarded: 0,
            queue_full: 0,
            apps_delivered: 0,
            replies_delivered: 0,
            cut_frames: 0,
        }
    }

    /// The message inside a frame as the queue stores it.
    pub(crate) fn payload<'a>(&self, frame: &'a [u8]) -> &'a [u8] {
        match self.framing {
            Framing::Raw => frame,
            Framing::Lines => frame.strip_suffix(b"\n").unwrap_or(frame),
            Framing::Len16 => frame.get(2..).unwrap_or_default(),
        }
    }

    // ---------------------------------------------------------------- inbound

    /// Bytes the state machine took on a TCP connection.
    pub(crate) fn delivered_stream(&mut self, bytes: &[u8]) {
        self.bytes_in += bytes.len() as u64;
        if self.bad || bytes.is_empty() {
            // Nothing after a bad frame is ever decoded.
            self.mirror.extend_from_slice(bytes);
            return;
        }
        match self.framing {
            // Each read is one message.
            Framing::Raw => self.inbound(bytes.to_vec(), bytes.len()),
            Framing::Lines | Framing::Len16 => {
                self.mirror.extend_from_slice(bytes);
                self.decode_mirror(false);
            }
        }
    }

    /// One datagram the state machine took (already truncated to the buffer).
    pub(crate) fn delivered_datagram(&mut self, d: &[u8]) {
        self.bytes_in += d.len() as u64;
        if d.len() >= self.r {
            // Fills the receive buffer: it may have been cut by the stack,
            // so the state machine must reject it whole, whatever it holds.
            self.bad = true;
            return;
        }
        match self.framing {
            Framing::Raw => self.inbound(d.to_vec(), d.len()),
            Framing::Lines | Framing::Len16 => {
                self.mirror.extend_from_slice(d);
                self.decode_mirror(true);
            }
        }
    }

    /// The state machine dropped the bad datagram (UDP): nothing of it is
    /// left to decode, and the next datagram starts clean.
    pub(crate) fn datagram_dropped(&mut self) {
        self.mirror.clear();
        self.bad = false;
    }

    /// Splits complete frames off the mirror; `datagram`: whatever is left
    /// is a cut frame.
    fn decode_mirror(&mut self, datagram: bool) {
        loop {
            match self.framing {
                Framing::Lines => match self.mirror.iter().position(|&b| b == b'\n') {
                    Some(nl) => {
                        let mut line: Vec<u8> = self.mirror.drain(..=nl).collect();
                        line.pop();
                        if line.last() == Some(&b'\r') {
                            line.pop();
                        }
                        self.inbound(line, nl + 1);
                    }
                    None => {
                        self.bad =
                            self.mirror.len() >= self.r || (datagram && !self.mirror.is_empty());
                        return;
                    }
                },
                Framing::Len16 => {
                    if self.mirror.len() < 2 {
                        self.bad = datagram && !self.mirror.is_empty();
                        return;
                    }
                    let total =
                        2 + usize::from(u16::from_be_bytes([self.mirror[0], self.mirror[1]]));
                    if total > self.r {
                        self.bad = true;
                        return;
                    }
                    if self.mirror.len() < total {
                        self.bad = datagram;
                        return;
                    }
                    let frame: Vec<u8> = self.mirror.drain(..total).collect();
                    self.inbound(frame[2..].to_vec(), total);
                }
                Framing::Raw => return,
            }
        }
    }

    /// One decoded inbound frame: in the acknowledged mode an `M` frame is
    /// a message, an `A` frame an ack, anything else junk.
    fn inbound(&mut self, frame: Vec<u8>, wire: usize) {
        if self.acked.is_none() {
            self.inbox.push_back((frame, wire, Kind::Msg));
            return;
        }
        let (body, kind) = match Frame::decode(&frame) {
            Ok(Frame::Ack { session, next }) => (Vec::new(), Kind::Ack(session, next)),
            Ok(Frame::Msg(m)) => (m.to_vec(), Kind::Msg),
            _ => (Vec::new(), Kind::Junk),
        };
        self.inbox.push_back((body, wire, kind));
    }

    /// Acknowledged mode: the acks and junk at the head of the inbox, which
    /// the state machine handles as soon as it reaches them (only a
    /// message's reply can make it wait). Returns the junk frames.
    fn take_non_messages(&mut self) -> u32 {
        let mut junk = 0;
        while let Some(kind) = self.inbox.front().map(|(_, _, k)| *k) {
            match kind {
                Kind::Msg => break,
                Kind::Junk => junk += 1,
                Kind::Ack(session, next) => {
                    if let Some(b) = self.acked.as_mut() {
                        if session != b.session || seq_before(b.written_max, next) {
                            b.acks_ignored += 1;
                        } else if seq_before(b.acked, next) {
                            b.messages_acked += next.wrapping_sub(b.acked);
                            b.acked = next;
                        }
                    }
                }
            }
            self.inbox.pop_front();
        }
        self.rejected += junk;
        junk
    }

    /// The state machine handled `n` more messages at monotonic time `now`.
    /// Returns how many junk frames it must have rejected on the way
    /// (acknowledged mode).
    pub(crate) fn handle(&mut self, n: u32, now: u64, model: Model<'_>) -> Result<u32, String> {
        let mut junk = self.take_non_messages();
        for _ in 0..n {
            let Some((msg, _, _)) = self.inbox.pop_front() else {
                return Err("the state machine handled a message that was never delivered".into());
            };
            self.handled += 1;
            let unix = self
                .wall_offset
                .and_then(|off| u64::try_from(i128::from(now) + off).ok());
            if let Some(reply) = model(&msg, now, unix) {
                // `Lines` cannot carry a `\n`, nor a trailing `\r` (the
                // receiver would take it for half of a `\r\n`).
                let unframeable = match self.framing {
                    Framing::Lines => reply.contains(&b'\n') || reply.last() == Some(&b'\r'),
                    // No bytes at all on a stream: refused like `enqueue`'s
                    // `Empty`.
                    Framing::Raw => reply.is_empty(),
                    Framing::Len16 => false,
                };
                let envelope = if self.acked.is_some() { 9 } else { 0 };
                if unframeable || reply.len() + self.framing.overhead() + envelope > self.max_frame
                {
                    self.replies_dropped += 1;
                } else if let Some(b) = self.acked.as_mut() {
                    b.by_seq.push((Class::Reply, reply));
                } else {
                    self.owed.push_back((Class::Reply, reply));
                }
            }
            junk += self.take_non_messages();
        }
        Ok(junk)
    }

    /// The application queued `msg` (`enqueue` returned `Ok`).
    pub(crate) fn app_enqueued(&mut self, msg: Vec<u8>) {
        match self.acked.as_mut() {
            Some(b) => b.by_seq.push((Class::App, msg)),
            None => self.owed.push_back((Class::App, msg)),
        }
    }

    /// Messages owed: socket mode, app messages not written whole; acked
    /// mode, messages (app and replies) not acknowledged.
    pub(crate) fn apps_owed(&self) -> usize {
        match &self.acked {
            Some(b) => b.by_seq.len() - b.acked as usize,
            None => self.owed_of(Class::App),
        }
    }

    /// Socket mode: messages of `class` queued and not yet written whole.
    pub(crate) fn owed_of(&self, class: Class) -> usize {
        self.owed.iter().filter(|(c, _)| *c == class).count()
    }

    /// Acknowledged mode: the server application received `D` frame `seq`
    /// (Dedup said deliver). It must be the next one, with its payload.
    pub(crate) fn server_delivered(&mut self, seq: u32, payload: &[u8]) -> Result<(), String> {
        let Some(b) = self.acked.as_mut() else {
            return Err("a D frame in the socket mode".into());
        };
        let want = b.by_seq.get(seq as usize);
        if seq != b.server_delivered || want.map(|(_, p)| p.as_slice()) != Some(payload) {
            return Err(format!(
                "server application got seq {seq} {:?}, expected seq {} {:?} (lost, duplicated or out of order end to end)",
                String::from_utf8_lossy(payload),
                b.server_delivered,
                b.by_seq
                    .get(b.server_delivered as usize)
                    .map(|(_, p)| String::from_utf8_lossy(p))
            ));
        }
        b.server_delivered += 1;
        match want.map(|(c, _)| *c) {
            Some(Class::Reply) => self.replies_delivered += 1,
            _ => self.apps_delivered += 1,
        }
        Ok(())
    }

    /// Bytes delivered on this connection that were not handled.
    fn unhandled_bytes(&self) -> u64 {
        let inbox: usize = self.inbox.iter().map(|(_, n, _)| n).sum();
        (inbox + self.mirror.len()) as u64
    }

    // --------------------------------------------------------------- outbound

    /// The frame owed next, as it must look on the wire: the heartbeat if
    /// the state machine's queue says its head is one (`heartbeat`), the
    /// next message owed otherwise.
    fn expected_frame(&self, heartbeat: bool) -> Result<(Class, Vec<u8>), String> {
        let (class, payload) = if heartbeat {
            (Class::Heartbeat, &self.hb_payload[..])
        } else {
            let (c, p) = self
                .owed
                .front()
                .ok_or("a frame on the wire, but no message is owed")?;
            (*c, &p[..])
        };
        let mut out = vec![0; payload.len() + self.framing.overhead()];
        let n = self.framing.encode(payload, &mut out).map_err(|e| {
            format!(
                "{class:?} {:?} cannot be framed: {e:?}",
                payload.escape_ascii().to_string()
            )
        })?;
        out.truncate(n);
        Ok((class, out))
    }

    fn complete(&mut self, class: Class) {
        match class {
            Class::App | Class::Reply => {
                if let Some((_, m)) = self.owed.pop_front() {
                    self.arrived.push(m);
                }
                if class == Class::App {
                    self.apps_delivered += 1;
                } else {
                    self.replies_delivered += 1;
                }
            }
            Class::Heartbeat => self.heartbeats_out += 1,
        }
        self.frames_out += 1;
    }

    /// Acknowledged mode: one whole frame went out (`fresh`: its first
    /// byte was written in this call).
    fn complete_acked(&mut self, inner: &[u8], fresh: bool) -> Result<(), String> {
        let Some(b) = self.acked.as_mut() else {
            return Ok(());
        };
        match Frame::decode(inner) {
            Ok(Frame::Data {
                session,
                seq,
                payload,
            }) if session == b.session => {
                let want = b.by_seq.get(seq as usize).map(|(_, p)| p.as_slice());
                if want != Some(payload) {
                    return Err(format!(
                        "D seq {seq} {:?} on the wire, queued as {:?}",
                        String::from_utf8_lossy(payload),
                        want.map(String::from_utf8_lossy)
                    ));
                }
                if fresh && seq_before(seq, b.acked) {
                    return Err(format!(
                        "D seq {seq} sent again after its ack (everything before {} acknowledged)",
                        b.acked
                    ));
                }
                if !seq_before(seq, b.written_max) {
                    b.written_max = seq + 1;
                }
            }
            Ok(Frame::Beat {
                session, payload, ..
            }) if session == b.session && payload == &self.hb_payload[..] => {
                self.heartbeats_out += 1;
            }
            _ => {
                return Err(format!(
                    "frame {:?} on the wire is neither D nor H of session {}",
                    String::from_utf8_lossy(inner),
                    b.session
                ))
            }
        }
        self.frames_out += 1;
        Ok(())
    }

    /// Acknowledged mode: the socket took `bytes`.
    fn written_acked(&mut self, bytes: &[u8]) -> Result<(), String> {
        if self.transport == Transport::Udp {
            if bytes.is_empty() {
                return Ok(());
            }
            let inner = match self.framing {
                Framing::Len16 => {
                    let declared = bytes
                        .get(..2)
                        .map(|l| 2 + usize::from(u16::from_be_bytes([l[0], l[1]])));
                    if declared != Some(bytes.len()) {
                        return Err(format!(
                            "datagram \"{}\" is not one whole frame",
                            bytes.escape_ascii()
                        ));
                    }
                    &bytes[2..]
                }
                _ => bytes,
            };
            return self.complete_acked(inner, true);
        }
        let mut fresh = self.wire.is_empty();
        self.wire.extend_from_slice(bytes);
        while self.wire.len() >= 2 {
            let total = 2 + usize::from(u16::from_be_bytes([self.wire[0], self.wire[1]]));
            if self.wire.len() < total {
                break;
            }
            let frame: Vec<u8> = self.wire.drain(..total).collect();
            self.complete_acked(&frame[2..], fresh)?;
            fresh = true;
        }
        Ok(())
    }

    /// The socket took `bytes` (for UDP: one whole datagram) of what the
    /// state machine's queue held; `heads` tells which of its frames, in
    /// order, are heartbeats (the first being the one `wire` has the start
    /// of). Frame boundaries come from the expected frames, never from
    /// parsing the wire, so a message that looks like a heartbeat, or is a
    /// prefix of one, is still told apart.
    pub(crate) fn written(&mut self, bytes: &[u8], heads: &[bool]) -> Result<(), String> {
        self.bytes_out += bytes.len() as u64;
        if self.acked.is_some() {
            return self.written_acked(bytes);
        }
        if bytes.is_empty() {
            return Ok(());
        }
        let show = |b: &[u8]| b.escape_ascii().to_string();
        if self.transport == Transport::Udp {
            let (class, want) = self.expected_frame(heads.first() == Some(&true))?;
            if bytes != want {
                return Err(format!(
                    "datagram \"{}\" on the wire, expected {class:?} \"{}\" (lost, duplicated, out of order or not one whole frame)",
                    show(bytes),
                    show(&want)
                ));
            }
            self.complete(class);
            return Ok(());
        }
        self.wire.extend_from_slice(bytes);
        let mut heads = heads.iter().copied();
        loop {
            let Some(hb) = heads.next() else {
                return Err(format!(
                    "\"{}\" on the wire beyond everything queued",
                    show(&self.wire)
                ));
            };
            let (class, want) = self.expected_frame(hb)?;
            let n = want.len().min(self.wire.len());
            if self.wire[..n] != want[..n] {
                return Err(format!(
                    "\"{}\" on the wire, expected {class:?} \"{}\" (lost, duplicated or out of order)",
                    show(&self.wire),
                    show(&want)
                ));
            }
            if self.wire.len() < want.len() {
                self.wire_hb = hb;
                return Ok(());
            }
            self.wire.drain(..want.len());
            self.complete(class);
            if self.wire.is_empty() {
                return Ok(());
            }
        }
    }

    /// The connection ended: a frame cut on the wire must be the start of
    /// the expected one; unhandled inbound bytes are discarded.
    pub(crate) fn connection_closed(&mut self) -> Result<(), String> {
        let cut = std::mem::take(&mut self.wire);
        if !cut.is_empty() && self.acked.is_some() {
            self.cut_frames += 1;
            self.check_cut_acked(&cut)?;
        } else if !cut.is_empty() {
            self.cut_frames += 1;
            let (class, want) = self.expected_frame(self.wire_hb)?;
            if !want.starts_with(&cut) {
                return Err(format!(
                    "cut frame \"{}\" is not the start of the {class:?} owed, \"{}\"",
                    cut.escape_ascii(),
                    want.escape_ascii()
                ));
            }
        }
        self.rx_discarded += self.unhandled_bytes();
        self.mirror.clear();
        self.inbox.clear();
        self.bad = false;
        Ok(())
    }

    /// Acknowledged mode: a frame cut on the wire (TCP, `Len16`) must be
    /// the start of a `D` frame as queued, or of a heartbeat.
    fn check_cut_acked(&self, cut: &[u8]) -> Result<(), String> {
        let Some(b) = &self.acked else {
            return Ok(());
        };
        if cut.len() < 2 + 9 {
            return Ok(());
        }
        let declared = usize::from(u16::from_be_bytes([cut[0], cut[1]]));
        let body = &cut[2..];
        let word =
            |at: usize| u32::from_be_bytes([body[at], body[at + 1], body[at + 2], body[at + 3]]);
        let expected: Option<&[u8]> = match body[0] {
            b'D' if word(1) == b.session => {
                b.by_seq.get(word(5) as usize).map(|(_, p)| p.as_slice())
            }
            b'H' if word(1) == b.session => Some(&self.hb_payload),
            _ => None,
        };
        match expected {
            Some(e) if declared == 9 + e.len() && e.starts_with(&body[9..]) => Ok(()),
            _ => Err(format!(
                "cut frame \"{}\" is not the start of a queued frame",
                cut.escape_ascii()
            )),
        }
    }

    /// Acknowledged mode: the queue holds every message not acknowledged,
    /// in seq order, up to the last one queued (and possibly acknowledged
    /// ones at its head, cut mid-write), and at most one heartbeat.
    fn check_queue_acked<'a>(
        &self,
        frames: impl Iterator<Item = (&'a [u8], bool)>,
        q: usize,
    ) -> Result<(), String> {
        let Some(b) = &self.acked else {
            return Ok(());
        };
        let (mut used, mut hbs) = (0, 0);
        let mut next: Option<u32> = None;
        for (frame, hb) in frames {
            used += frame.len() + HEADER;
            let inner = self.payload(frame);
            match Frame::decode(inner) {
                Ok(Frame::Beat {
                    session, payload, ..
                }) if hb && session == b.session && payload == &self.hb_payload[..] => hbs += 1,
                Ok(Frame::Data {
                    session,
                    seq,
                    payload,
                }) if !hb && session == b.session => {
                    match next {
                        Some(n) if n != seq => {
                            return Err(format!("queued D seq {seq} after seq {}", n - 1))
                        }
                        None if seq_before(b.acked, seq) => {
                            return Err(format!(
                                "unacknowledged messages {}..{seq} silently left the queue",
                                b.acked
                            ))
                        }
                        _ => {}
                    }
                    let want = b.by_seq.get(seq as usize).map(|(_, p)| p.as_slice());
                    if want != Some(payload) {
                        return Err(format!(
                            "queued D seq {seq} \"{}\", expected {:?}",
                            payload.escape_ascii(),
                            want.map(String::from_utf8_lossy)
                        ));
                    }
                    next = Some(seq + 1);
                }
                _ => {
                    return Err(format!(
                        "queued frame \"{}\" (heartbeat={hb}) is not ours",
                        frame.escape_ascii()
                    ))
                }
            }
        }
        let end = next.unwrap_or(b.acked);
        if end as usize != b.by_seq.len() {
            return Err(format!(
                "the queue ends before seq {end}, {} messages queued (everything before {} acknowledged)",
                b.by_seq.len(),
                b.acked
            ));
        }
        if used > q {
            return Err(format!("queue uses {used} bytes of {q}"));
        }
        if hbs > 1 {
            return Err(format!("{hbs} heartbeats queued"));
        }
        Ok(())
    }

    /// The queue must hold exactly what is owed, in order.
    pub(crate) fn check_queue<'a>(
        &self,
        frames: impl Iterator<Item = (&'a [u8], bool)>,
        q: usize,
    ) -> Result<(), String> {
        if self.acked.is_some() {
            return self.check_queue_acked(frames, q);
        }
        let mut used = 0;
        let mut hbs = 0;
        let mut owed = self.owed.iter();
        for (frame, hb) in frames {
            used += frame.len() + HEADER;
            let payload = self.payload(frame);
            let expected = if hb {
                hbs += 1;
                Some(&self.hb_payload[..])
            } else {
                owed.next().map(|(_, p)| p.as_slice())
            };
            if expected != Some(payload) {
                return Err(format!(
                    "queued {:?} (heartbeat={hb}), expected {:?}",
                    String::from_utf8_lossy(payload),
                    expected.map(String::from_utf8_lossy)
                ));
            }
        }
        if let Some((class, m)) = owed.next() {
            return Err(format!(
                "{class:?} {:?} silently left the queue",
                String::from_utf8_lossy(m)
            ));
        }
        if used > q {
            return Err(format!("queue uses {used} bytes of {q}"));
        }
        if hbs > 1 {
            return Err(format!("{hbs} heartbeats pending"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger(framing: Framing, transport: Transport) -> Ledger {
        Ledger::new(framing, transport, 256, 64, b"hb", 10, None)
    }

    #[test]
    fn frames_are_checked_in_queue_order_with_the_heartbeat_where_the_queue_has_it() {
        let mut l = ledger(Framing::Lines, Transport::Tcp);
        l.app_enqueued(b"APP0:".to_vec());
        assert_eq!(l.written(b"hb\nAP", &[true, false]), Ok(()));
        assert_eq!(l.written(b"P0:\n", &[false]), Ok(()));
        assert_eq!(
            (l.heartbeats_out, l.apps_delivered, l.frames_out),
            (1, 1, 2)
        );
        // Nothing is owed any more: a second copy is a duplicate.
        assert!(l.written(b"APP0:\n", &[false]).is_err());
    }

    #[test]
    fn raw_frames_that_look_alike_are_told_apart_by_the_queue() {
        // The app message `h` is a prefix of the heartbeat `hb`.
        let mut l = ledger(Framing::Raw, Transport::Tcp);
        l.app_enqueued(b"h".to_vec());
        assert_eq!(l.written(b"hbh", &[true, false]), Ok(()));
        assert_eq!((l.heartbeats_out, l.apps_delivered), (1, 1));
    }

    #[test]
    fn wrong_lost_or_reordered_bytes_are_caught() {
        let mut l = ledger(Framing::Len16, Transport::Tcp);
        l.app_enqueued(b"one".to_vec());
        l.app_enqueued(b"two".to_vec());
        // `two` before `one`.
        assert!(l.written(b"\x00\x03two", &[false, false]).is_err());
        let mut l = ledger(Framing::Len16, Transport::Udp);
        l.app_enqueued(b"one".to_vec());
        // A datagram with two frames, or half of one.
        assert!(l.written(b"\x00\x03one\x00\x02hb", &[false, true]).is_err());
        assert!(l.written(b"\x00\x03on", &[false]).is_err());
        assert_eq!(l.written(b"\x00\x03one", &[false]), Ok(()));
    }

    #[test]
    fn a_cut_frame_must_be_the_start_of_the_one_owed() {
        let mut l = ledger(Framing::Lines, Transport::Tcp);
        l.app_enqueued(b"APP0:".to_vec());
        assert_eq!(l.written(b"AP", &[false]), Ok(()));
        assert_eq!(l.connection_closed(), Ok(()));
        assert_eq!(l.cut_frames, 1);
        // Sent whole on the next connection.
        assert_eq!(l.written(b"APP0:\n", &[false]), Ok(()));
        assert!(l.written(b"XY", &[false]).is_err());
    }
}
