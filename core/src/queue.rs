//! The outgoing queue: whole framed messages in one caller-sized byte buffer.
//!
//! One buffer of `N` bytes holds two regions that grow towards each other:
//!
//! ```text
//! 0      head                 tail          index                N
//! |  free  | frame frame frame |    free    | entry entry entry |
//!            oldest ... newest                newest ... oldest
//! ```
//!
//! The frames are stored back to back, so everything queued is one
//! contiguous slice that a socket can take in one write ([`Queue::bytes`]).
//! The index holds one 4-byte entry per frame (its length and a heartbeat
//! tag), newest at the lowest address. Space freed at the front of either
//! region is reclaimed by sliding both regions back to the buffer's ends
//! ("compaction"), only when a new message would not fit otherwise; no ring
//! wrap-around, no second copy.
//!
//! A message leaves the queue only when the socket took its last byte
//! ([`Queue::drop_front`]): the state machine tracks how much of the head was
//! written, and starts again from zero on a new connection.

/// Queue bytes each message costs besides its frame: its index entry, a
/// little-endian `u32` (low 31 bits the frame length, top bit set for a
/// heartbeat).
pub(crate) const HEADER: usize = 4;
const HEARTBEAT_BIT: u32 = 1 << 31;

/// The queue has no room for the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Full;

pub(crate) struct Queue<const N: usize> {
    buf: [u8; N],
    /// Frames: `buf[head..tail]`.
    head: usize,
    tail: usize,
    /// Index entries: `buf[index..top]`, the oldest at `top - HEADER`.
    index: usize,
    top: usize,
}

impl<const N: usize> Queue<N> {
    pub(crate) const fn new() -> Self {
        Queue {
            buf: [0; N],
            head: 0,
            tail: 0,
            index: N,
            top: N,
        }
    }

    /// Bytes in use, index entries included.
    pub(crate) fn used(&self) -> usize {
        self.tail - self.head + self.top - self.index
    }

    /// Number of queued messages.
    pub(crate) fn len(&self) -> usize {
        (self.top - self.index) / HEADER
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.top == self.index
    }

    /// The largest frame that could be added now while leaving `reserve`
    /// bytes free, compaction allowed; `None` when not even an index entry
    /// fits.
    pub(crate) fn room(&self, reserve: usize) -> Option<usize> {
        N.checked_sub(reserve)?
            .checked_sub(self.used())?
            .checked_sub(HEADER)
    }

    /// The free bytes between the regions, less one index entry, limited to
    /// the room: where a new frame can be written without compacting.
    fn gap(&self, reserve: usize) -> Option<usize> {
        let physical = (self.index - self.tail).checked_sub(HEADER)?;
        Some(physical.min(self.room(reserve)?))
    }

    /// Slides the frames to the start of the buffer and the index to its end.
    pub(crate) fn compact(&mut self) {
        slide_down(&mut self.buf, self.head, self.tail);
        self.tail -= self.head;
        self.head = 0;
        slide_up(&mut self.buf, self.index, self.top);
        self.index += N - self.top;
        self.top = N;
    }

