//! Board support for QEMU `mps2-an386` (Cortex-M4F): the flash is a host file reached through
//! ARM semihosting, with NOR rules enforced here (and, for the agent, a memory-mapped view of
//! the model slots); the CMSDK watchdog; system reset.
#![no_std]

use cortex_m_semihosting::{hio, nr, syscall};
use embedded_storage::nor_flash::{
    ErrorType, MultiwriteNorFlash, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};

pub use layout::MPS2_AN386 as LAYOUT;

pub mod clock;
pub mod handoff;
pub mod timer;
pub mod uart;

/// Name of the flash file, relative to QEMU's working directory.
const FLASH_FILE: &[u8] = b"flash.bin\0";
const WRITE_SIZE: usize = 4;
const ERASE_SIZE: usize = 4096;
/// Bytes moved per semihosting call.
const CHUNK: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlashError {
    /// The host file could not be opened, read or written.
    Host,
    NotAligned,
    OutOfBounds,
    /// A write would set a bit that is 0: NOR can only clear bits between erases.
    NotErased,
}

impl NorFlashError for FlashError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            FlashError::NotAligned => NorFlashErrorKind::NotAligned,
            FlashError::OutOfBounds => NorFlashErrorKind::OutOfBounds,
            FlashError::Host | FlashError::NotErased => NorFlashErrorKind::Other,
        }
    }
}

/// The board's flash: `flash.bin` on the host, as big as the layout says. Every semihosting
/// write reaches the file synchronously, so killing QEMU is a power cut between operations.
#[derive(Debug)]
pub struct SemihostingFlash {
    handle: usize,
    size: usize,
    mapped: Option<Mapped>,
}

/// The board has no memory-mapped flash; the agent's models run in place as on boards that do,
/// from a RAM view of a flash range that every erase and write keeps equal to the file.
///
/// A raw view, as a memory-mapped flash is: bytes handed out stay valid until the next erase
/// or write of their range (the agent writes only a slot no one reads).
#[derive(Debug)]
struct Mapped {
    offset: usize,
    view: *mut u8,
    len: usize,
}

impl SemihostingFlash {
    pub fn open() -> Result<Self, FlashError> {
        // SAFETY: the path is a NUL-terminated static string; mode 3 is "r+b".
        let handle = unsafe {
            syscall!(
                OPEN,
                FLASH_FILE.as_ptr(),
                nr::open::RW_BINARY,
                FLASH_FILE.len() - 1
            )
        };
        if handle == usize::MAX {
            return Err(FlashError::Host);
        }
        // SAFETY: FLEN takes the handle just opened.
        let len = unsafe { syscall!(FLEN, handle) };
        if len != LAYOUT.flash_size as usize {
            return Err(FlashError::Host);
        }
        Ok(SemihostingFlash {
            handle,
            size: len,
            mapped: None,
        })
    }

    /// `open`, and the flash from `offset` on mapped into `view` (loaded now, in one read).
    pub fn open_mapped(offset: u32, view: &'static mut [u8]) -> Result<Self, FlashError> {
        let mut flash = Self::open()?;
        let at = flash.range(offset, view.len(), ERASE_SIZE)?;
        flash.host_read(at, view)?;
        flash.mapped = Some(Mapped {
            offset: at,
            len: view.len(),
            view: view.as_mut_ptr(),
        });
        Ok(flash)
    }

    /// `len` bytes at `offset` where they are mapped; `None` outside the mapped range.
    pub fn mapped(&self, offset: u32, len: u32) -> Option<&'static [u8]> {
        let m = self.mapped.as_ref()?;
        let from = (offset as usize).checked_sub(m.offset)?;
        if from.checked_add(len as usize)? > m.len {
            return None;
        }
        // SAFETY: within the 'static view given to `open_mapped`, which only `mirror` writes.
        Some(unsafe { core::slice::from_raw_parts(m.view.add(from), len as usize) })
    }

    /// Keeps the mapped view equal to the file after a write of `bytes` at `at`.
    fn mirror(&mut self, at: usize, bytes: &[u8]) {
        if let Some(m) = self.mapped.as_ref()
            && let Some(from) = at.checked_sub(m.offset)
            && from + bytes.len() <= m.len
        {
            // SAFETY: within the view; no slice of this range is read across a write to it.
            unsafe {
                core::ptr::copy_nonoverlapping(bytes.as_ptr(), m.view.add(from), bytes.len())
            };
        }
    }

    fn seek(&mut self, at: usize) -> Result<(), FlashError> {
        // SAFETY: SEEK on our open handle.
        if unsafe { syscall!(SEEK, self.handle, at) } != 0 {
            return Err(FlashError::Host);
        }
        Ok(())
    }

    fn host_read(&mut self, at: usize, buf: &mut [u8]) -> Result<(), FlashError> {
        self.seek(at)?;
        // SAFETY: READ fills at most buf.len() bytes of buf; it returns the bytes NOT read.
        if unsafe { syscall!(READ, self.handle, buf.as_mut_ptr(), buf.len()) } != 0 {
            return Err(FlashError::Host);
        }
        Ok(())
    }

    fn host_write(&mut self, at: usize, buf: &[u8]) -> Result<(), FlashError> {
        self.seek(at)?;
        // SAFETY: WRITE reads buf.len() bytes of buf; it returns the bytes NOT written.
        if unsafe { syscall!(WRITE, self.handle, buf.as_ptr(), buf.len()) } != 0 {
            return Err(FlashError::Host);
        }
        Ok(())
    }

    fn range(&self, offset: u32, len: usize, align: usize) -> Result<usize, FlashError> {
        let at = offset as usize;
        if at % align != 0 || len % align != 0 {
            return Err(FlashError::NotAligned);
        }
        if at.checked_add(len).is_none_or(|end| end > self.size) {
            return Err(FlashError::OutOfBounds);
        }
        Ok(at)
    }
}

