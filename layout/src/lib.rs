//! The flash layout of every supported board, defined once: bootloader, boot state, security
//! counter, active and DFU firmware slots, two model slots and the key-value store.
//!
//! The bootloader, the agent firmware, the host simulators and the power-loss tests all take
//! their partitions from here. `Layout::check` is evaluated at compile time for every board
//! (`const _: () = ...`), so a layout the bootloader's swap or state log could not serve does
//! not build.
#![no_std]

/// A byte range of the flash (offset from the flash's start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub offset: u32,
    pub size: u32,
}

impl Region {
    pub const fn end(&self) -> u32 {
        self.offset + self.size
    }

    const fn overlaps(&self, other: &Region) -> bool {
        self.offset < other.end() && other.offset < self.end()
    }
}

/// Where a board's partitions are and how its flash behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub board: &'static str,
    /// Bytes the flash holds in all.
    pub flash_size: u32,
    /// Smallest erasable unit.
    pub erase_size: u32,
    /// Program granularity (and alignment).
    pub write_size: u32,
    /// Reserved for the bootloader itself (empty where the board boots it from elsewhere).
    pub bootloader: Region,
    /// The boot state log (format 2): two equal halves of whole sectors.
    pub state: Region,
    /// Two sectors holding the security counter of the confirmed firmware.
    pub security_counter: Region,
    /// The firmware that runs: image header, then the image.
    pub active: Region,
    /// Where an update is written; one page larger than `active` (the swap moves the previous
    /// image one page up).
    pub dfu: Region,
    pub model_a: Region,
    pub model_b: Region,
    /// sequential-storage key-value store (agent progress, trust root, counters).
    pub kv: Region,
    /// The device's provisioned identity record (`agent::provisioning`): written once at the
    /// factory, read at every boot, never written by the agent.
    pub identity: Region,
    /// Bytes before the image in a firmware slot: the header with the signed manifest.
    pub image_header_size: u32,
    /// Where the bootloader copies the image before it jumps (RAM-load boards), or `None`
    /// when the image executes in place.
    pub load_address: Option<u32>,
    /// The address at which the CPU reads the flash (memory-mapped internal NOR): offset 0 is
    /// there. `None` where the flash is not mapped (the emulated board's host file).
    pub mapped_at: Option<u32>,
}

/// Why a layout is unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutError {
    Misaligned,
    Overlap,
    OutsideFlash,
    DfuTooSmall,
    StateTooSmall,
    CounterNotTwoSectors,
    HeaderSize,
}

impl Layout {
    /// Pages of the active slot (the swap's unit is one erase page).
    pub const fn active_pages(&self) -> u32 {
        self.active.size / self.erase_size
    }

    /// Largest image the active slot holds after its header.
    pub const fn max_image_size(&self) -> u32 {
        self.active.size - self.image_header_size
    }

    const fn regions(&self) -> [Region; 9] {
        [
            self.bootloader,
            self.state,
            self.security_counter,
            self.active,
            self.dfu,
            self.model_a,
            self.model_b,
            self.kv,
            self.identity,
        ]
    }

    /// Every rule the bootloader relies on.
    pub const fn check(&self) -> Result<(), LayoutError> {
        let regions = self.regions();
        let mut i = 0;
        while i < regions.len() {
            let r = regions[i];
            if r.offset % self.erase_size != 0 || r.size % self.erase_size != 0 {
                return Err(LayoutError::Misaligned);
            }
            if r.end() > self.flash_size {
                return Err(LayoutError::OutsideFlash);
            }
            let mut j = i + 1;
            while j < regions.len() {
                if r.size > 0 && regions[j].size > 0 && r.overlaps(&regions[j]) {
                    return Err(LayoutError::Overlap);
                }
                j += 1;
            }
            i += 1;
        }
        if self.dfu.size < self.active.size + self.erase_size {
            return Err(LayoutError::DfuTooSmall);
        }
        // The state log: two halves, each holding a header, a request, a whole swap and its
        // revert (2 records a page each), a confirm and a spare, in units of max(8, write).
        let unit = 8u32.div_ceil(self.write_size) * self.write_size;
        let half = self.state.size / 2;
        if self.state.size % (2 * self.erase_size) != 0
            || (4 * self.active_pages() + 5) * unit > half
            || self.active_pages() > 2047
        {
            return Err(LayoutError::StateTooSmall);
        }
        if self.security_counter.size != 2 * self.erase_size {
            return Err(LayoutError::CounterNotTwoSectors);
        }
        if self.image_header_size == 0
            || self.image_header_size % self.write_size != 0
            || self.image_header_size >= self.active.size
        {
            return Err(LayoutError::HeaderSize);
        }
        Ok(())
    }

    /// `check` as a bool, for `const` assertions.
    pub const fn is_valid(&self) -> bool {
        self.check().is_ok()
    }
}

const KIB: u32 = 1024;

