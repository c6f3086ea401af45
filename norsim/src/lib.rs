//! A strict NOR flash model for host tests and simulators, with power cuts, torn writes and
//! interrupted erases at any chosen operation.
//!
//! Rules, as real NOR parts enforce them (and more strictly than most):
//! - erase is by whole `E`-byte sectors, aligned, and sets every byte to 0xFF;
//! - writes are `W`-aligned whole words and can only clear bits: a write that would turn a 0
//!   back into a 1 is refused;
//! - in ECC mode (STM32H7/L4/U5-like parts) a word may be programmed once between erases, and a
//!   word whose programming or erase was interrupted is torn: reading it is an error (the
//!   double-error detection of those parts) and it cannot be programmed until its sector is
//!   erased again;
//! - every erase of a sector and every write call is one operation; a fault planned for
//!   operation k happens there: a power cut before it, a torn write (only some bytes
//!   programmed) or an interrupted erase (the sector left with arbitrary bytes); after a fault
//!   every access fails until `power_on`.

mod rng;

pub use rng::Rng;

use embedded_storage::nor_flash::{
    ErrorType, MultiwriteNorFlash, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};

/// What happens at the planned operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// Power is lost before the operation starts.
    Cut,
    /// Power is lost during the operation: a write programs only part of its bytes, an erase
    /// leaves the sector with arbitrary content.
    Tear,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// Index of the operation (0-based, counted since the last `power_on` or `new`).
    pub at: u64,
    pub kind: FaultKind,
}

/// Why an access failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimError {
    /// The power is off (a fault happened); nothing more reaches the flash.
    PowerCut,
    NotAligned,
    OutOfBounds,
    /// The write would set a bit that is 0, or (ECC mode) reprogram a word.
    NotErased,
    /// ECC mode: the read touches a torn word (an uncorrectable ECC error).
    Ecc,
}

impl NorFlashError for SimError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            SimError::NotAligned => NorFlashErrorKind::NotAligned,
            SimError::OutOfBounds => NorFlashErrorKind::OutOfBounds,
            SimError::PowerCut | SimError::NotErased | SimError::Ecc => NorFlashErrorKind::Other,
        }
    }
}

/// Operation counters since creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    pub erases: u64,
    pub writes: u64,
    pub bytes_written: u64,
    pub reads: u64,
}

/// A NOR flash of `W`-byte words and `E`-byte sectors.
#[derive(Debug, Clone)]
pub struct NorSim<const W: usize, const E: usize> {
    mem: Vec<u8>,
    /// ECC mode: which words were programmed since their sector's last erase.
    programmed: Vec<bool>,
    /// ECC mode: words left torn by an interrupted write or erase (they read as an ECC error).
    torn: Vec<bool>,
    ecc: bool,
    /// Operations since the last power-on, for fault placement.
    ops: u64,
    fault: Option<Fault>,
    powered: bool,
    counters: Counters,
    rng: Rng,
}

impl<const W: usize, const E: usize> NorSim<W, E> {
    /// An erased flash of `size` bytes (a whole number of sectors).
    pub fn new(size: usize) -> Self {
        assert!(size % E == 0 && E % W == 0, "geometry");
        NorSim {
            mem: vec![0xFF; size],
            programmed: vec![false; size / W],
            torn: vec![false; size / W],
            ecc: false,
            ops: 0,
            fault: None,
            powered: true,
            counters: Counters::default(),
            rng: Rng::new(0x9E37_79B9_7F4A_7C15),
        }
    }

    /// Refuse programming a word twice between erases (flash with ECC).
    pub fn with_ecc(mut self, ecc: bool) -> Self {
        self.ecc = ecc;
        self
    }

    /// Seed of the arbitrary bytes torn operations leave.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.rng = Rng::new(seed);
        self
    }

    /// Plans a fault at operation `at` (counted from now on) of the given kind.
    pub fn plan(&mut self, fault: Fault) {
        self.fault = Some(Fault {
            at: self.ops + fault.at,
            kind: fault.kind,
        });
    }

    /// Power comes back: faults cleared, operation numbering restarts.
    pub fn power_on(&mut self) {
        self.powered = true;
        self.fault = None;
        self.ops = 0;
    }

    pub fn powered(&self) -> bool {
        self.powered
    }

    /// Operations since the last power-on.
    pub fn ops(&self) -> u64 {
        self.ops
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    pub fn bytes(&self) -> &[u8] {
        &self.mem
    }

    /// ECC mode: words that read as an uncorrectable error (indexes of `W`-byte words).
    pub fn torn_words(&self) -> impl Iterator<Item = usize> + '_ {
        self.torn
            .iter()
            .enumerate()
            .filter(|(_, t)| **t)
            .map(|(i, _)| i)
    }

    /// Writes directly, bypassing the rules (to set up a test's starting flash).
    pub fn preload(&mut self, offset: usize, data: &[u8]) {
        self.mem[offset..offset + data.len()].copy_from_slice(data);
    }

    /// Counts one operation; returns the fault to apply to it, if it is the planned one.
    fn begin_op(&mut self) -> Result<Option<FaultKind>, SimError> {
        if !self.powered {
            return Err(SimError::PowerCut);
        }
        let at = self.ops;
        self.ops += 1;
        match self.fault {
            Some(f) if f.at == at => {
                self.powered = false;
                match f.kind {
                    FaultKind::Cut => Err(SimError::PowerCut),
                    FaultKind::Tear => Ok(Some(FaultKind::Tear)),
                }
            }
            _ => Ok(None),
        }
    }

    fn check(&self, offset: u32, len: usize, align: usize) -> Result<usize, SimError> {
        let offset = offset as usize;
        if offset % align != 0 || len % align != 0 {
            return Err(SimError::NotAligned);
        }
        if offset
            .checked_add(len)
            .is_none_or(|end| end > self.mem.len())
        {
            return Err(SimError::OutOfBounds);
        }
        Ok(offset)
    }
}

