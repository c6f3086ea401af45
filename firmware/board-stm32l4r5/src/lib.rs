//! The STM32L4R5's internal flash as the bootloader and the agent use it (dual-bank, 4 KiB
//! pages, 64-bit programming with ECC): embassy-stm32's blocking driver, with a word torn by a
//! power cut read as an error, never as data.
//!
//! A torn word reads back with an uncorrectable ECC error: the flash sets ECCD in FLASH_ECCR
//! and raises an NMI. Each binary's NMI handler calls `on_nmi`, which clears the flag and notes
//! it; `EccFlash` turns a noted error during a read into a read error, which the bootloader and
//! the agent treat as a torn record or an erased word.
#![no_std]

use core::sync::atomic::{AtomicBool, Ordering};
use embassy_stm32::flash::{Blocking, Flash};
use embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};
use layout::STM32L4R5 as LAYOUT;

/// FLASH_ECCR (RM0432): ECCD, an uncorrectable error, is bit 31, cleared by writing 1.
const FLASH_ECCR: *mut u32 = 0x4002_2018 as *mut u32;
const ECCD: u32 = 1 << 31;

/// Set by the NMI handler when a flash read met an uncorrectable ECC error.
static ECC_ERROR: AtomicBool = AtomicBool::new(false);

/// The NMI handler's work (`#[exception] fn NonMaskableInt` in each binary calls it). It
/// touches only FLASH_ECCR and an atomic, so it may preempt anything.
#[inline]
pub fn on_nmi() {
    // SAFETY: FLASH_ECCR is the flash interface's ECC register; writing ECCD clears only it.
    unsafe {
        if FLASH_ECCR.read_volatile() & ECCD != 0 {
            FLASH_ECCR.write_volatile(ECCD);
            ECC_ERROR.store(true, Ordering::SeqCst);
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub enum FlashError {
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
pub struct EccFlash<'d>(pub Flash<'d, Blocking>);

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
