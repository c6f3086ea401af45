//! The bootloader of the STM32L4R5 (NUCLEO-L4R5ZI): the bootloader core over the internal
//! flash (dual-bank, 4 KiB pages, 64-bit programming with ECC), the independent watchdog armed
//! for trial boots, and a jump into the active slot (execute in place).
//!
//! A word torn by a power cut reads back with an uncorrectable ECC error: the flash sets ECCD
//! in FLASH_ECCR and raises an NMI. The NMI handler clears the flag and notes it; the flash
//! wrapper turns a noted error during a read into a read error, which the core treats as a
//! torn record or an erased word, never as data.
#![no_std]
#![no_main]

use bootloader::Outcome;
use core::cell::RefCell;
use core::sync::atomic::{AtomicBool, Ordering};
use cortex_m_rt::{entry, exception};
use embassy_stm32::flash::{Blocking, Flash};
use embassy_stm32::wdg::IndependentWatchdog;
use embassy_sync::blocking_mutex::Mutex;
use embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};
use layout::STM32L4R5 as LAYOUT;

/// The trust root baked in at build time, verified by the build script (bootloader-build.rs).
mod baked {
    include!(concat!(env!("OUT_DIR"), "/root.rs"));
}
/// A trial image has 4 s to confirm before the watchdog resets the board.
const TRIAL_WATCHDOG_US: u32 = 4_000_000;
/// FLASH_ECCR (RM0432): ECCD, an uncorrectable error, is bit 31, cleared by writing 1.
const FLASH_ECCR: *mut u32 = 0x4002_2018 as *mut u32;
const ECCD: u32 = 1 << 31;

/// Set by the NMI handler when a flash read met an uncorrectable ECC error.
static ECC_ERROR: AtomicBool = AtomicBool::new(false);

#[derive(Debug, Clone, Copy)]
enum FlashError {
    /// A torn word: the read is refused.
    Ecc,
    Driver(NorFlashErrorKind),
}

impl NorFlashError for FlashError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            FlashError::Ecc => NorFlashErrorKind::Other,
            FlashError::Driver(kind) => *kind,
        }
    }
}

/// embassy-stm32's blocking flash, with ECC errors as read errors and the dual-bank page.
struct EccFlash<'d>(Flash<'d, Blocking>);

impl ErrorType for EccFlash<'_> {
    type Error = FlashError;
}

impl ReadNorFlash for EccFlash<'_> {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), FlashError> {
        ECC_ERROR.store(false, Ordering::SeqCst);
        self.0
            .blocking_read(offset, bytes)
            .map_err(|e| FlashError::Driver(e.kind()))?;
        // The NMI is taken at the faulting load, before the read returns.
        if ECC_ERROR.swap(false, Ordering::SeqCst) {
            return Err(FlashError::Ecc);
        }
        Ok(())
    }

    fn capacity(&self) -> usize {
        LAYOUT.flash_size as usize
    }
}

impl NorFlash for EccFlash<'_> {
    const WRITE_SIZE: usize = 8;
    const ERASE_SIZE: usize = 4096;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), FlashError> {
        self.0
            .blocking_erase(from, to)
            .map_err(|e| FlashError::Driver(e.kind()))
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), FlashError> {
        self.0
            .blocking_write(offset, bytes)
            .map_err(|e| FlashError::Driver(e.kind()))
    }
}

const _: () = assert!(LAYOUT.erase_size as usize == EccFlash::ERASE_SIZE);
const _: () = assert!(LAYOUT.write_size as usize == EccFlash::WRITE_SIZE);

// SAFETY (of the handler): it touches only FLASH_ECCR and an atomic, so it may preempt anything.
#[exception]
unsafe fn NonMaskableInt() {
    // SAFETY: FLASH_ECCR is the flash interface's ECC register; writing ECCD clears only it.
    unsafe {
        if FLASH_ECCR.read_volatile() & ECCD != 0 {
            FLASH_ECCR.write_volatile(ECCD);
            ECC_ERROR.store(true, Ordering::SeqCst);
        }
    }
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
