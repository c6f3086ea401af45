//! The boot decision: the project's own swap or revert (`state`, `swap`), then verification,
//! downgrade protection and the choice of what to run.

use crate::counter::SecurityCounter;
use crate::error::Error;
use crate::state::{BootState, Phase};
use crate::swap::{Direction, run};
use crate::verify::{ImageInfo, check_header, verify_slot};
use artifact::TrustRoot;
use core::cell::RefCell;
use embassy_embedded_hal::flash::partition::BlockingPartition;
use embassy_sync::blocking_mutex::Mutex;
use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use embedded_storage::nor_flash::NorFlash;
use layout::{Layout, Region};

/// The whole flash, shared by the partitions.
pub type SharedFlash<F> = Mutex<NoopRawMutex, RefCell<F>>;

/// Which slot holds the image to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Active,
    /// Only on RAM-load boards: the active slot is unusable and the DFU slot's image is valid.
    Dfu,
}

/// Why this image runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A confirmed image.
    Confirmed,
    /// A new image on trial: arm the watchdog; it must confirm (mark booted) or it is reverted
    /// at the next reset (a boot budget of one).
    Trial,
    /// The bootloader reverted to the previous image (the trial was not confirmed, or the new
    /// image failed verification); the application reports it, then confirms.
    Reverted,
    /// The active slot is unusable; the DFU slot's valid image runs from RAM.
    Fallback,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub slot: Slot,
    /// Where the verified header and image start in flash (what a RAM-load board copies).
    pub region: Region,
    pub outcome: Outcome,
    pub image: ImageInfo,
}

pub(crate) fn part<F: NorFlash>(
    flash: &SharedFlash<F>,
    r: Region,
) -> BlockingPartition<'_, NoopRawMutex, F> {
    BlockingPartition::new(flash, r.offset, r.size)
}

/// Pages a slot's header and image occupy.
fn pages_of(layout: &Layout, image: &ImageInfo) -> u32 {
    (layout.image_header_size + image.size).div_ceil(layout.erase_size)
}

/// Runs the boot sequence. `page_buf` divides an erase page into whole write units and holds
/// at least the image header (one page: one write per page copied).
///
/// Nothing here panics on bad flash content: the layout is checked at compile time, the buffer
/// here, and every record and header read is checked before use.
pub fn boot<F: NorFlash>(
    flash: &SharedFlash<F>,
    layout: &Layout,
    root: &TrustRoot,
    page_buf: &mut [u8],
) -> Result<Decision, Error> {
    let page = layout.erase_size as usize;
    if page_buf.is_empty()
        || page % page_buf.len() != 0
        || page_buf.len() < layout.image_header_size as usize
        || page_buf.len() % F::WRITE_SIZE != 0
        || !layout.is_valid()
    {
        return Err(Error::Buffer);
    }
    let mut state = BootState::new(part(flash, layout.state))?;
    let mut counter = SecurityCounter::new(part(flash, layout.security_counter))?;
    let floor = counter.get()?;
    let check = |slot: Region, buf: &mut [u8]| -> Result<ImageInfo, Error> {
        let info = verify_slot(&mut part(flash, slot), layout, root, buf)?;
        if info.security_counter < floor {
            return Err(Error::Downgrade);
        }
        Ok(info)
    };
    // A page count from the log is used only if it fits the slots (a record is checked, but
    // the count is what decides which pages are moved).
    let fits = |pages: u32| pages > 0 && pages <= layout.active_pages();

    match state.phase() {
        Phase::Requested => match check(layout.dfu, page_buf) {
            Ok(new) => {
                // Both headers are intact until the first step completes, so a restart from
                // here computes the same count; from then on the step records carry it.
                let old = check_header(&mut part(flash, layout.active), layout, root, page_buf)
                    .map_or(0, |old| pages_of(layout, &old));
                let pages = pages_of(layout, &new)
                    .max(old)
                    .clamp(1, layout.active_pages());
                run(
                    flash,
                    layout,
                    &mut state,
                    Direction::Swap,
                    pages,
                    0,
                    page_buf,
                )?;
            }
            Err(Error::Flash(kind)) => return Err(Error::Flash(kind)),
            // Refused before anything moved: the previous image stays.
            Err(_) => state.reject()?,
        },
        Phase::Swapping { pages, done } if fits(pages) => run(
            flash,
            layout,
            &mut state,
            Direction::Swap,
            pages,
            done,
            page_buf,
        )?,
        // A trial that reaches a second boot unconfirmed goes back (a boot budget of one).
        Phase::Swapped { pages } if fits(pages) => run(
            flash,
            layout,
            &mut state,
            Direction::Revert,
            pages,
            0,
            page_buf,
        )?,
        Phase::Reverting { pages, done } if fits(pages) => run(
            flash,
            layout,
            &mut state,
            Direction::Revert,
            pages,
            done,
            page_buf,
        )?,
        _ => {}
    }
    let just_swapped = matches!(state.phase(), Phase::Swapped { .. });

    match check(layout.active, page_buf) {
        Ok(image) => {
            let outcome = match state.phase() {
                Phase::Swapped { .. } => Outcome::Trial,
                Phase::Reverted => Outcome::Reverted,
                _ => {
                    // A confirmed image: from now on nothing older may boot.
                    counter.raise(image.security_counter)?;
                    Outcome::Confirmed
                }
            };
            Ok(Decision {
                slot: Slot::Active,
                region: layout.active,
                outcome,
                image,
            })
        }
        Err(Error::Flash(kind)) => Err(Error::Flash(kind)),
        Err(_) if just_swapped => {
            // The image on trial fails verification: revert now rather than run it once.
            if let Phase::Swapped { pages } = state.phase() {
                run(
                    flash,
                    layout,
                    &mut state,
                    Direction::Revert,
                    pages,
                    0,
                    page_buf,
                )?;
            }
            let image = check(layout.active, page_buf)?;
            Ok(Decision {
                slot: Slot::Active,
                region: layout.active,
                outcome: Outcome::Reverted,
                image,
            })
        }
        Err(e) => {
            if layout.load_address.is_some() {
                // A swap leaves the previous image one page into the DFU slot; a staged
                // update sits at its start. Whichever verifies can run from RAM.
                let previous = Region {
                    offset: layout.dfu.offset + layout.erase_size,
                    size: layout.dfu.size - layout.erase_size,
                };
                for region in [previous, layout.dfu] {
                    match check(region, page_buf) {
                        Ok(image) => {
                            return Ok(Decision {
                                slot: Slot::Dfu,
                                region,
                                outcome: Outcome::Fallback,
                                image,
                            });
                        }
                        Err(Error::Flash(kind)) => return Err(Error::Flash(kind)),
                        Err(_) => {}
                    }
                }
            }
            Err(if e == Error::NoImage {
                Error::NoValidImage
            } else {
                e
            })
        }
    }
}