/// QEMU `mps2-an386` (Cortex-M4F). Flash is a host file reached through semihosting (the
/// bootloader itself is QEMU's `-kernel`, so it takes no flash); images are copied to RAM at
/// 0x0010_0000 and run there.
pub const MPS2_AN386: Layout = Layout {
    board: "mps2-an386",
    flash_size: 1024 * KIB,
    erase_size: 4 * KIB,
    write_size: 4,
    bootloader: Region { offset: 0, size: 0 },
    state: Region {
        offset: 0,
        size: 8 * KIB,
    },
    security_counter: Region {
        offset: 8 * KIB,
        size: 8 * KIB,
    },
    active: Region {
        offset: 16 * KIB,
        size: 256 * KIB,
    },
    dfu: Region {
        offset: 272 * KIB,
        size: 260 * KIB,
    },
    model_a: Region {
        offset: 532 * KIB,
        size: 224 * KIB,
    },
    model_b: Region {
        offset: 756 * KIB,
        size: 224 * KIB,
    },
    kv: Region {
        offset: 980 * KIB,
        size: 40 * KIB,
    },
    identity: Region {
        offset: 1020 * KIB,
        size: 4 * KIB,
    },
    image_header_size: KIB,
    load_address: Some(0x0010_0000),
    mapped_at: None,
};

/// Nordic nRF52840 (Cortex-M4F, 1 MiB flash, 4 KiB pages, 4-byte writes); images execute in
/// place from the active slot, after the 1 KiB header (which keeps the vector table aligned).
pub const NRF52840: Layout = Layout {
    board: "nrf52840-dk",
    flash_size: 1024 * KIB,
    erase_size: 4 * KIB,
    write_size: 4,
    bootloader: Region {
        offset: 0,
        size: 32 * KIB,
    },
    state: Region {
        offset: 32 * KIB,
        size: 8 * KIB,
    },
    security_counter: Region {
        offset: 40 * KIB,
        size: 8 * KIB,
    },
    active: Region {
        offset: 48 * KIB,
        size: 256 * KIB,
    },
    dfu: Region {
        offset: 304 * KIB,
        size: 260 * KIB,
    },
    model_a: Region {
        offset: 564 * KIB,
        size: 208 * KIB,
    },
    model_b: Region {
        offset: 772 * KIB,
        size: 208 * KIB,
    },
    kv: Region {
        offset: 980 * KIB,
        size: 40 * KIB,
    },
    identity: Region {
        offset: 1020 * KIB,
        size: 4 * KIB,
    },
    image_header_size: KIB,
    load_address: None,
    mapped_at: Some(0),
};

/// STM32L4R5ZI (NUCLEO-L4R5ZI: Cortex-M4F, 2 MiB flash in two banks of 1 MiB, dual-bank mode:
/// 4 KiB pages, 64-bit programming with ECC). Images execute in place from the active slot in
/// bank 1; the DFU slot and the second model slot are in bank 2. Addresses are offsets from
/// 0x0800_0000.
pub const STM32L4R5: Layout = Layout {
    board: "nucleo-l4r5zi",
    flash_size: 2048 * KIB,
    erase_size: 4 * KIB,
    write_size: 8,
    bootloader: Region {
        offset: 0,
        size: 32 * KIB,
    },
    // 512 KiB slots are 128 pages: a half of the log is 8 KiB (517 records of 8 bytes).
    state: Region {
        offset: 32 * KIB,
        size: 16 * KIB,
    },
    security_counter: Region {
        offset: 48 * KIB,
        size: 8 * KIB,
    },
    active: Region {
        offset: 64 * KIB,
        size: 512 * KIB,
    },
    model_a: Region {
        offset: 576 * KIB,
        size: 384 * KIB,
    },
    kv: Region {
        offset: 960 * KIB,
        size: 64 * KIB,
    },
    dfu: Region {
        offset: 1024 * KIB,
        size: 516 * KIB,
    },
    model_b: Region {
        offset: 1540 * KIB,
        size: 384 * KIB,
    },
    // The last page of bank 2.
    identity: Region {
        offset: 2044 * KIB,
        size: 4 * KIB,
    },
    image_header_size: KIB,
    load_address: None,
    mapped_at: Some(0x0800_0000),
};

const _: () = assert!(MPS2_AN386.is_valid());
const _: () = assert!(NRF52840.is_valid());
const _: () = assert!(STM32L4R5.is_valid());

/// Every board this build knows.
pub const BOARDS: [&Layout; 3] = [&MPS2_AN386, &NRF52840, &STM32L4R5];

/// The layout of a board by name.
pub fn board(name: &str) -> Option<&'static Layout> {
    BOARDS.iter().copied().find(|l| l.board == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broken_layouts_are_refused() {
        let mut l = MPS2_AN386;
        l.dfu.size = l.active.size;
        assert_eq!(l.check(), Err(LayoutError::DfuTooSmall));
        let mut l = MPS2_AN386;
        l.model_a.offset += 4 * KIB;
        assert_eq!(l.check(), Err(LayoutError::Overlap));
        let mut l = MPS2_AN386;
        l.kv.offset += 1;
        assert_eq!(l.check(), Err(LayoutError::Misaligned));
        let mut l = MPS2_AN386;
        l.active.size = 4 * KIB * 300;
        l.dfu.offset = l.active.end();
        assert!(l.check().is_err());
        assert_eq!(board("nrf52840-dk"), Some(&NRF52840));
        // The STM32L4R5's 512 KiB slot needs 8 KiB halves of state at 8-byte records.
        let mut l = NRF52840;
        l.identity.offset = l.kv.offset;
        assert_eq!(l.check(), Err(LayoutError::Overlap));
        let mut l = STM32L4R5;
        l.state.size = 8 * KIB;
        assert_eq!(l.check(), Err(LayoutError::StateTooSmall));
    }
}
