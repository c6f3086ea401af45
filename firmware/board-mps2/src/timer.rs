//! TIMER0 (CMSDK APB timer at 0x4000_0000, IRQ 8) as a fast wake-up while a UART answer is
//! coming: QEMU 7.2's UART never raises its RX interrupt, so without this a sleeping core would
//! see each byte only at the next SysTick (10 ms).

const BASE: usize = 0x4000_0000;
const CTRL: usize = BASE;
const RELOAD: usize = BASE + 0x8;
const INTCLEAR: usize = BASE + 0xC;
const CTRL_ENABLE: u32 = 1;
const CTRL_INT_ENABLE: u32 = 8;
/// External interrupt number of TIMER0 on mps2-an386.
pub const IRQ: u16 = 8;

fn write(reg: usize, value: u32) {
    // SAFETY: an MMIO register of TIMER0.
    unsafe { core::ptr::write_volatile(reg as *mut u32, value) }
}

/// Unmasks the timer's interrupt (it stays stopped until `start`).
pub fn init() {
    write(CTRL, 0);
    // SAFETY: the handler (`on_interrupt`) only clears the timer's interrupt.
    unsafe { cortex_m::peripheral::NVIC::unmask(crate::uart::Irq(IRQ)) };
}

/// Interrupts every `ticks` of the 25 MHz clock until `stop`.
pub fn start(ticks: u32) {
    write(RELOAD, ticks);
    write(CTRL, CTRL_ENABLE | CTRL_INT_ENABLE);
}

pub fn stop() {
    write(CTRL, 0);
    write(INTCLEAR, 1);
}

/// The interrupt's work: acknowledge it (waking the core was the point).
pub fn on_interrupt() {
    write(INTCLEAR, 1);
}
