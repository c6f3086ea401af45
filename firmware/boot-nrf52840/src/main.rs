//! The bootloader of the nRF52840: the bootloader core over the NVMC flash, the hardware
//! watchdog armed for trial boots, and a jump into the active slot (execute in place).
#![no_std]
#![no_main]

use bootloader::Outcome;
use core::cell::RefCell;
use cortex_m_rt::entry;
use embassy_nrf::nvmc::Nvmc;
use embassy_nrf::wdt::{self, Watchdog};
use embassy_sync::blocking_mutex::Mutex;
use layout::NRF52840 as LAYOUT;

/// The trust root baked in at build time, verified by the build script (bootloader-build.rs).
mod baked {
    include!(concat!(env!("OUT_DIR"), "/root.rs"));
}
/// The watchdog runs from the 32 768 Hz clock: a trial image has 4 s to confirm.
const TRIAL_WATCHDOG_TICKS: u32 = 4 * 32_768;

#[entry]
fn main() -> ! {
    let p = embassy_nrf::init(Default::default());
    let flash = Mutex::new(RefCell::new(Nvmc::new(p.NVMC)));
    let Some(root) = baked::trust_root() else {
        halt()
    };
    let mut page = [0u8; 4096];
    let Ok(decision) = bootloader::boot(&flash, &LAYOUT, &root, &mut page) else {
        halt()
    };
    if decision.outcome == Outcome::Trial {
        let mut config = wdt::Config::default();
        config.timeout_ticks = TRIAL_WATCHDOG_TICKS;
        // One reload register, which the application feeds (the nRF watchdog cannot be stopped).
        // Already running (a previous configuration survives a soft reset): let it expire.
        if Watchdog::try_new::<_, 1>(p.WDT, config).is_err() {
            halt();
        }
    }
    let start = decision.region.offset + LAYOUT.image_header_size;
    // SAFETY: the image at `start` is a verified vector table and code, executed in place.
    unsafe {
        cortex_m::Peripherals::steal().SCB.vtor.write(start);
        cortex_m::asm::bootload(start as *const u32)
    }
}

fn halt() -> ! {
    loop {
        cortex_m::asm::wfi();
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    halt()
}
