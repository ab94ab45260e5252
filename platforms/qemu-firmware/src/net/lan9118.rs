//! A small polled driver for the SMSC LAN9118 Ethernet controller of the
//! mps2-an385/an386 boards, as QEMU emulates it (`hw/net/lan9118.c`), and
//! its [`smoltcp::phy::Device`]. No maintained Rust crate drives this chip.
//!
//! 32-bit PIO through the data FIFOs, no interrupts (the main loop polls
//! [`Lan9118::rx_pending`]). The register accesses are safe calls on
//! [`Reg`]; the one `unsafe` block lives in `hw`.

use core::sync::atomic::{AtomicU32, Ordering};

use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

use super::hw::Reg;

const RX_DATA_FIFO: Reg = Reg::lan9118(0x00);
const TX_DATA_FIFO: Reg = Reg::lan9118(0x20);
const RX_STATUS_FIFO: Reg = Reg::lan9118(0x40);
const TX_STATUS_FIFO: Reg = Reg::lan9118(0x48);
const ID_REV: Reg = Reg::lan9118(0x50);
const INT_EN: Reg = Reg::lan9118(0x5c);
const BYTE_TEST: Reg = Reg::lan9118(0x64);
const RX_CFG: Reg = Reg::lan9118(0x6c);
const TX_CFG: Reg = Reg::lan9118(0x70);
const HW_CFG: Reg = Reg::lan9118(0x74);
const RX_FIFO_INF: Reg = Reg::lan9118(0x7c);
const TX_FIFO_INF: Reg = Reg::lan9118(0x80);
const PMT_CTRL: Reg = Reg::lan9118(0x84);
const MAC_CSR_CMD: Reg = Reg::lan9118(0xa4);
const MAC_CSR_DATA: Reg = Reg::lan9118(0xa8);

// MAC CSR (indirect) registers.
const MAC_CR: u32 = 1;
const MAC_ADDRH: u32 = 2;
const MAC_ADDRL: u32 = 3;
const MAC_MII_ACC: u32 = 6;
const MAC_MII_DATA: u32 = 7;

const MAC_CR_FDPX: u32 = 1 << 20;
const MAC_CR_TXEN: u32 = 1 << 3;
const MAC_CR_RXEN: u32 = 1 << 2;

const CSR_BUSY: u32 = 1 << 31;
const CSR_READ: u32 = 1 << 30;
const HW_CFG_SRST: u32 = 1;
const PMT_READY: u32 = 1;
const TX_CFG_TXSAO: u32 = 1 << 2;
const TX_CFG_TX_ON: u32 = 1 << 1;
const TX_CMD_A_FIRST: u32 = 1 << 13;
const TX_CMD_A_LAST: u32 = 1 << 12;
const RX_STS_ERROR: u32 = 1 << 15;

/// The internal PHY's address on the MII bus.
const PHY_ADDR: u32 = 1;
/// PHY basic status register and its link bit.
const PHY_BSR: u32 = 1;
const PHY_BSR_LINK: u32 = 1 << 2;

/// The largest frame handled (Ethernet MTU 1500 + header, no CRC).
pub const MAX_FRAME: usize = 1514;
/// Bounded waits on the chip (it answers at once under QEMU).
const SPIN: u32 = 10_000;

/// Why the chip could not be brought up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitError {
    /// BYTE_TEST did not read 0x87654321: no LAN9118 here.
    NotFound,
    /// The chip did not finish its reset.
    Timeout,
}

static RX: AtomicU32 = AtomicU32::new(0);
static TX: AtomicU32 = AtomicU32::new(0);
static DROPPED: AtomicU32 = AtomicU32::new(0);

fn count(c: &AtomicU32) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// The NIC's counters (the stack owns the device, so they live here).
pub fn stats() -> NicStats {
    NicStats {
        rx: RX.load(Ordering::Relaxed),
        tx: TX.load(Ordering::Relaxed),
        dropped: DROPPED.load(Ordering::Relaxed),
    }
}

/// Counters for the report.
#[derive(Debug, Clone, Copy, Default)]
pub struct NicStats {
    /// Frames received and handed up.
    pub rx: u32,
    /// Frames sent.
    pub tx: u32,
    /// Frames dropped: errored, too long, or sent while the radio was off.
    pub dropped: u32,
}

/// The controller. A zero-sized handle to its registers plus the frame
/// buffers smoltcp's tokens borrow.
pub struct Lan9118 {
    mac: [u8; 6],
    rx_buf: [u8; MAX_FRAME + 4],
    tx_buf: [u8; MAX_FRAME],
}

/// The controller's link-control side, for the modem: link state, radio
/// (MAC) on/off, interface reset. Register access only, so it can live next
/// to the [`Lan9118`] the stack owns.
#[derive(Clone, Copy)]
pub struct LinkControl {
    mac: [u8; 6],
}

