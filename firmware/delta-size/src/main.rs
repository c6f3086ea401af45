//! Links the delta decoder as a device links it (a stream fed in pieces, a base read from
//! memory-mapped flash, each block handed on) so that `cargo xtask bench-ota` can measure its
//! code (`delta` in the ELF's code by crate) and RAM (the size of `DECODER`).
#![no_std]
#![no_main]

use core::ptr::{addr_of_mut, read_volatile, write_volatile};
use cortex_m_rt::entry;
use cortex_m_semihosting::debug;
use delta::{Base, Decoder, Progress};

/// The decoder's whole state, in a static so that its size is a symbol's.
#[unsafe(no_mangle)]
static mut DECODER: Decoder = Decoder::new();

/// Where the stream and the base would come from: read with volatile loads so nothing is
/// folded away at link time.
const STREAM: usize = 0x2100_0000;
const BASE: usize = 0x0020_0000;

struct MappedBase;

impl Base for MappedBase {
    type Error = ();
    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), ()> {
        for (i, b) in buf.iter_mut().enumerate() {
            // SAFETY: mps2-an386 maps RAM at BASE; any byte read is fine for a measurement.
            *b = unsafe { read_volatile((BASE + offset as usize + i) as *const u8) };
        }
        Ok(())
    }
}

#[entry]
fn main() -> ! {
    // SAFETY: the only reference to DECODER.
    let decoder = unsafe { &mut *addr_of_mut!(DECODER) };
    let mut piece = [0u8; 256];
    let mut at = 0usize;
    loop {
        for (i, b) in piece.iter_mut().enumerate() {
            // SAFETY: RAM at STREAM; the content does not matter for a measurement.
            *b = unsafe { read_volatile((STREAM + at + i) as *const u8) };
        }
        at += piece.len();
        let mut taken = 0;
        loop {
            match decoder.feed(&piece[taken..], &mut MappedBase) {
                Ok((n, Progress::Block { data, .. })) => {
                    taken += n;
                    // SAFETY: a volatile store so that the block counts as used.
                    unsafe { write_volatile(0x2200_0000 as *mut u8, data[0]) };
                }
                Ok((_, Progress::NeedInput)) => break,
                Ok((n, Progress::Header(_))) => taken += n,
                Ok((_, Progress::Done)) | Err(_) => debug::exit(debug::EXIT_SUCCESS),
            }
        }
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    debug::exit(debug::EXIT_FAILURE);
    loop {}
}
