//! Time on the emulated board: SysTick counts the 25 MHz system clock (under QEMU's
//! `-icount shift=4` a deterministic function of the instructions run), extended to 64 bits by
//! its wrap interrupt, which the application forwards to `on_systick`.

use core::sync::atomic::{AtomicU32, Ordering};
use cortex_m::peripheral::SYST;
use cortex_m::peripheral::syst::SystClkSource;

/// Ticks per wrap: 10 ms, so an idle board wakes from `wfi` 100 times a second.
const RELOAD: u32 = 250_000;
pub const TICKS_PER_MS: u64 = 25_000;
const NS_PER_TICK: u64 = 40;

static WRAPS: AtomicU32 = AtomicU32::new(0);

/// Starts SysTick with its interrupt.
pub fn start(mut syst: SYST) {
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(RELOAD - 1);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
}

/// The SysTick exception's work.
pub fn on_systick() {
    WRAPS.fetch_add(1, Ordering::SeqCst);
}

/// Ticks since `start`.
pub fn ticks() -> u64 {
    loop {
        let before = WRAPS.load(Ordering::SeqCst);
        let value = SYST::get_current();
        if WRAPS.load(Ordering::SeqCst) == before {
            return u64::from(before) * u64::from(RELOAD) + u64::from(RELOAD - 1 - value);
        }
    }
}

pub fn now_ns() -> u64 {
    ticks() * NS_PER_TICK
}

pub fn now_ms() -> u64 {
    ticks() / TICKS_PER_MS
}
