//! The bootloader of the STM32L4R5 (NUCLEO-L4R5ZI): the bootloader core over the internal
//! flash (dual-bank, 4 KiB pages, 64-bit programming with ECC), the independent watchdog armed
//! for trial boots, and a jump into the active slot (execute in place).
//!
//! A word torn by a power cut reads back with an uncorrectable ECC error and an NMI: the NMI
//! handler and the flash wrapper that turn it into a read error are board-stm32l4r5's, shared
//! with the agent.
#![no_std]
#![no_main]

use board_stm32l4r5::EccFlash;
use bootloader::Outcome;
use core::cell::RefCell;
use cortex_m_rt::{entry, exception};
use embassy_stm32::flash::Flash;
use embassy_stm32::wdg::IndependentWatchdog;
use embassy_sync::blocking_mutex::Mutex;
use layout::STM32L4R5 as LAYOUT;

/// The trust root baked in at build time, verified by the build script (bootloader-build.rs).
mod baked {
    include!(concat!(env!("OUT_DIR"), "/root.rs"));
}
/// A trial image has 4 s to confirm before the watchdog resets the board.
const TRIAL_WATCHDOG_US: u32 = 4_000_000;

// SAFETY (of the handler): it touches only FLASH_ECCR and an atomic, so it may preempt anything.
#[exception]
unsafe fn NonMaskableInt() {
    board_stm32l4r5::on_nmi();
}

#[entry]
fn main() -> ! {
    // No clock setup: the flash and the watchdog run on the reset clocks (MSI 4 MHz, LSI), and
    // leaving RCC alone hands the application the chip as it came out of reset.
    // SAFETY: nothing else in the bootloader takes the peripherals.
    let p = unsafe { embassy_stm32::Peripherals::steal() };
    let flash = Mutex::new(RefCell::new(EccFlash(Flash::new_blocking(p.FLASH))));
    let Some(root) = baked::trust_root() else {
        halt()
    };
    let mut page = [0u8; 4096];
    let Ok(decision) = bootloader::boot(&flash, &LAYOUT, &root, &mut page) else {
        halt()
    };
    if decision.outcome == Outcome::Trial {
        // The application feeds it; it cannot be stopped once started.
        let mut wdg = IndependentWatchdog::new(p.IWDG, TRIAL_WATCHDOG_US);
        wdg.unleash();
    }
    let start = 0x0800_0000 + decision.region.offset + LAYOUT.image_header_size;
    // SAFETY: the image at `start` is a verified vector table and code, executed in place.
    unsafe {
        cortex_m::Peripherals::steal().SCB.vtor.write(start);
        cortex_m::asm::bootload(start as *const u32)
    }
}

/// The 95 external interrupts of the STM32L4R5 (RM0432), all unused by the bootloader, which
/// enables none (cortex-m-rt's default table would reserve 240).
#[unsafe(link_section = ".vector_table.interrupts")]
#[unsafe(no_mangle)]
static __INTERRUPTS: [unsafe extern "C" fn(); 95] = [default_irq; 95];

unsafe extern "C" fn default_irq() {
    halt()
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