impl<const W: usize, const E: usize> ErrorType for NorSim<W, E> {
    type Error = SimError;
}

impl<const W: usize, const E: usize> ReadNorFlash for NorSim<W, E> {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), SimError> {
        if !self.powered {
            return Err(SimError::PowerCut);
        }
        let at = self.check(offset, bytes.len(), 1)?;
        if self.ecc && (at / W..(at + bytes.len()).div_ceil(W)).any(|w| self.torn[w]) {
            return Err(SimError::Ecc);
        }
        bytes.copy_from_slice(&self.mem[at..at + bytes.len()]);
        self.counters.reads += 1;
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.mem.len()
    }
}

impl<const W: usize, const E: usize> NorFlash for NorSim<W, E> {
    const WRITE_SIZE: usize = W;
    const ERASE_SIZE: usize = E;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), SimError> {
        let len = to.checked_sub(from).ok_or(SimError::OutOfBounds)? as usize;
        let start = self.check(from, len, E)?;
        // One operation per sector: power can go between sectors of a long erase.
        for sector in (start..start + len).step_by(E) {
            let fault = self.begin_op()?;
            self.counters.erases += 1;
            if fault == Some(FaultKind::Tear) {
                // Interrupted: each byte erased, untouched, or garbage.
                for i in sector..sector + E {
                    self.mem[i] = match self.rng.next_u64() % 3 {
                        0 => 0xFF,
                        1 => self.mem[i],
                        _ => self.rng.next_u64() as u8,
                    };
                }
                if self.ecc {
                    // Each word's ECC bits are as undefined as its data: some words read as
                    // errors, and none may be programmed before the sector is erased again.
                    for w in sector / W..(sector + E) / W {
                        self.torn[w] = self.rng.next_u64() % 3 == 0;
                        self.programmed[w] = true;
                    }
                }
                return Err(SimError::PowerCut);
            }
            self.mem[sector..sector + E].fill(0xFF);
            self.programmed[sector / W..(sector + E) / W].fill(false);
            self.torn[sector / W..(sector + E) / W].fill(false);
        }
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), SimError> {
        let at = self.check(offset, bytes.len(), W)?;
        // The rules are checked before the operation counts: a refused write is a bug in the
        // caller, not a flash operation.
        for (i, &b) in bytes.iter().enumerate() {
            if b & !self.mem[at + i] != 0 {
                return Err(SimError::NotErased);
            }
        }
        if self.ecc && (at / W..(at + bytes.len()) / W).any(|w| self.programmed[w]) {
            return Err(SimError::NotErased);
        }
        let fault = self.begin_op()?;
        self.counters.writes += 1;
        self.counters.bytes_written += bytes.len() as u64;
        let len = if fault == Some(FaultKind::Tear) {
            // Torn: a prefix programmed fully, then one byte with only some of its bits.
            self.rng.below(bytes.len() as u64) as usize
        } else {
            bytes.len()
        };
        for (i, &b) in bytes.iter().enumerate().take(len) {
            self.mem[at + i] &= b;
        }
        if fault == Some(FaultKind::Tear) {
            if let Some(&b) = bytes.get(len) {
                let partial = b | (self.rng.next_u64() as u8);
                self.mem[at + len] &= partial;
            }
            for w in at / W..(at + len).div_ceil(W) {
                self.programmed[w] = true;
            }
            if self.ecc {
                // The word being programmed when power went is torn (its ECC does not match).
                let w = (at + len) / W;
                self.torn[w] = true;
                self.programmed[w] = true;
            }
            return Err(SimError::PowerCut);
        }
        self.programmed[at / W..(at + bytes.len()) / W].fill(true);
        Ok(())
    }
}

/// Plain NOR may program a word again as long as bits are only cleared (sequential-storage
/// relies on it). In ECC mode the model refuses that at run time instead.
impl<const W: usize, const E: usize> MultiwriteNorFlash for NorSim<W, E> {}

#[cfg(test)]
mod tests {
    use super::*;

    type Flash = NorSim<4, 4096>;