fn mac_read(reg: u32) -> u32 {
    MAC_CSR_CMD.write(CSR_BUSY | CSR_READ | reg);
    wait_csr();
    MAC_CSR_DATA.read()
}

fn mac_write(reg: u32, value: u32) {
    MAC_CSR_DATA.write(value);
    MAC_CSR_CMD.write(CSR_BUSY | reg);
    wait_csr();
}

fn wait_csr() {
    for _ in 0..SPIN {
        if MAC_CSR_CMD.read() & CSR_BUSY == 0 {
            return;
        }
    }
}

fn phy_read(reg: u32) -> u32 {
    // MII_ACC: PHY address 15:11, register 10:6, bit 1 write, bit 0 busy.
    mac_write(MAC_MII_ACC, (PHY_ADDR << 11) | (reg << 6) | 1);
    for _ in 0..SPIN {
        if mac_read(MAC_MII_ACC) & 1 == 0 {
            break;
        }
    }
    mac_read(MAC_MII_DATA) & 0xffff
}

/// Soft reset and configuration: MAC address, full duplex, TX and RX on,
/// interrupts off (polled).
fn bring_up(mac: [u8; 6]) -> Result<(), InitError> {
    if BYTE_TEST.read() != 0x8765_4321 {
        return Err(InitError::NotFound);
    }
    HW_CFG.write(HW_CFG_SRST);
    let mut ready = false;
    for _ in 0..SPIN {
        if HW_CFG.read() & HW_CFG_SRST == 0 && PMT_CTRL.read() & PMT_READY != 0 {
            ready = true;
            break;
        }
    }
    if !ready {
        return Err(InitError::Timeout);
    }
    INT_EN.write(0);
    mac_write(
        MAC_ADDRL,
        u32::from_le_bytes([mac[0], mac[1], mac[2], mac[3]]),
    );
    mac_write(MAC_ADDRH, u32::from(mac[4]) | (u32::from(mac[5]) << 8));
    // Exact MAC filtering plus broadcast (PRMS off), full duplex.
    mac_write(MAC_CR, MAC_CR_FDPX | MAC_CR_TXEN | MAC_CR_RXEN);
    RX_CFG.write(0);
    // TX status FIFO may overrun: we never need the statuses.
    TX_CFG.write(TX_CFG_TX_ON | TX_CFG_TXSAO);
    Ok(())
}

impl Lan9118 {
    /// Resets and configures the chip with `mac`.
    pub fn new(mac: [u8; 6]) -> Result<(Lan9118, LinkControl), InitError> {
        bring_up(mac)?;
        Ok((
            Lan9118 {
                mac,
                rx_buf: [0; MAX_FRAME + 4],
                tx_buf: [0; MAX_FRAME],
            },
            LinkControl { mac },
        ))
    }

    /// The chip's ID_REV register (0x0118_0001 under QEMU).
    pub fn id() -> u32 {
        ID_REV.read()
    }

    /// The MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// Whether a received frame waits in the FIFO.
    pub fn rx_pending() -> bool {
        (RX_FIFO_INF.read() >> 16) & 0xff != 0
    }

    /// Takes one frame out of the RX FIFO into `rx_buf`: its length, or
    /// `None` when there is none or it was dropped.
    pub(super) fn read_frame(&mut self) -> Option<usize> {
        if !Self::rx_pending() {
            return None;
        }
        let status = RX_STATUS_FIFO.read();
        // Bits 29:16: frame length including the 4-byte CRC.
        let len = ((status >> 16) & 0x3fff) as usize;
        let words = len.div_ceil(4);
        if status & RX_STS_ERROR != 0 || len < 14 + 4 || len > self.rx_buf.len() {
            for _ in 0..words {
                let _ = RX_DATA_FIFO.read();
            }
            count(&DROPPED);
            return None;
        }
        for chunk in self.rx_buf[..words * 4].chunks_exact_mut(4) {
            chunk.copy_from_slice(&RX_DATA_FIFO.read().to_le_bytes());
        }
        count(&RX);
        Some(len - 4)
    }
}

