//! The boot decision: embassy-boot's swap or revert, then verification, downgrade protection
//! and the choice of what to run.

use crate::counter::SecurityCounter;
use crate::error::Error;
use crate::verify::{ImageInfo, verify_slot};
use artifact::TrustRoot;
use core::cell::RefCell;
use embassy_boot::{BootLoader, BootLoaderConfig, State};
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

fn part<F: NorFlash>(flash: &SharedFlash<F>, r: Region) -> BlockingPartition<'_, NoopRawMutex, F> {
    BlockingPartition::new(flash, r.offset, r.size)
}

/// Runs the boot sequence. `page_buf` must be one erase page (the cheapest swap: one write per
/// page) and at least the image header size.
///
/// Nothing here panics on bad flash content: the layout is checked at compile time (so
/// embassy-boot's own asserts hold) and the buffer is checked first.
pub fn boot<F: NorFlash>(
    flash: &SharedFlash<F>,
    layout: &Layout,
    root: &TrustRoot,
    page_buf: &mut [u8],
) -> Result<Decision, Error> {
    let page = layout.erase_size as usize;
    if page_buf.len() != page
        || page_buf.len() < layout.image_header_size as usize
        || page % F::WRITE_SIZE != 0
        || !layout.is_valid()
    {
        return Err(Error::Buffer);
    }
    let mut bl = BootLoader::new(BootLoaderConfig {
        active: part(flash, layout.active),
        dfu: part(flash, layout.dfu),
        state: part(flash, layout.state),
    });
    // prepare_boot returns the state it read before acting; read it again for what is now true.
    bl.prepare_boot(page_buf)?;
    let state = bl.read_state(page_buf)?;
    let mut counter = SecurityCounter::new(part(flash, layout.security_counter))?;
    let floor = counter.get()?;
    let check = |slot: Region, buf: &mut [u8]| -> Result<ImageInfo, Error> {
        let info = verify_slot(&mut part(flash, slot), layout, root, buf)?;
        if info.security_counter < floor {
            return Err(Error::Downgrade);
        }
        Ok(info)
    };

    match check(layout.active, page_buf) {
        Ok(image) => {
            let outcome = match state {
                State::Swap => Outcome::Trial,
                State::Revert => Outcome::Reverted,
                State::Boot | State::DfuDetach => {
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
        Err(_) if state == State::Swap => {
            // The image on trial fails verification: revert now rather than run it once.
            bl.prepare_boot(page_buf)?;
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
                // embassy-boot's swap leaves the previous image one page into the DFU slot; a
                // staged update sits at its start. Whichever verifies can run from RAM.
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