    /// Whether [`compact`](Self::compact) would make [`spare`](Self::spare)
    /// larger.
    pub(crate) fn compaction_helps(&self, reserve: usize) -> bool {
        match (self.gap(reserve), self.room(reserve)) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(gap), Some(room)) => gap < room,
        }
    }

    /// The bytes a new frame can be written into, without compacting; `None`
    /// when there is no room for even an empty frame. Follow with
    /// [`commit`](Self::commit).
    pub(crate) fn spare(&mut self, reserve: usize) -> Option<&mut [u8]> {
        let gap = self.gap(reserve)?;
        self.buf.get_mut(self.tail..self.tail + gap)
    }

    /// Reserves room for a frame of exactly `len` bytes (compacting if that
    /// helps) and returns it to be filled, or `Full`.
    pub(crate) fn reserve_exact(&mut self, len: usize, reserve: usize) -> Result<&mut [u8], Full> {
        if self.room(reserve).is_none_or(|room| len > room) {
            return Err(Full);
        }
        if self.gap(reserve).is_none_or(|gap| len > gap) {
            self.compact();
        }
        self.buf.get_mut(self.tail..self.tail + len).ok_or(Full)
    }

    /// Makes the first `len` bytes of [`spare`](Self::spare) (or of
    /// [`reserve_exact`](Self::reserve_exact)) a queued frame.
    // Out of line: LTO would copy it into each caller (code size, see SIZES.md).
    #[inline(never)]
    pub(crate) fn commit(&mut self, len: usize, heartbeat: bool) {
        debug_assert!(self.tail + len + HEADER <= self.index);
        let tag = if heartbeat { HEARTBEAT_BIT } else { 0 };
        // Frames are bounded by N; the length field holds 31 bits.
        let entry = (len as u32 & !HEARTBEAT_BIT) | tag;
        self.index -= HEADER;
        if let Some(e) = self.buf.get_mut(self.index..self.index + HEADER) {
            e.copy_from_slice(&entry.to_le_bytes());
        }
        self.tail += len;
    }

    /// The index entry `i` places from the oldest: frame length and whether
    /// it is a heartbeat.
    pub(crate) fn entry(&self, i: usize) -> Option<(usize, bool)> {
        let at = self.top.checked_sub((i + 1) * HEADER)?;
        if at < self.index {
            return None;
        }
        let e = u32::from_le_bytes(*self.buf.get(at..)?.first_chunk::<HEADER>()?);
        Some(((e & !HEARTBEAT_BIT) as usize, e & HEARTBEAT_BIT != 0))
    }

    /// The head frame's length and whether it is a heartbeat.
    pub(crate) fn header(&self) -> Option<(usize, bool)> {
        self.entry(0)
    }

    /// Every queued frame, back to back, head first.
    pub(crate) fn bytes(&self) -> &[u8] {
        self.buf.get(self.head..self.tail).unwrap_or_default()
    }

    /// The frame at the head and whether it is a heartbeat.
    #[cfg(any(test, feature = "acked"))]
    pub(crate) fn front(&self) -> Option<(&[u8], bool)> {
        let (len, hb) = self.header()?;
        Some((self.bytes().get(..len)?, hb))
    }

    /// Removes the head frame; returns its length and whether it was a
    /// heartbeat.
    pub(crate) fn drop_front(&mut self) -> Option<(usize, bool)> {
        let (len, hb) = self.header()?;
        self.head += len;
        self.top -= HEADER;
        if self.is_empty() {
            // Both regions back at the buffer's ends: no compaction needed.
            (self.head, self.tail, self.index, self.top) = (0, 0, N, N);
        }
        Some((len, hb))
    }

    /// Iterates over the queued frames, head first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&[u8], bool)> + '_ {
        let mut at = self.head;
        let mut i = 0;
        core::iter::from_fn(move || {
            let (len, hb) = self.entry(i)?;
            let frame = self.buf.get(at..at + len)?;
            at += len;
            i += 1;
            Some((frame, hb))
        })
    }
}

/// Moves `buf[from..to]` to the start of `buf`.
///
/// Same result as `copy_within(from..to, 0)`, but in pieces of at most
/// `from` bytes that never overlap their destination: each is a `memcpy`,
/// and the firmware does not link `memmove` (1.5 KiB on Cortex-M) for this
/// one use. Compactions move little: the queue and receive buffer are
/// mostly drained when they happen.
pub(crate) fn slide_down(buf: &mut [u8], from: usize, to: usize) {
    if from == 0 || to <= from || to > buf.len() {
        return;
    }
    let mut done = 0;
    while done < to - from {
        let n = from.min(to - from - done);
        let (dst, src) = buf.split_at_mut(from + done);
        dst[done..done + n].copy_from_slice(&src[..n]);
        done += n;
    }
}

