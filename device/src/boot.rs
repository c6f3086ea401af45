//! What the bootloader says of this boot: on the emulated board a RAM handoff, on boards that
//! execute in place read back from the flash (the boot state log and the active slot's header).

use artifact::{TrustRoot, Version};
use bootloader::SharedFlash;
use bootloader::{BootState, Phase};
use embassy_embedded_hal::flash::partition::BlockingPartition;
use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use embedded_storage::nor_flash::NorFlash;
use layout::Layout;
use protocol::BootStatus;

/// The largest image header `boot_info_from_flash` reads (every layout's is 1 KiB).
pub(crate) const MAX_HEADER: usize = 1024;

/// This boot, as the agent needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootInfo {
    pub status: BootStatus,
    /// The running firmware's version.
    pub version: Version,
    /// Boots since power-on, this one included (1 where the board cannot tell).
    pub boots: u32,
}

/// The boot read back from flash, for boards whose bootloader leaves nothing in RAM: a swap not
/// yet confirmed is a trial, a revert not yet confirmed is a revert; the version is the active
/// slot's signed header's. `None` when the active slot's header does not verify (the bootloader
/// would not have started it).
pub fn boot_info_from_flash<F: NorFlash>(
    flash: &SharedFlash<F>,
    layout: &Layout,
    root: &TrustRoot,
    header: &mut [u8],
) -> Option<BootInfo> {
    let part =
        |r: layout::Region| BlockingPartition::<'_, NoopRawMutex, F>::new(flash, r.offset, r.size);
    let phase = BootState::new(part(layout.state)).ok()?.phase();
    let status = match phase {
        Phase::Swapped { .. } => BootStatus::Trial,
        Phase::Reverted => BootStatus::Reverted,
        _ => BootStatus::Confirmed,
    };
    let image = bootloader::check_header(&mut part(layout.active), layout, root, header).ok()?;
    Some(BootInfo {
        status,
        version: image.version,
        boots: 1,
    })
}