impl ErrorType for SemihostingFlash {
    type Error = FlashError;
}

impl ReadNorFlash for SemihostingFlash {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), FlashError> {
        let at = self.range(offset, bytes.len(), 1)?;
        for (i, chunk) in bytes.chunks_mut(CHUNK).enumerate() {
            self.host_read(at + i * CHUNK, chunk)?;
        }
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.size
    }
}

impl NorFlash for SemihostingFlash {
    const WRITE_SIZE: usize = WRITE_SIZE;
    const ERASE_SIZE: usize = ERASE_SIZE;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), FlashError> {
        let len = to.checked_sub(from).ok_or(FlashError::OutOfBounds)? as usize;
        let at = self.range(from, len, ERASE_SIZE)?;
        let ones = [0xFFu8; CHUNK];
        for off in (0..len).step_by(CHUNK) {
            self.host_write(at + off, &ones)?;
            self.mirror(at + off, &ones);
        }
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), FlashError> {
        let at = self.range(offset, bytes.len(), WRITE_SIZE)?;
        let mut old = [0u8; CHUNK];
        for (i, chunk) in bytes.chunks(CHUNK).enumerate() {
            let old = &mut old[..chunk.len()];
            self.host_read(at + i * CHUNK, old)?;
            if chunk
                .iter()
                .zip(old.iter())
                .any(|(&new, &was)| new & !was != 0)
            {
                return Err(FlashError::NotErased);
            }
            for (o, &n) in old.iter_mut().zip(chunk) {
                *o &= n;
            }
            self.host_write(at + i * CHUNK, old)?;
            self.mirror(at + i * CHUNK, old);
        }
        Ok(())
    }
}

/// NOR may program a word again while it only clears bits, which `write` enforces (the
/// key-value store relies on it).
impl MultiwriteNorFlash for SemihostingFlash {}

/// The CMSDK watchdog (0x4000_8000): an interrupt at the first expiry, a reset at the second.
pub mod watchdog {
    const BASE: usize = 0x4000_8000;
    const LOAD: usize = BASE;
    const CTRL: usize = BASE + 0x8;
    const INTCLR: usize = BASE + 0xC;
    const LOCK: usize = BASE + 0xC00;
    /// The watchdog counts the 25 MHz system clock.
    pub const TICKS_PER_MS: u32 = 25_000;

    /// Starts the watchdog: reset after about `2 * ms` milliseconds unless fed.
    pub fn arm(ms: u32) {
        // SAFETY: MMIO registers of the CMSDK watchdog, as documented for mps2-an386.
        unsafe {
            core::ptr::write_volatile(LOCK as *mut u32, 0x1ACC_E551);
            core::ptr::write_volatile(LOAD as *mut u32, ms.saturating_mul(TICKS_PER_MS));
            core::ptr::write_volatile(CTRL as *mut u32, 0b11); // interrupt + reset enable
            core::ptr::write_volatile(LOCK as *mut u32, 0);
        }
    }

    /// Restarts the count (and clears a first expiry's interrupt); harmless when not armed.
    pub fn feed() {
        // SAFETY: MMIO registers of the CMSDK watchdog.
        unsafe {
            core::ptr::write_volatile(LOCK as *mut u32, 0x1ACC_E551);
            core::ptr::write_volatile(INTCLR as *mut u32, 1);
            core::ptr::write_volatile(LOCK as *mut u32, 0);
        }
    }
}

/// Resets the board (SYSRESETREQ). QEMU keeps the flash file; RAM is not cleared.
pub fn reset() -> ! {
    cortex_m::peripheral::SCB::sys_reset()
}

/// Reads a whole host file (`name` NUL-terminated, relative to QEMU's working directory) into
/// `buf`; returns its length, or `None` when it is missing or larger than `buf`.
pub fn read_host_file(name: &[u8], buf: &mut [u8]) -> Option<usize> {
    if name.last() != Some(&0) {
        return None;
    }
    // SAFETY: the path is NUL-terminated; mode 0 is "r".
    let handle = unsafe { syscall!(OPEN, name.as_ptr(), nr::open::R, name.len() - 1) };
    if handle == usize::MAX {
        return None;
    }
    // SAFETY: FLEN, READ and CLOSE on the handle just opened; READ fills at most `len` bytes.
    let len = unsafe { syscall!(FLEN, handle) };
    let ok = len <= buf.len() && unsafe { syscall!(READ, handle, buf.as_mut_ptr(), len) } == 0;
    // SAFETY: as above.
    unsafe { syscall!(CLOSE, handle) };
    ok.then_some(len)
}

/// Writes pieces to the host's stdout without `core::fmt` (several KiB of code saved), as one
/// write: a reader never sees a line in pieces. Longer than 160 bytes in all is cut.
pub fn say(pieces: &[&[u8]]) {
    let mut line = [0u8; 160];
    let mut len = 0;
    for p in pieces {
        let n = p.len().min(line.len() - len);
        line[len..len + n].copy_from_slice(&p[..n]);
        len += n;
    }
    write_out(&line[..len]);
}

/// Writes bytes to the host's stdout in one semihosting call.
pub fn write_out(bytes: &[u8]) {
    if let Ok(mut out) = hio::hstdout() {
        let _ = out.write_all(bytes);
    }
}

/// A decimal number rendered into a caller's buffer (u32: no 64-bit division linked).
#[derive(Debug, Clone, Copy)]
pub struct Num(pub u32);

impl Num {
    pub fn as_bytes(self, buf: &mut [u8; 10]) -> &[u8] {
        let mut n = self.0;
        let mut at = buf.len();
        loop {
            at -= 1;
            buf[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        &buf[at..]
    }
}
