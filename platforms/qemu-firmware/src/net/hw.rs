//! The firmware's only `unsafe` code: volatile access to memory-mapped
//! device registers, the semihosting call that reads the command line, and
//! the NMI handler (cortex-m-rt requires it to be an `unsafe fn`).
//!
//! Everything else in the crate is safe code on top of [`Reg`]. A `Reg` can
//! only be made from the constants below (private constructor), so safe
//! code cannot point one at arbitrary memory.
#![allow(unsafe_code)]

/// One 32-bit device register.
#[derive(Clone, Copy)]
pub struct Reg(usize);

/// Base of the LAN9118 register block on mps2-an385/an386 (QEMU
/// `hw/arm/mps2.c`, AN385 memory map).
const LAN9118_BASE: usize = 0x4020_0000;
/// Size of the LAN9118 register window.
const LAN9118_SIZE: usize = 0x100;
/// Base of CMSDK APB timer 0 on mps2-an385/an386.
const TIMER0_BASE: usize = 0x4000_0000;
/// Size of the timer's register window.
const TIMER0_SIZE: usize = 0x1000;
/// Base of the CMSDK APB watchdog on mps2-an385/an386.
const WATCHDOG_BASE: usize = 0x4000_8000;
/// Size of the watchdog's register window.
const WATCHDOG_SIZE: usize = 0x1000;

impl Reg {
    /// The LAN9118 register at `offset` (word aligned, inside the block).
    pub const fn lan9118(offset: usize) -> Reg {
        assert!(offset < LAN9118_SIZE && offset & 3 == 0);
        Reg(LAN9118_BASE + offset)
    }

    /// The timer-0 register at `offset` (word aligned, inside the block).
    pub const fn timer0(offset: usize) -> Reg {
        assert!(offset < TIMER0_SIZE && offset & 3 == 0);
        Reg(TIMER0_BASE + offset)
    }

    /// The watchdog register at `offset` (word aligned, inside the block).
    pub const fn watchdog(offset: usize) -> Reg {
        assert!(offset < WATCHDOG_SIZE && offset & 3 == 0);
        Reg(WATCHDOG_BASE + offset)
    }

    /// Reads the register.
    #[inline(always)]
    pub fn read(self) -> u32 {
        // SAFETY: `self.0` is a word-aligned address inside a device's
        // register window on this board (the constructors check it at
        // compile time); the device is memory-mapped there, a volatile
        // 32-bit read is how its registers are accessed, and nothing in
        // Rust aliases that memory.
        unsafe { core::ptr::read_volatile(self.0 as *const u32) }
    }

    /// Writes the register.
    #[inline(always)]
    pub fn write(self, value: u32) {
        // SAFETY: as in `read`; a volatile write to a device register has
        // no effect on memory Rust knows about.
        unsafe { core::ptr::write_volatile(self.0 as *mut u32, value) }
    }
}

/// The command line given to QEMU (`-semihosting-config arg=...`), copied
/// into `buf`; its length, or 0 when there is none.
pub fn command_line(buf: &mut [u8]) -> usize {
    // SYS_GET_CMDLINE takes a block {buffer, length} and writes the
    // length back.
    let mut block = [buf.as_mut_ptr() as usize, buf.len().saturating_sub(1)];
    // SAFETY: the semihosting call writes at most `block[1]` bytes (one
    // less than the buffer, for its NUL) into `buf`, which is live and
    // exclusively borrowed for the call, and updates `block` in place.
    let failed = unsafe {
        cortex_m_semihosting::syscall1(
            cortex_m_semihosting::nr::GET_CMDLINE,
            block.as_mut_ptr() as usize,
        )
    };
    if failed != 0 {
        return 0;
    }
    block[1].min(buf.len())
}

/// The watchdog's first timeout raises an NMI on this board; the second
/// resets the machine. Say so before it does.
#[cortex_m_rt::exception]
unsafe fn NonMaskableInt() {
    cortex_m_semihosting::hprintln!("watchdog: bark (the main loop stopped feeding it)");
}

/// The pattern [`paint_stack`] writes.
const PAINT: u32 = 0x5afe_57ac;
/// How much of the stack below the painter is measured.
const PAINT_WINDOW: usize = 64 * 1024;

/// Where painting started and ended (0: not painted).
static PAINTED: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// Fills up to 64 KiB of unused stack below the caller with a pattern, so
/// that [`stack_peak`] can later find how deep the stack went. Call first
/// thing, before any interrupt is enabled.
pub fn paint_stack() {
    let sp = cortex_m::register::msp::read() as usize;
    // Leave the caller's own frame and a margin alone.
    let top = (sp - 256) & !3;
    let bottom = top
        .saturating_sub(PAINT_WINDOW)
        .max(cortex_m_rt::heap_start() as usize);
    let mut a = bottom;
    while a < top {
        // SAFETY: [bottom, top) lies between the end of the statics
        // (`heap_start`) and 256 bytes below the current stack pointer:
        // RAM that no Rust object occupies yet (the stack grows into it
        // later) and, with no interrupt enabled, nothing else writes.
        unsafe { core::ptr::write_volatile(a as *mut u32, PAINT) };
        a += 4;
    }
    PAINTED.store(bottom, core::sync::atomic::Ordering::Relaxed);
}

/// The deepest the stack has gone since [`paint_stack`], in bytes from the
/// top of RAM (the stack's start), or `None` when not painted. Saturates at
/// the painted window (then the true peak is larger).
pub fn stack_peak() -> Option<usize> {
    let bottom = PAINTED.load(core::sync::atomic::Ordering::Relaxed);
    if bottom == 0 {
        return None;
    }
    let mut a = bottom;
    loop {
        // SAFETY: `a` is word aligned and inside the painted window, which
        // is RAM below the live stack (or the stack itself once it grew
        // there); a volatile read of it has no side effect and its value is
        // only compared.
        let v = unsafe { core::ptr::read_volatile(a as *const u32) };
        if v != PAINT {
            break;
        }
        a += 4;
    }
    // cortex-m-rt puts the initial stack pointer at the top of RAM.
    Some(0x2000_0000 + 4 * 1024 * 1024 - a)
}

/// embassy-time's driver for the `net-async` firmware (embassy-net needs
/// one): time from `clock` (1 MHz ticks); every wake-up request is granted
/// at once, since the firmware's executor polls on every 1 ms tick anyway.
/// Here because the driver is registered through `#[no_mangle]` symbols.
#[cfg(feature = "net-async")]
mod time_driver {
    use core::task::Waker;

    struct Ticks;

    impl embassy_time_driver::Driver for Ticks {
        fn now(&self) -> u64 {
            super::super::clock::micros()
        }
        fn schedule_wake(&self, _at: u64, waker: &Waker) {
            waker.wake_by_ref();
        }
    }

    embassy_time_driver::time_driver_impl!(static DRIVER: Ticks = Ticks);
}