/// Pushes one frame into the TX FIFO. Drops it (counted) while the MAC's
/// transmitter is off (radio off): QEMU's model ignores TXEN, real chips
/// do not send then either.
fn send_frame(frame: &[u8]) {
    let len = frame.len();
    if mac_read(MAC_CR) & MAC_CR_TXEN == 0 || len > MAX_FRAME {
        count(&DROPPED);
        return;
    }
    // Room for the two command words and the padded data.
    let need = 8 + len.div_ceil(4) * 4;
    let mut room = false;
    for _ in 0..SPIN {
        if (TX_FIFO_INF.read() & 0xffff) as usize >= need {
            room = true;
            break;
        }
    }
    if !room {
        count(&DROPPED);
        return;
    }
    let len32 = len as u32;
    TX_DATA_FIFO.write(TX_CMD_A_FIRST | TX_CMD_A_LAST | len32);
    TX_DATA_FIFO.write((len32 << 16) | len32);
    let mut words = frame.chunks_exact(4);
    for w in &mut words {
        TX_DATA_FIFO.write(u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut last = [0u8; 4];
        last[..rest.len()].copy_from_slice(rest);
        TX_DATA_FIFO.write(u32::from_le_bytes(last));
    }
    // Drain the status FIFO (the statuses carry nothing we act on).
    while (TX_FIFO_INF.read() >> 16) & 0xff != 0 {
        let _ = TX_STATUS_FIFO.read();
    }
    count(&TX);
}

impl LinkControl {
    /// The PHY reports a link (QEMU: the netdev's link is up, see the
    /// monitor's `set_link`).
    pub fn link_up(&self) -> bool {
        phy_read(PHY_BSR) & PHY_BSR_LINK != 0
    }

    /// The MAC's receiver and transmitter are on.
    pub fn radio_on(&self) -> bool {
        mac_read(MAC_CR) & (MAC_CR_TXEN | MAC_CR_RXEN) == (MAC_CR_TXEN | MAC_CR_RXEN)
    }

    /// Flight mode: MAC receiver and transmitter off (`false`) or on.
    pub fn set_radio(&self, on: bool) {
        let cr = mac_read(MAC_CR);
        let bits = MAC_CR_TXEN | MAC_CR_RXEN;
        mac_write(MAC_CR, if on { cr | bits } else { cr & !bits });
    }

    /// Interface reset (the tutorial's `link.shut()`): soft-resets the chip,
    /// which flushes both FIFOs, and configures it again.
    pub fn reset(&self) -> Result<(), InitError> {
        bring_up(self.mac)
    }
}

impl Device for Lan9118 {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        let n = self.read_frame()?;
        Some((RxToken(&self.rx_buf[..n]), TxToken(&mut self.tx_buf)))
    }

    fn transmit(&mut self, _: Instant) -> Option<TxToken<'_>> {
        Some(TxToken(&mut self.tx_buf))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MAX_FRAME;
        caps.max_burst_size = Some(1);
        caps
    }
}

/// A received frame, borrowed from the driver's buffer.
pub struct RxToken<'a>(&'a [u8]);

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0)
    }
}

/// Room for one frame to send.
pub struct TxToken<'a>(&'a mut [u8; MAX_FRAME]);

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let len = len.min(MAX_FRAME);
        let r = f(&mut self.0[..len]);
        send_frame(&self.0[..len]);
        r
    }
}

/// The same controller as an `embassy-net` driver (the `net-async`
/// firmware). Polled: every call that finds nothing asks to be polled again.
#[cfg(feature = "net-async")]
mod embassy {
    use core::task::Context;

    use embassy_net_driver::{Capabilities, Driver, HardwareAddress, LinkState};

    use super::{phy_read, send_frame, Lan9118, MAX_FRAME, PHY_BSR, PHY_BSR_LINK};

    impl Driver for Lan9118 {
        type RxToken<'a> = Rx<'a>;
        type TxToken<'a> = Tx<'a>;

        fn receive(&mut self, cx: &mut Context<'_>) -> Option<(Rx<'_>, Tx<'_>)> {
            let Some(n) = self.read_frame() else {
                cx.waker().wake_by_ref();
                return None;
            };
            Some((Rx(&mut self.rx_buf[..n]), Tx(&mut self.tx_buf)))
        }

        fn transmit(&mut self, _: &mut Context<'_>) -> Option<Tx<'_>> {
            Some(Tx(&mut self.tx_buf))
        }

        fn link_state(&mut self, cx: &mut Context<'_>) -> LinkState {
            cx.waker().wake_by_ref();
            if phy_read(PHY_BSR) & PHY_BSR_LINK != 0 {
                LinkState::Up
            } else {
                LinkState::Down
            }
        }

        fn capabilities(&self) -> Capabilities {
            let mut caps = Capabilities::default();
            caps.max_transmission_unit = MAX_FRAME;
            caps.max_burst_size = Some(1);
            caps
        }

        fn hardware_address(&self) -> HardwareAddress {
            HardwareAddress::Ethernet(self.mac)
        }
    }

    /// A received frame.
    pub struct Rx<'a>(&'a mut [u8]);

    impl embassy_net_driver::RxToken for Rx<'_> {
        fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, f: F) -> R {
            f(self.0)
        }
    }

    /// Room for one frame to send.
    pub struct Tx<'a>(&'a mut [u8; MAX_FRAME]);

    impl embassy_net_driver::TxToken for Tx<'_> {
        fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
            let len = len.min(MAX_FRAME);
            let r = f(&mut self.0[..len]);
            send_frame(&self.0[..len]);
            r
        }
    }
}