    #[test]
    fn writes_only_clear_bits_and_must_be_aligned() {
        let mut f = Flash::new(8192);
        f.write(0, &[0x0F, 0xF0, 0x00, 0xFF]).unwrap();
        assert_eq!(
            f.write(0, &[0xFF, 0xFF, 0xFF, 0xFF]),
            Err(SimError::NotErased)
        );
        f.write(0, &[0x0F, 0x00, 0x00, 0xFF]).unwrap(); // clearing more bits is legal NOR
        assert_eq!(&f.bytes()[..4], &[0x0F, 0x00, 0x00, 0xFF]);
        assert_eq!(f.write(2, &[0; 4]), Err(SimError::NotAligned));
        assert_eq!(f.write(0, &[0; 3]), Err(SimError::NotAligned));
        assert_eq!(f.erase(0, 100), Err(SimError::NotAligned));
        assert_eq!(f.write(8192, &[0; 4]), Err(SimError::OutOfBounds));
        f.erase(0, 4096).unwrap();
        assert_eq!(&f.bytes()[..4], &[0xFF; 4]);
        assert_eq!(
            f.counters(),
            Counters {
                erases: 1,
                writes: 2,
                bytes_written: 8,
                reads: 0
            }
        );
    }

    #[test]
    fn ecc_mode_refuses_a_second_program_of_a_word() {
        let mut f = Flash::new(4096).with_ecc(true);
        f.write(0, &[0xF0; 4]).unwrap();
        assert_eq!(f.write(0, &[0x00; 4]), Err(SimError::NotErased));
        f.erase(0, 4096).unwrap();
        f.write(0, &[0x00; 4]).unwrap();
    }

    #[test]
    fn ecc_mode_reads_a_torn_word_as_an_error_until_erased() {
        let mut f = NorSim::<8, 4096>::new(8192).with_ecc(true).with_seed(3);
        f.write(0, &[0u8; 8]).unwrap();
        f.plan(Fault {
            at: 0,
            kind: FaultKind::Tear,
        });
        assert_eq!(f.write(8, &[0u8; 32]), Err(SimError::PowerCut));
        f.power_on();
        let torn: Vec<usize> = f.torn_words().collect();
        assert_eq!(torn.len(), 1, "exactly the word in progress is torn");
        let w = torn[0];
        let mut buf = [0u8; 8];
        assert_eq!(f.read((w * 8) as u32, &mut buf), Err(SimError::Ecc));
        assert_eq!(
            f.read((w * 8 + 7) as u32, &mut buf[..1]),
            Err(SimError::Ecc)
        );
        f.read(0, &mut buf).unwrap(); // the word before still reads
        assert_eq!(f.write((w * 8) as u32, &[0u8; 8]), Err(SimError::NotErased));
        f.erase(0, 4096).unwrap();
        f.read((w * 8) as u32, &mut buf).unwrap();
        assert_eq!(buf, [0xFF; 8]);
        // An interrupted erase leaves some words unreadable and none programmable.
        f.plan(Fault {
            at: 0,
            kind: FaultKind::Tear,
        });
        assert_eq!(f.erase(4096, 8192), Err(SimError::PowerCut));
        f.power_on();
        assert!(f.torn_words().all(|w| w >= 512) && f.torn_words().count() > 0);
        assert_eq!(f.write(4096 + 8 * 511, &[0u8; 8]), Err(SimError::NotErased));
    }

    #[test]
    fn a_cut_stops_everything_until_power_returns() {
        let mut f = Flash::new(8192);
        f.plan(Fault {
            at: 1,
            kind: FaultKind::Cut,
        });
        f.write(0, &[0; 4]).unwrap();
        assert_eq!(f.write(4, &[0; 4]), Err(SimError::PowerCut));
        assert_eq!(&f.bytes()[4..8], &[0xFF; 4], "the cut write did not happen");
        let mut buf = [0u8; 4];
        assert_eq!(f.read(0, &mut buf), Err(SimError::PowerCut));
        f.power_on();
        f.read(0, &mut buf).unwrap();
        assert_eq!(buf, [0; 4]);
    }

    #[test]
    fn torn_writes_and_erases_leave_partial_content() {
        let mut torn_writes = 0;
        let mut torn_erases = 0;
        for seed in 0..64 {
            let mut f = Flash::new(8192).with_seed(seed);
            f.plan(Fault {
                at: 0,
                kind: FaultKind::Tear,
            });
            assert_eq!(f.write(0, &[0u8; 64]), Err(SimError::PowerCut));
            if f.bytes()[..64].iter().any(|&b| b != 0) {
                torn_writes += 1;
            }
            f.power_on();
            f.plan(Fault {
                at: 1,
                kind: FaultKind::Tear,
            });
            f.erase(4096, 8192).unwrap();
            f.write(4096, &[0u8; 4096]).unwrap_err(); // op 1: torn
            f.power_on();
            f.plan(Fault {
                at: 0,
                kind: FaultKind::Tear,
            });
            assert_eq!(f.erase(4096, 8192), Err(SimError::PowerCut));
            if f.bytes()[4096..].iter().any(|&b| b != 0xFF) {
                torn_erases += 1;
            }
        }
        assert_eq!(torn_writes, 64, "a torn write never completes");
        assert_eq!(torn_erases, 64, "an interrupted erase never completes");
    }
}
