//! The boot state (format 2): an append-only log of write-once records, safe on flash that
//! forbids programming a word twice and reads a torn word as an error.
//!
//! The state region is two halves, each a whole number of erase sectors. A half starts with a
//! `Gen` record; the valid half with the highest generation is the log. Records follow it, one
//! per unit of `max(8, WRITE_SIZE)` bytes: `body` (u32 LE), `!body` (u32 LE), zeros to the end
//! of the unit. The body's top byte is the record's tag (never 0 or 0xFF), so a record torn
//! anywhere fails its check. A unit that does not check (torn, garbage, or unreadable: an ECC
//! error) is skipped and never programmed again; the log ends at the first erased unit. The
//! state is the last valid record. When a half fills up, the other one is erased and starts the
//! next generation (only when nothing is in progress: a new generation starts out confirmed).

use crate::error::{Error, flash};
use embedded_storage::nor_flash::NorFlash;

/// Record bytes before padding.
const RECORD: usize = 8;
/// Largest unit supported.
const MAX_UNIT: usize = 64;

const GEN: u8 = 0xB0;
const REQUEST: u8 = 0xB1;
const SWAP: u8 = 0xB2;
const REVERT: u8 = 0xB3;
const REJECT: u8 = 0xB4;
const CONFIRM: u8 = 0xB5;

/// Largest page count a step record holds (12 bits each for step and page count).
pub const MAX_PAGES: u32 = 2047;

/// Where an update stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Nothing in progress: the active image is confirmed.
    Confirmed,
    /// The application asked for a swap at the next boot.
    Requested,
    /// A swap of `pages` pages is under way; `done` of its `2 x pages` steps are complete.
    Swapping { pages: u32, done: u32 },
    /// The swap is complete; the new image has not confirmed.
    Swapped { pages: u32 },
    /// A revert of the swap is under way.
    Reverting { pages: u32, done: u32 },
    /// The previous image is back (reverted, or the update was refused before any swap),
    /// not yet confirmed again.
    Reverted,
}

/// The two halves of the state region and the log in force.
#[derive(Debug)]
pub struct BootState<F: NorFlash> {
    flash: F,
    half: u32,
    /// Which half holds the log (None: neither has a valid header).
    current: Option<usize>,
    generation: u32,
    /// Next erased unit of the current half.
    next: u32,
    phase: Phase,
}

fn unit<F: NorFlash>() -> u32 {
    (RECORD.div_ceil(F::WRITE_SIZE) * F::WRITE_SIZE) as u32
}

fn body_of(raw: &[u8]) -> Option<u32> {
    let body = u32::from_le_bytes(raw.get(..4)?.try_into().ok()?);
    let check = u32::from_le_bytes(raw.get(4..8)?.try_into().ok()?);
    let tag = (body >> 24) as u8;
    (body == !check && (GEN..=CONFIRM).contains(&tag) && raw.get(RECORD..)?.iter().all(|&b| b == 0))
        .then_some(body)
}

/// A step record's body: tag, step index, page count.
fn step(tag: u8, step: u32, pages: u32) -> u32 {
    (u32::from(tag) << 24) | ((step & 0xFFF) << 12) | (pages & 0xFFF)
}

/// What the log says after `body`, given the state before it.
fn apply(phase: Phase, body: u32) -> Phase {
    let (tag, index, pages) = ((body >> 24) as u8, (body >> 12) & 0xFFF, body & 0xFFF);
    let done = index + 1;
    match tag {
        REQUEST => Phase::Requested,
        SWAP if pages > 0 && done < 2 * pages => Phase::Swapping { pages, done },
        SWAP if pages > 0 && done == 2 * pages => Phase::Swapped { pages },
        REVERT if pages > 0 && done < 2 * pages => Phase::Reverting { pages, done },
        REVERT | REJECT => Phase::Reverted,
        CONFIRM => Phase::Confirmed,
        // A record that makes no sense changes nothing.
        _ => phase,
    }
}

impl<F: NorFlash> BootState<F> {
    /// Reads the state of a region of two equal halves of whole sectors.
    pub fn new(flash: F) -> Result<Self, Error> {
        let size = flash.capacity() as u32;
        let half = size / 2;
        if F::WRITE_SIZE > MAX_UNIT
            || half == 0
            || half % F::ERASE_SIZE as u32 != 0
            || 2 * half != size
        {
            return Err(Error::Buffer);
        }
        let mut s = BootState {
            flash,
            half,
            current: None,
            generation: 0,
            next: 0,
            phase: Phase::Confirmed,
        };
        for h in 0..2 {
            if let Some(body) = s.read_unit(h, 0)
                && (body >> 24) as u8 == GEN
            {
                let g = body & 0xFF_FFFF;
                if s.current.is_none() || g > s.generation {
                    s.current = Some(h);
                    s.generation = g;
                }
            }
        }
        if let Some(h) = s.current {
            let units = half / unit::<F>();
            let mut at = 1;
            while at < units {
                let n = unit::<F>() as usize;
                match s.read_raw(h, at) {
                    Some(raw) if raw.iter().all(|&b| b == 0xFF) => break,
                    Some(raw) => {
                        if let Some(body) = raw.get(..n).and_then(body_of) {
                            s.phase = apply(s.phase, body);
                        }
                    }
                    // Unreadable: torn, used, never trusted.
                    None => {}
                }
                at += 1;
            }
            s.next = at;
        }
        Ok(s)
    }

