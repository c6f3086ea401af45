//! A simulated device: flash, layout, trust root, and the steps of an update's life.

use artifact::TrustRoot;
use bootloader::{BootState, Decision, Error, SharedFlash, boot};
use core::cell::RefCell;
use embassy_embedded_hal::flash::partition::BlockingPartition;
use embassy_sync::blocking_mutex::Mutex;
use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use layout::{Layout, Region};
use norsim::{Fault, NorSim};
use testkit::image::SlotImage;
use testkit::keys::trust_root;

/// A device: one flash, its layout, and the trust root its bootloader carries.
#[allow(missing_debug_implementations)] // the shared flash is a mutex without Debug
pub struct Device<const W: usize, const E: usize> {
    pub flash: SharedFlash<NorSim<W, E>>,
    pub layout: Layout,
    pub root: TrustRoot,
}

impl<const W: usize, const E: usize> Clone for Device<W, E> {
    fn clone(&self) -> Self {
        Device {
            flash: Mutex::new(RefCell::new(self.flash.lock(|f| f.borrow().clone()))),
            layout: self.layout,
            root: self.root.clone(),
        }
    }
}

impl<const W: usize, const E: usize> Device<W, E> {
    /// A device whose active slot holds `installed` (confirmed).
    pub fn new(layout: Layout, installed: &SlotImage, ecc: bool) -> Self {
        let mut flash = NorSim::<W, E>::new(layout.flash_size as usize).with_ecc(ecc);
        flash.preload(layout.active.offset as usize, &installed.bytes);
        Device {
            flash: Mutex::new(RefCell::new(flash)),
            layout,
            root: trust_root(),
        }
    }

    /// A device whose flash holds `bytes` (a flash file read back from an emulated board).
    pub fn from_bytes(layout: Layout, bytes: &[u8]) -> Self {
        let mut flash = NorSim::<W, E>::new(layout.flash_size as usize);
        flash.preload(0, bytes);
        Device {
            flash: Mutex::new(RefCell::new(flash)),
            layout,
            root: trust_root(),
        }
    }

    fn part(&self, r: Region) -> BlockingPartition<'_, NoopRawMutex, NorSim<W, E>> {
        BlockingPartition::new(&self.flash, r.offset, r.size)
    }

    pub fn with_flash<T>(&self, f: impl FnOnce(&mut NorSim<W, E>) -> T) -> T {
        self.flash.lock(|c| f(&mut c.borrow_mut()))
    }

    pub fn plan(&self, fault: Fault) {
        self.with_flash(|f| f.plan(fault));
    }

    pub fn power_on(&self) {
        self.with_flash(|f| f.power_on());
    }

    pub fn ops(&self) -> u64 {
        self.with_flash(|f| f.ops())
    }

    /// Reset: the bootloader runs.
    pub fn boot(&self) -> Result<Decision, Error> {
        let mut page = vec![0u8; E];
        boot(&self.flash, &self.layout, &self.root, &mut page)
    }

    /// The agent writes an update to the DFU slot (erasing the pages it covers) and marks it
    /// for swap.
    pub fn stage(&self, image: &SlotImage) -> Result<(), Error> {
        use embedded_storage::nor_flash::NorFlash as _;
        let dfu = self.layout.dfu;
        let mut data = image.bytes.clone();
        data.resize(data.len().div_ceil(W) * W, 0xFF);
        let end = (data.len() as u32).div_ceil(E as u32) * E as u32;
        self.with_flash(|f| -> Result<(), Error> {
            f.erase(dfu.offset, dfu.offset + end)
                .map_err(bootloader::flash_error)?;
            f.write(dfu.offset, &data).map_err(bootloader::flash_error)
        })?;
        self.state()?.mark_updated(self.layout.active_pages())
    }

    /// The boot state as the application reads it.
    pub fn state(
        &self,
    ) -> Result<BootState<BlockingPartition<'_, NoopRawMutex, NorSim<W, E>>>, Error> {
        BootState::new(self.part(self.layout.state))
    }

    /// The application confirms the running image (marks it booted).
    pub fn confirm(&self) -> Result<(), Error> {
        self.state()?.mark_booted()
    }
}
