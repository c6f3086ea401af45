//! The swap and its revert, moving only the pages the two images occupy.
//!
//! The DFU slot is one page larger than the active one. A swap of `n` pages runs `2n` steps
//! from the top page down: active page k to DFU page k+1, then DFU page k to active page k; the
//! new image ends in the active slot and the previous one one page into the DFU slot. A revert
//! runs the inverse from the bottom up. Each step erases its destination, copies its source
//! (which no earlier unfinished step has touched), then appends its record, so a cut anywhere
//! repeats at most one step from its start: no word is ever programmed twice.

use crate::boot::SharedFlash;
use crate::error::{Error, flash};
use crate::state::BootState;
use embassy_embedded_hal::flash::partition::BlockingPartition;
use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use embedded_storage::nor_flash::NorFlash;
use layout::Layout;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Swap,
    Revert,
}

/// Source and destination offsets of step `s` of `n` pages.
fn step(layout: &Layout, dir: Direction, n: u32, s: u32) -> (u32, u32) {
    let page = layout.erase_size;
    let active = |k: u32| layout.active.offset + k * page;
    let dfu = |k: u32| layout.dfu.offset + k * page;
    match dir {
        Direction::Swap => {
            let k = n - 1 - s / 2;
            if s % 2 == 0 {
                (active(k), dfu(k + 1))
            } else {
                (dfu(k), active(k))
            }
        }
        Direction::Revert => {
            let k = s / 2;
            if s % 2 == 0 {
                (active(k), dfu(k))
            } else {
                (dfu(k + 1), active(k))
            }
        }
    }
}

/// Erases the page at `to` and copies the page at `from` into it, `buf` at a time. A source
/// word that cannot be read (torn) is copied as erased; runs of erased bytes are not written.
fn copy_page<F: NorFlash>(
    f: &mut F,
    from: u32,
    to: u32,
    page: u32,
    buf: &mut [u8],
) -> Result<(), Error> {
    f.erase(to, to + page).map_err(flash)?;
    let mut at = 0;
    while at < page {
        let n = (buf.len() as u32).min(page - at);
        let chunk = buf.get_mut(..n as usize).ok_or(Error::Buffer)?;
        if f.read(from + at, chunk).is_err() {
            let mut off = from + at;
            for word in chunk.chunks_mut(F::WRITE_SIZE) {
                if f.read(off, word).is_err() {
                    word.fill(0xFF);
                }
                off += word.len() as u32;
            }
        }
        if chunk.iter().any(|&b| b != 0xFF) {
            f.write(to + at, chunk).map_err(flash)?;
        }
        at += n;
    }
    Ok(())
}

/// Runs steps `from..2n` of a swap or revert of `n` pages, recording each.
pub(crate) fn run<F: NorFlash>(
    shared: &SharedFlash<F>,
    layout: &Layout,
    state: &mut BootState<BlockingPartition<'_, NoopRawMutex, F>>,
    dir: Direction,
    n: u32,
    from: u32,
    buf: &mut [u8],
) -> Result<(), Error> {
    for s in from..2 * n {
        let (src, dst) = step(layout, dir, n, s);
        shared.lock(|c| copy_page(&mut *c.borrow_mut(), src, dst, layout.erase_size, buf))?;
        match dir {
            Direction::Swap => state.swap_step(s, n)?,
            Direction::Revert => state.revert_step(s, n)?,
        }
    }
    Ok(())
}
