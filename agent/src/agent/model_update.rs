//! Model updates once downloaded: the validation gate before the switch, the switch itself (one
//! record), and the revert to the previous model still in the other slot.

use super::pending::{Stage, Target};
use super::validation::{figures_of, revert_reason, run_validation};
use super::{Agent, Next, slot_index, slot_of};
use crate::error::{Error, flash};
use crate::store::{ActiveModel, Key};
use artifact::{ComponentKind, Version};
use embassy_embedded_hal::flash::partition::BlockingPartition;
use embedded_storage::nor_flash::{NorFlash, ReadNorFlash};
use protocol::{Failure, RevertReason, Step};
use sha2::{Digest as _, Sha256};

impl<'f, F: NorFlash> Agent<'f, F> {
    /// Whether a complete download awaits validation (after a reset during validation, too).
    pub fn needs_validation(&self) -> bool {
        self.pending
            .is_some_and(|p| p.stage == Stage::Downloading(Target::Model) && self.cursor == p.total)
    }

    fn sizes(&self) -> Result<(u32, u32), Error> {
        let info = self.info()?;
        Ok((info.model_size, info.set_size))
    }

    /// Bytes of the model (then the validation set) of the update in progress: where the
    /// platform's interpreter finds them in the inactive slot.
    pub fn pending_sizes(&self) -> Option<(u32, u32)> {
        self.sizes().ok()
    }

    /// Runs the new model on its validation set (from the inactive slot's bytes, `slot`) and
    /// switches to it only if the policy holds; the old model stays in its slot.
    pub fn validate(
        &mut self,
        slot: &[u8],
        arena: &mut [u8],
        now_ns: impl FnMut() -> u64,
    ) -> Result<Next, Error> {
        if !self.needs_validation() {
            return Err(Error::NoUpdate);
        }
        let release = self.pending.map_or(0, |p| p.release);
        let (model_size, set_size) = self.sizes()?;
        let info = self.info()?;
        let (version, counter, policy, arena_size, model_digest, set_digest) = (
            info.version,
            info.counter,
            info.policy,
            info.arena,
            info.model_digest,
            info.set_digest,
        );
        let model_bytes = slot.get(..model_size as usize).ok_or(Error::DoesNotFit)?;
        let set_bytes = slot
            .get(model_size as usize..(model_size + set_size) as usize)
            .ok_or(Error::DoesNotFit)?;
        // The slot must still hold what was downloaded (flash can change under a reset).
        if artifact::sha256(model_bytes) != model_digest
            || artifact::sha256(set_bytes) != set_digest
        {
            // Reported before it is dropped: a reset in between repeats the check, not the loss.
            self.push_report(
                release,
                ComponentKind::Model,
                version,
                Step::Failed(Failure::Digest),
            )?;
            self.abandon()?;
            return Err(Error::Digest);
        }
        let outcome = run_validation(model_bytes, set_bytes, arena, now_ns);
        let report = match outcome {
            Ok(r) => r,
            Err(e) => {
                self.counters.failures += 1;
                self.push_report(
                    release,
                    ComponentKind::Model,
                    version,
                    Step::Failed(Failure::Model),
                )?;
                self.abandon()?;
                return Err(Error::Model(e));
            }
        };
        let figures = figures_of(&report);
        self.last_validation = Some(figures);
        self.push_report(
            release,
            ComponentKind::Model,
            version,
            Step::Validated(figures),
        )?;
        let verdict = model::judge(&report, &policy, self.active.map(|a| a.accuracy_bp));
        if !verdict.passed() {
            let reason = revert_reason(&verdict);
            self.counters.reverts += 1;
            self.push_report(
                release,
                ComponentKind::Model,
                version,
                Step::Reverted(reason),
            )?;
            self.abandon()?;
            return Ok(Next::Idle);
        }
        let new_slot = self.inactive_slot();
        let (name, name_len) = self.info()?.name;
        let active = ActiveModel {
            slot: slot_index(new_slot),
            name,
            name_len,
            version: (version.major, version.minor, version.patch),
            security_counter: counter,
            model_size,
            model_digest,
            set_size,
            set_digest,
            arena_size,
            accuracy_bp: report.accuracy_bp,
            min_accuracy_bp: policy.min_accuracy_bp,
            max_p99_latency_us: policy.max_p99_latency_us,
            max_accuracy_drop_bp: policy.max_accuracy_drop_bp,
        };
        // The report first: a reset after it finds the update still pending, validates it again
        // and switches, so the report comes true; a reset after the switch cannot lose it.
        self.counters.updates += 1;
        self.push_report(release, ComponentKind::Model, version, Step::Confirmed)?;
        // The previous model stays in its slot, recorded for an instant revert.
        if let Some(old) = self.active {
            self.store.set(Key::PreviousModel, &old, &mut self.buf)?;
        }
        // The switch is this one record: before it the old model is active, after it the new.
        self.store.set(Key::ActiveModel, &active, &mut self.buf)?;
        self.active = Some(active);
        self.clear_pending()?;
        Ok(Next::Switched(new_slot))
    }

    /// Back to the previous model (a rollout was rolled back): only if its slot still holds it
    /// intact, and no update is writing over it.
    pub(super) fn revert_model(&mut self) -> Result<Next, Error> {
        let (Some(current), Some(previous)) = (
            self.active,
            self.store
                .get::<ActiveModel>(Key::PreviousModel, &mut self.buf)?,
        ) else {
            return Ok(Next::Idle);
        };
        if self
            .pending
            .is_some_and(|p| p.stage.target() == Target::Model)
        {
            self.abandon()?;
        }
        if previous.slot == current.slot || !self.slot_intact(&previous)? {
            return Ok(Next::Idle);
        }
        self.store.set(Key::ActiveModel, &previous, &mut self.buf)?;
        self.store
            .set(Key::PreviousModel, &current, &mut self.buf)?;
        self.active = Some(previous);
        self.counters.reverts += 1;
        let (a, b, c) = current.version;
        self.push_report(
            0,
            ComponentKind::Model,
            Version::new(a, b, c),
            Step::Reverted(RevertReason::Requested),
        )?;
        Ok(Next::Switched(slot_of(previous.slot)))
    }

    /// Whether a model's slot still holds the bytes its record names.
    fn slot_intact(&self, m: &ActiveModel) -> Result<bool, Error> {
        let r = self.region(slot_of(m.slot));
        let mut part = BlockingPartition::new(self.flash, r.offset, r.size);
        let mut chunk = [0u8; 256];
        for (start, size, digest) in [
            (0, m.model_size, m.model_digest),
            (m.model_size, m.set_size, m.set_digest),
        ] {
            let mut h = Sha256::new();
            let mut at = start;
            while at < start + size {
                let n = (start + size - at).min(chunk.len() as u32) as usize;
                part.read(at, &mut chunk[..n]).map_err(flash)?;
                h.update(&chunk[..n]);
                at += n as u32;
            }
            if <[u8; 32]>::from(h.finalize()) != digest {
                return Ok(false);
            }
        }
        Ok(true)
    }
}