    fn read_raw(&mut self, half: usize, at: u32) -> Option<[u8; MAX_UNIT]> {
        let mut raw = [0xFFu8; MAX_UNIT];
        let n = unit::<F>() as usize;
        let offset = half as u32 * self.half + at * unit::<F>();
        self.flash.read(offset, raw.get_mut(..n)?).ok()?;
        Some(raw)
    }

    fn read_unit(&mut self, half: usize, at: u32) -> Option<u32> {
        let raw = self.read_raw(half, at)?;
        body_of(raw.get(..unit::<F>() as usize)?)
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Units left in the current half.
    fn room(&self) -> u32 {
        match self.current {
            Some(_) => (self.half / unit::<F>()).saturating_sub(self.next),
            None => 0,
        }
    }

    fn write_unit(&mut self, half: usize, at: u32, body: u32) -> Result<(), Error> {
        let mut raw = [0u8; MAX_UNIT];
        raw[..4].copy_from_slice(&body.to_le_bytes());
        raw[4..8].copy_from_slice(&(!body).to_le_bytes());
        let n = unit::<F>() as usize;
        let offset = half as u32 * self.half + at * unit::<F>();
        self.flash.write(offset, &raw[..n]).map_err(flash)
    }

    /// Starts the next generation in the other half (erased first), empty: confirmed.
    fn new_generation(&mut self) -> Result<(), Error> {
        let other = match self.current {
            Some(h) => 1 - h,
            None => 0,
        };
        let from = other as u32 * self.half;
        self.flash.erase(from, from + self.half).map_err(flash)?;
        let generation = (self.generation + 1) & 0xFF_FFFF;
        self.write_unit(other, 0, (u32::from(GEN) << 24) | generation)?;
        self.current = Some(other);
        self.generation = generation;
        self.next = 1;
        self.phase = Phase::Confirmed;
        Ok(())
    }

    fn append(&mut self, body: u32) -> Result<(), Error> {
        let Some(h) = self.current else {
            return Err(Error::State);
        };
        if self.room() == 0 {
            return Err(Error::State);
        }
        let at = self.next;
        // Used from now on, torn or not: never programmed twice.
        self.next += 1;
        self.write_unit(h, at, body)?;
        self.phase = apply(self.phase, body);
        Ok(())
    }

    /// The application: swap in the DFU slot's image at the next boot. `slot_pages` (the
    /// active slot's pages) sizes the room a whole update and its revert need in the log.
    pub fn mark_updated(&mut self, slot_pages: u32) -> Result<(), Error> {
        match self.phase {
            Phase::Requested => return Ok(()),
            Phase::Confirmed | Phase::Reverted => {}
            // A trial or a swap in progress must end first.
            _ => return Err(Error::State),
        }
        if self.room() < 4 * slot_pages + 4 {
            // Nothing is in progress: the fresh generation is confirmed, as the state was.
            self.new_generation()?;
        }
        self.append(u32::from(REQUEST) << 24)
    }

    /// The application: the running image is good (after a trial or a revert).
    pub fn mark_booted(&mut self) -> Result<(), Error> {
        match self.phase {
            Phase::Swapped { .. } | Phase::Reverted => self.append(u32::from(CONFIRM) << 24),
            // Confirmed already, or an update waits for the next boot: nothing to record.
            _ => Ok(()),
        }
    }

    /// The bootloader: step `index` of a swap of `pages` pages is complete.
    pub(crate) fn swap_step(&mut self, index: u32, pages: u32) -> Result<(), Error> {
        self.append(step(SWAP, index, pages))
    }

    /// The bootloader: step `index` of a revert of `pages` pages is complete.
    pub(crate) fn revert_step(&mut self, index: u32, pages: u32) -> Result<(), Error> {
        self.append(step(REVERT, index, pages))
    }

    /// The bootloader: the requested image is refused before any swap.
    pub(crate) fn reject(&mut self) -> Result<(), Error> {
        self.append(u32::from(REJECT) << 24)
    }
}
