//! Firmware updates once downloaded: the trial boot, its validation against the active model's
//! policy, the confirm, and the reverts (asked for, or done by the bootloader on its own).

use super::pending::{Event, Stage, Update};
use super::validation::{figures_of, revert_reason, run_validation};
use super::{Agent, Next};
use crate::Error;
use artifact::{ComponentKind, Version};
use embassy_embedded_hal::flash::partition::BlockingPartition;
use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use embedded_storage::nor_flash::{NorFlash, NorFlashErrorKind};

/// The two marks the application makes in the bootloader's state.
pub(super) struct BootMarks<'f, F: NorFlash> {
    state: bootloader::BootState<BlockingPartition<'f, NoopRawMutex, F>>,
    slot_pages: u32,
}

impl<F: NorFlash> BootMarks<'_, F> {
    /// Swap in the DFU slot's image at the next boot.
    pub(super) fn mark_updated(&mut self) -> Result<(), bootloader::Error> {
        self.state.mark_updated(self.slot_pages)
    }

    /// The running image is good.
    pub(super) fn mark_booted(&mut self) -> Result<(), bootloader::Error> {
        self.state.mark_booted()
    }
}

/// The state log's errors as the agent's: a flash error keeps its kind; a refused mark (a
/// trial or swap in progress, a full log) is a flash-level failure of the update.
fn boot_error(e: bootloader::Error) -> Error {
    match e {
        bootloader::Error::Flash(kind) => Error::Flash(kind),
        _ => Error::Flash(NorFlashErrorKind::Other),
    }
}
use protocol::{BootStatus, RevertReason, Step};

impl<'f, F: NorFlash> Agent<'f, F> {
    /// After every boot, with what the bootloader said of the running firmware. A firmware on
    /// trial must prove the active model still meets its policy (`confirm_firmware`); a revert
    /// the bootloader did on its own is reported here.
    pub fn after_boot(&mut self, status: BootStatus, running: Version) -> Result<Next, Error> {
        let Some(p) = self
            .pending
            .filter(|p| matches!(p.stage, Stage::Installed | Stage::Trial | Stage::Rejected))
        else {
            return Ok(Next::Idle);
        };
        let version = self.info()?.version;
        match status {
            BootStatus::Trial if running == version => {
                // The first boot of the trial moves it on (and is reported); later ones do not.
                if let Some(trial) = p.stage.next(Event::Booted) {
                    self.push_report(p.release, ComponentKind::Firmware, version, Step::Booted)?;
                    self.set_pending(Update { stage: trial, ..p })?;
                }
                Ok(Next::CheckFirmware)
            }
            BootStatus::Reverted | BootStatus::Trial => {
                // The bootloader went back: the trial hung, crashed, failed its checks, or the
                // new image was refused. Report it (once), then confirm the old firmware.
                if p.stage != Stage::Rejected {
                    self.counters.reverts += 1;
                    self.push_report(
                        p.release,
                        ComponentKind::Firmware,
                        version,
                        Step::Reverted(RevertReason::NotConfirmed),
                    )?;
                }
                self.mark_booted()?;
                self.clear_pending()?;
                Ok(Next::Idle)
            }
            BootStatus::Confirmed => {
                if running == version {
                    // Confirmed before the power went: finish the bookkeeping.
                    self.counters.updates += 1;
                    self.push_report(p.release, ComponentKind::Firmware, version, Step::Confirmed)?;
                }
                self.clear_pending()?;
                Ok(Next::Idle)
            }
        }
    }

    /// On a firmware trial: run the active model's validation set under the new firmware
    /// (`slot`: the active model slot's bytes). Confirm if its policy still holds; otherwise
    /// report the revert and ask for a reset, so that the bootloader goes back.
    pub fn confirm_firmware(
        &mut self,
        slot: &[u8],
        arena: &mut [u8],
        now_ns: impl FnMut() -> u64,
    ) -> Result<Next, Error> {
        let Some(p) = self.pending.filter(|p| p.stage == Stage::Trial) else {
            return Err(Error::NoUpdate);
        };
        let version = self.info()?.version;
        let verdict = match self.active {
            None => None,
            Some(a) => {
                let model_bytes = slot.get(..a.model_size as usize).ok_or(Error::DoesNotFit)?;
                let set_bytes = slot
                    .get(a.model_size as usize..(a.model_size + a.set_size) as usize)
                    .ok_or(Error::DoesNotFit)?;
                let report =
                    run_validation(model_bytes, set_bytes, arena, now_ns).map_err(Error::Model)?;
                let figures = figures_of(&report);
                self.last_validation = Some(figures);
                self.push_report(
                    p.release,
                    ComponentKind::Firmware,
                    version,
                    Step::Validated(figures),
                )?;
                let policy = artifact::Policy {
                    min_accuracy_bp: a.min_accuracy_bp,
                    max_p99_latency_us: a.max_p99_latency_us,
                    max_accuracy_drop_bp: a.max_accuracy_drop_bp,
                };
                Some(model::judge(&report, &policy, Some(a.accuracy_bp)))
            }
        };
        match verdict {
            Some(v) if !v.passed() => {
                let rejected = p.stage.next(Event::TrialFailed).ok_or(Error::NoUpdate)?;
                let reason = revert_reason(&v);
                self.counters.reverts += 1;
                self.push_report(
                    p.release,
                    ComponentKind::Firmware,
                    version,
                    Step::Reverted(reason),
                )?;
                self.set_pending(Update {
                    stage: rejected,
                    ..p
                })?;
                Ok(Next::Reboot)
            }
            _ => {
                self.mark_booted()?;
                self.counters.updates += 1;
                self.push_report(p.release, ComponentKind::Firmware, version, Step::Confirmed)?;
                self.clear_pending()?;
                Ok(Next::Idle)
            }
        }
    }

    fn mark_booted(&mut self) -> Result<(), Error> {
        self.boot_state(|state| state.mark_booted())
    }

    /// The bootloader's state log (format 2), as the application side sees it.
    pub(super) fn boot_state(
        &self,
        op: impl FnOnce(&mut BootMarks<'f, F>) -> Result<(), bootloader::Error>,
    ) -> Result<(), Error> {
        let r = self.layout.state;
        let state =
            bootloader::BootState::new(BlockingPartition::new(self.flash, r.offset, r.size))
                .map_err(boot_error)?;
        let mut marks = BootMarks {
            state,
            slot_pages: self.layout.active_pages(),
        };
        op(&mut marks).map_err(boot_error)
    }
}
