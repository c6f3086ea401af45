//! The stored security counter: an append-only log over two sectors, safe against power loss
//! at any point and on flash that forbids programming a word twice.
//!
//! Each record is `value` (u64 LE) then `!value` (u64 LE), padded with zeros to a whole number
//! of write units; a record is valid only when the two halves agree, so a torn write is simply
//! not a record; nor is a record that cannot be read (a torn word on flash with ECC), and its
//! slot counts as used, so it is never programmed again. The counter is the largest valid value
//! in either sector. Raising it appends a
//! record in the sector that holds the current value; when that sector is full, the other one
//! is erased and receives the new value first, so one of the two always holds the maximum.

use crate::error::{Error, flash};
use embedded_storage::nor_flash::NorFlash;

/// Record bytes before padding.
const RECORD: usize = 16;
/// Largest write unit supported (records are padded to it).
const MAX_WRITE: usize = 64;

#[derive(Debug)]
pub struct SecurityCounter<F: NorFlash> {
    flash: F,
}

/// What a scan found.
#[derive(Debug, Clone, Copy)]
struct Scan {
    value: u64,
    /// Sector holding `value` (0 when nothing was ever written).
    sector: usize,
    /// First slot after the last used one in that sector, if any is left.
    next_free: Option<usize>,
}

impl<F: NorFlash> SecurityCounter<F> {
    /// Over a region of exactly two erase sectors.
    pub fn new(flash: F) -> Result<Self, Error> {
        if flash.capacity() != 2 * F::ERASE_SIZE || F::WRITE_SIZE > MAX_WRITE {
            return Err(Error::Buffer);
        }
        Ok(SecurityCounter { flash })
    }

    fn record_size() -> usize {
        RECORD.div_ceil(F::WRITE_SIZE) * F::WRITE_SIZE
    }

    fn slots() -> usize {
        F::ERASE_SIZE / Self::record_size()
    }

    /// A slot's record bytes, or `None` when the flash refuses the read (an ECC error).
    fn read_slot(&mut self, sector: usize, slot: usize) -> Option<[u8; RECORD]> {
        let mut r = [0u8; RECORD];
        let at = sector * F::ERASE_SIZE + slot * Self::record_size();
        self.flash.read(at as u32, &mut r).ok()?;
        Some(r)
    }

    fn scan(&mut self) -> Result<Scan, Error> {
        let mut best = Scan {
            value: 0,
            sector: 0,
            next_free: None,
        };
        let mut last_used = [None::<usize>; 2];
        for (sector, last) in last_used.iter_mut().enumerate() {
            for slot in 0..Self::slots() {
                let Some(r) = self.read_slot(sector, slot) else {
                    // Torn, or the power is gone: used, never a record. (Without power the
                    // next write fails too, so nothing is decided on this scan.)
                    *last = Some(slot);
                    continue;
                };
                if r.iter().all(|&b| b == 0xFF) {
                    continue;
                }
                *last = Some(slot);
                let (v, c) = r.split_at(8);
                let value = u64::from_le_bytes(v.try_into().map_err(|_| Error::Buffer)?);
                let check = u64::from_le_bytes(c.try_into().map_err(|_| Error::Buffer)?);
                if value == !check && value >= best.value {
                    best.value = value;
                    best.sector = sector;
                }
            }
        }
        let next = last_used[best.sector].map_or(0, |s| s + 1);
        best.next_free = (next < Self::slots()).then_some(next);
        Ok(best)
    }

    /// The stored counter (0 when none was ever stored).
    pub fn get(&mut self) -> Result<u64, Error> {
        Ok(self.scan()?.value)
    }

    /// Raises the stored counter to `value` (no-op when it is not higher).
    pub fn raise(&mut self, value: u64) -> Result<(), Error> {
        let scan = self.scan()?;
        if value <= scan.value {
            return Ok(());
        }
        let (sector, slot) = match scan.next_free {
            Some(slot) => (scan.sector, slot),
            None => {
                let other = 1 - scan.sector;
                let from = (other * F::ERASE_SIZE) as u32;
                self.flash
                    .erase(from, from + F::ERASE_SIZE as u32)
                    .map_err(flash)?;
                (other, 0)
            }
        };
        let mut record = [0u8; MAX_WRITE];
        record[..8].copy_from_slice(&value.to_le_bytes());
        record[8..16].copy_from_slice(&(!value).to_le_bytes());
        let at = sector * F::ERASE_SIZE + slot * Self::record_size();
        self.flash
            .write(at as u32, &record[..Self::record_size()])
            .map_err(flash)
    }
}
