//! The emulated board as the device library sees it: SysTick's clock, the CMSDK watchdog,
//! the model slots mapped from the flash's RAM view, semihosting stdout as the console.

use board_mps2::{SemihostingFlash, clock, watchdog};
use core::cell::RefCell;
use embassy_sync::blocking_mutex::Mutex;
use embassy_sync::blocking_mutex::raw::NoopRawMutex;

pub type Flash = Mutex<NoopRawMutex, RefCell<SemihostingFlash>>;

#[derive(Clone, Copy)]
pub struct Mps2<'f> {
    pub flash: &'f Flash,
}

impl device::Board for Mps2<'_> {
    fn now_ms(&self) -> u64 {
        clock::now_ms()
    }

    /// The `fault-slow` firmware adds 10 ms to every reading (every sample is 20 ms slower).
    fn now_ns(&self) -> u64 {
        #[cfg(feature = "fault-slow")]
        {
            let end = clock::ticks() + 10 * clock::TICKS_PER_MS;
            while clock::ticks() < end {}
        }
        clock::now_ns()
    }

    fn feed_watchdog(&self) {
        watchdog::feed();
    }

    fn reset(&self) -> ! {
        board_mps2::reset()
    }

    fn map(&self, offset: u32, len: u32) -> Option<&[u8]> {
        self.flash.lock(|f| f.borrow().mapped(offset, len))
    }

    fn console(&self, line: &[u8]) {
        board_mps2::write_out(line);
    }
}
