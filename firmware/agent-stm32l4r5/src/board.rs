//! The STM32L4R5 as the device library sees it: embassy-time's clock, the independent watchdog
//! the bootloader may have started, a system reset, the model slots in place in the mapped flash.

use embassy_time::Instant;
use layout::STM32L4R5 as LAYOUT;

pub struct Stm32;

impl device::Board for Stm32 {
    fn now_ms(&self) -> u64 {
        Instant::now().as_millis()
    }

    fn now_ns(&self) -> u64 {
        Instant::now().as_micros() * 1_000
    }

    /// The bootloader starts the independent watchdog for a trial; it cannot be stopped.
    fn feed_watchdog(&self) {
        // SAFETY: IWDG_KR (RM0432) takes the reload key, which does nothing while it is stopped.
        unsafe { (0x4000_3000 as *mut u32).write_volatile(0xAAAA) }
    }

    fn reset(&self) -> ! {
        cortex_m::peripheral::SCB::sys_reset()
    }

    /// A torn word read here raises the ECC NMI too; its junk the model parser refuses.
    fn map(&self, offset: u32, len: u32) -> Option<&[u8]> {
        let address = device::model_slot_address(&LAYOUT, offset, len)?;
        // SAFETY: a range of a model slot in the internal flash, which the CPU reads at that
        // address; the device reads it only until its next flash write (Board::map).
        Some(unsafe { core::slice::from_raw_parts(address as *const u8, len as usize) })
    }

    /// The board has no channel besides the transport, which carries only framed messages.
    fn console(&self, _line: &[u8]) {}
}