/// Moves `buf[from..to]` to the end of `buf`: [`slide_down`] mirrored, in
/// pieces of at most the distance moved, last piece first.
fn slide_up(buf: &mut [u8], from: usize, to: usize) {
    let end = buf.len();
    if to >= end || to <= from {
        return;
    }
    let shift = end - to;
    let mut left = to - from;
    while left > 0 {
        let n = shift.min(left);
        let (src, dst) = buf.split_at_mut(from + left);
        dst[shift - n..shift].copy_from_slice(&src[from + left - n..]);
        left -= n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push<const N: usize>(q: &mut Queue<N>, msg: &[u8], reserve: usize) -> Result<(), Full> {
        q.reserve_exact(msg.len(), reserve)?.copy_from_slice(msg);
        q.commit(msg.len(), false);
        Ok(())
    }

    fn pop<const N: usize>(q: &mut Queue<N>) -> Option<bool> {
        q.drop_front().map(|(_, hb)| hb)
    }

    #[test]
    fn fifo_order_and_tags() {
        let mut q = Queue::<64>::new();
        push(&mut q, b"one", 0).unwrap();
        q.reserve_exact(2, 0).unwrap().copy_from_slice(b"hb");
        q.commit(2, true);
        push(&mut q, b"three", 0).unwrap();
        assert_eq!(q.len(), 3);
        assert_eq!(q.bytes(), b"onehbthree", "frames are contiguous");
        assert_eq!(q.front(), Some((&b"one"[..], false)));
        assert_eq!(pop(&mut q), Some(false));
        assert_eq!(q.front(), Some((&b"hb"[..], true)));
        assert_eq!(q.bytes(), b"hbthree");
        assert_eq!(pop(&mut q), Some(true));
        assert_eq!(pop(&mut q), Some(false));
        assert_eq!(pop(&mut q), None);
        assert!(q.is_empty());
        assert_eq!(q.used(), 0);
        assert_eq!(q.bytes(), b"");
    }

    #[test]
    fn full_is_an_error_and_reserve_is_kept() {
        let mut q = Queue::<16>::new();
        // 16 bytes hold one index entry and 12 bytes of frame.
        assert_eq!(push(&mut q, &[1; 13], 0), Err(Full));
        assert_eq!(push(&mut q, &[1; 9], 3), Ok(()));
        assert_eq!(q.room(0), None, "13 bytes used, an entry does not fit in 3");
        assert_eq!(push(&mut q, b"", 0), Err(Full));
        assert!(q.spare(0).is_none());
        assert_eq!(q.len(), 1, "a failed push changes nothing");
    }

    #[test]
    fn compaction_reuses_space_freed_at_the_front() {
        let mut q = Queue::<28>::new();
        push(&mut q, &[1; 8], 0).unwrap(); // 12 bytes
        push(&mut q, &[2; 4], 0).unwrap(); // 8 bytes: 20 used, gap 8
        pop(&mut q);
        assert!(q.compaction_helps(0));
        // Needs 8 + 4 = 12 bytes: only possible after sliding both regions.
        push(&mut q, &[3; 8], 0).unwrap();
        assert_eq!(q.bytes(), [[2; 4].as_slice(), &[3; 8]].concat());
        assert_eq!(pop(&mut q), Some(false));
        assert_eq!(q.front(), Some((&[3u8; 8][..], false)));
    }

    /// A model: a list of frames. Every operation on the queue must agree
    /// with it, and the gap/compaction helpers with their definitions.
    #[test]
    fn matches_a_list_of_frames() {
        let mut q = Queue::<40>::new();
        let mut model: [([u8; 9], usize, bool); 16] = [([0; 9], 0, false); 16];
        let mut n = 0;
        let mut rng = 0x2545_f491_u32;
        for step in 0..5000 {
            rng ^= rng << 13;
            rng ^= rng >> 17;
            rng ^= rng << 5;
            if rng.is_multiple_of(3) {
                let got = q.drop_front();
                if n == 0 {
                    assert_eq!(got, None);
                } else {
                    assert_eq!(got, Some((model[0].1, model[0].2)), "step {step}");
                    model.copy_within(1..n, 0);
                    n -= 1;
                }
            } else {
                let len = (rng as usize >> 8) % 10;
                let hb = rng & 0x10 != 0;
                let frame = [step as u8; 9];
                let fits = q.room(0).is_some_and(|room| len <= room);
                let pushed = q.reserve_exact(len, 0).map(|s| {
                    s.copy_from_slice(&frame[..len]);
                });
                assert_eq!(pushed.is_ok(), fits, "step {step}");
                if pushed.is_ok() {
                    q.commit(len, hb);
                    model[n] = (frame, len, hb);
                    n += 1;
                }
            }
            assert_eq!(q.len(), n);
            let used: usize = model[..n].iter().map(|m| m.1 + HEADER).sum();
            assert_eq!(q.used(), used, "step {step}");
            let mut all = [0u8; 40];
            let mut k = 0;
            for (i, (frame, hb)) in q.iter().enumerate() {
                assert_eq!((frame, hb), (&model[i].0[..model[i].1], model[i].2));
                all[k..k + frame.len()].copy_from_slice(frame);
                k += frame.len();
            }
            assert_eq!(q.bytes(), &all[..k], "step {step}");
            for reserve in 0..44 {
                let helps = q.compaction_helps(reserve);
                let spare = q.spare(reserve).map(|s| s.len());
                let room = q.room(reserve);
                assert!(spare <= room, "step {step}");
                assert_eq!(helps, room.is_some() && spare != room, "step {step}");
            }
        }
    }

    #[test]
    fn slides_are_copy_within() {
        for len in 0..24 {
            for from in 0..=len {
                for to in from..=len {
                    let mut a: [u8; 24] = core::array::from_fn(|i| i as u8);
                    let mut b = a;
                    slide_down(&mut a[..len], from, to);
                    b[..len].copy_within(from..to, 0);
                    assert_eq!(a, b, "down: len {len} from {from} to {to}");
                    let mut a: [u8; 24] = core::array::from_fn(|i| i as u8);
                    let mut b = a;
                    slide_up(&mut a[..len], from, to);
                    b[..len].copy_within(from..to, len - (to - from));
                    assert_eq!(a, b, "up: len {len} from {from} to {to}");
                }
            }
        }
    }
}
