//! UART0 of mps2-an386 (CMSDK APB UART at 0x4000_4000), which QEMU bridges to a host character
//! device (a TCP socket in the hardware-in-the-loop suite): blocking transmit, and receive into
//! a ring buffer from the RX interrupt, so no byte is lost while the main loop is busy.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

const BASE: usize = 0x4000_4000;
const DATA: usize = BASE;
const STATE: usize = BASE + 0x4;
const CTRL: usize = BASE + 0x8;
const INTCLEAR: usize = BASE + 0xC;
const BAUDDIV: usize = BASE + 0x10;
const STATE_TX_FULL: u32 = 1;
const STATE_RX_FULL: u32 = 2;
const CTRL_TX_EN: u32 = 1;
const CTRL_RX_EN: u32 = 2;
const CTRL_RX_INT_EN: u32 = 8;
const INT_RX: u32 = 2;
/// External interrupt number of UART0's receiver on mps2-an386.
pub const RX_IRQ: u16 = 0;

/// Bytes received and not yet read: two of the largest frames.
const RX_LEN: usize = 16 * 1024;

struct Ring(UnsafeCell<[u8; RX_LEN]>);
// SAFETY: one producer (the RX interrupt) writes only at `HEAD`, one consumer (the main loop)
// reads only below it; the indices are atomics published after the byte is stored.
unsafe impl Sync for Ring {}

static RX: Ring = Ring(UnsafeCell::new([0; RX_LEN]));
static HEAD: AtomicUsize = AtomicUsize::new(0);
static TAIL: AtomicUsize = AtomicUsize::new(0);
/// Bytes dropped because the ring was full (the frame's CRC then fails; the device retries).
pub static OVERRUNS: AtomicU32 = AtomicU32::new(0);

fn read(reg: usize) -> u32 {
    // SAFETY: an MMIO register of UART0.
    unsafe { core::ptr::read_volatile(reg as *const u32) }
}

fn write(reg: usize, value: u32) {
    // SAFETY: an MMIO register of UART0.
    unsafe { core::ptr::write_volatile(reg as *mut u32, value) }
}

/// IRQ number for the NVIC.
#[derive(Debug, Clone, Copy)]
pub struct Irq(pub u16);

// SAFETY: the number is a valid external interrupt of the board.
unsafe impl cortex_m::interrupt::InterruptNumber for Irq {
    fn number(self) -> u16 {
        self.0
    }
}

/// Enables the transmitter, the receiver and its interrupt.
pub fn init() {
    write(BAUDDIV, 16); // QEMU ignores the rate but wants a divisor of at least 16
    write(CTRL, CTRL_TX_EN | CTRL_RX_EN | CTRL_RX_INT_EN);
    // SAFETY: the handler (`on_rx_interrupt`) only touches the ring's producer side.
    unsafe { cortex_m::peripheral::NVIC::unmask(Irq(RX_IRQ)) };
}

/// The RX interrupt's work: move every received byte into the ring.
pub fn on_rx_interrupt() {
    drain();
}

/// Moves every received byte into the ring (from the interrupt, or polled).
pub fn drain() {
    // One producer at a time: the interrupt cannot preempt a polled drain.
    cortex_m::interrupt::free(|_| produce());
}

fn produce() {
    while read(STATE) & STATE_RX_FULL != 0 {
        let byte = read(DATA) as u8;
        let head = HEAD.load(Ordering::Relaxed);
        if head.wrapping_sub(TAIL.load(Ordering::Acquire)) < RX_LEN {
            // SAFETY: the slot at `head` is not readable by the consumer until HEAD moves.
            unsafe { (*RX.0.get())[head % RX_LEN] = byte };
            HEAD.store(head.wrapping_add(1), Ordering::Release);
        } else {
            OVERRUNS.fetch_add(1, Ordering::Relaxed);
        }
    }
    write(INTCLEAR, INT_RX);
}

/// The next received byte, if any.
pub fn read_byte() -> Option<u8> {
    let tail = TAIL.load(Ordering::Relaxed);
    if tail == HEAD.load(Ordering::Acquire) {
        return None;
    }
    // SAFETY: the producer published this slot (HEAD is past it) and will not write it again
    // until TAIL moves past it.
    let byte = unsafe { (*RX.0.get())[tail % RX_LEN] };
    TAIL.store(tail.wrapping_add(1), Ordering::Release);
    Some(byte)
}

/// Whether received bytes wait to be read.
pub fn has_data() -> bool {
    TAIL.load(Ordering::Relaxed) != HEAD.load(Ordering::Acquire)
}

/// Sends bytes, waiting while the transmitter is full.
pub fn write_all(bytes: &[u8]) {
    for &b in bytes {
        while read(STATE) & STATE_TX_FULL != 0 {}
        write(DATA, u32::from(b));
    }
}
