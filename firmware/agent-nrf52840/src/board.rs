//! The nRF52840 as the device library sees it: embassy-time's RTC1 clock, the watchdog the
//! bootloader may have started, a system reset, the model slots in place in the mapped flash.

use embassy_nrf::peripherals::WDT;
use embassy_nrf::wdt::WatchdogHandle;
use embassy_time::Instant;
use layout::NRF52840 as LAYOUT;

pub struct Nrf;

impl device::Board for Nrf {
    fn now_ms(&self) -> u64 {
        Instant::now().as_millis()
    }

    /// RTC1 ticks at 32 768 Hz: a 31 us step, fine for latencies of milliseconds.
    fn now_ns(&self) -> u64 {
        Instant::now().as_micros() * 1_000
    }

    /// The bootloader arms the watchdog for a trial with one reload register, RR[0]; the
    /// reload value written while it is not running does nothing.
    fn feed_watchdog(&self) {
        // SAFETY: only RR[0] is written, with the reload value; no other code owns the WDT.
        unsafe { WatchdogHandle::steal::<WDT>(0) }.pet();
    }

    fn reset(&self) -> ! {
        cortex_m::peripheral::SCB::sys_reset()
    }

    fn map(&self, offset: u32, len: u32) -> Option<&[u8]> {
        let address = device::model_slot_address(&LAYOUT, offset, len)?;
        // SAFETY: a range of a model slot in the internal flash, which the CPU reads at that
        // address; the device reads it only until its next flash write (Board::map).
        Some(unsafe { core::slice::from_raw_parts(address as *const u8, len as usize) })
    }

    /// The DK has no channel besides the transport, which carries only framed messages.
    fn console(&self, _line: &[u8]) {}
}
