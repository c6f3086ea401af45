//! A release's verified manifest: the checks against this device before anything is written,
//! and what an update keeps of it while in progress.

use super::Agent;
use super::pending::Target;
use crate::Error;
use artifact::{ComponentKind, DeviceState, Manifest, Version};
use embassy_embedded_hal::flash::partition::BlockingPartition;
use embedded_storage::nor_flash::{NorFlash, NorFlashErrorKind};

/// The parts of a verified manifest the agent needs while an update is in progress.
#[derive(Debug, Clone)]
pub(super) struct ReleaseInfo {
    /// The primary component's name (names are at most 32 bytes).
    pub(super) name: ([u8; 32], u8),
    pub(super) version: Version,
    pub(super) counter: u64,
    pub(super) policy: artifact::Policy,
    pub(super) arena: u32,
    /// (size, digest) of each payload, in download order.
    pub(super) parts: heapless::Vec<(u32, [u8; 32]), 2>,
    pub(super) model_size: u32,
    pub(super) set_size: u32,
    pub(super) model_digest: [u8; 32],
    pub(super) set_digest: [u8; 32],
}

/// What an update needs of its verified manifest.
pub(super) fn release_info_of(m: &Manifest<'_>) -> Result<ReleaseInfo, Error> {
    let primary = m.primary().ok_or(Error::DoesNotFit)?;
    let mut parts = heapless::Vec::new();
    for kind in [
        ComponentKind::Firmware,
        ComponentKind::Model,
        ComponentKind::ValidationSet,
    ] {
        if let Some(c) = m.component(kind) {
            parts
                .push((c.size, c.digest))
                .map_err(|_| Error::DoesNotFit)?;
        }
    }
    let part = |k| m.component(k).map_or((0, [0; 32]), |c| (c.size, c.digest));
    let (model_size, model_digest) = part(ComponentKind::Model);
    let (set_size, set_digest) = part(ComponentKind::ValidationSet);
    let mut name = [0u8; 32];
    let len = primary.name.len().min(32);
    name[..len].copy_from_slice(&primary.name.as_bytes()[..len]);
    Ok(ReleaseInfo {
        name: (name, len as u8),
        version: primary.version,
        counter: m.security_counter,
        policy: m.policy.unwrap_or_default(),
        arena: m.arena_size.unwrap_or(0),
        parts,
        model_size,
        set_size,
        model_digest,
        set_digest,
    })
}

impl<'f, F: NorFlash> Agent<'f, F> {
    pub(super) fn info(&self) -> Result<&ReleaseInfo, Error> {
        self.info.as_ref().ok_or(Error::NoUpdate)
    }

    /// Returns the payload bytes to download and where they go.
    pub(super) fn check_release(
        &self,
        m: &Manifest<'_>,
        envelope_len: usize,
    ) -> Result<(u32, Target), Error> {
        let firmware = m.component(ComponentKind::Firmware);
        let model = m.component(ComponentKind::Model);
        let firmware_counter = match firmware {
            Some(_) => {
                let r = self.layout.security_counter;
                bootloader::SecurityCounter::new(BlockingPartition::new(
                    self.flash, r.offset, r.size,
                ))
                .and_then(|mut c| c.get())
                .map_err(|e| match e {
                    bootloader::Error::Flash(kind) => Error::Flash(kind),
                    // The counter's sectors do not fit its layout: still the flash, to us.
                    _ => Error::Flash(NorFlashErrorKind::Other),
                })?
            }
            None => 0,
        };
        m.check_device(&DeviceState {
            board: self.identity.board,
            runtime_abi: self.identity.runtime_abi,
            firmware_counter,
            model_counter: self.active.map_or(0, |a| a.security_counter),
        })
        .map_err(Error::Refused)?;
        match (firmware, model) {
            (Some(fw), None) => {
                let header = self.layout.image_header_size;
                if fw.size > self.layout.max_image_size()
                    || envelope_len + bootloader::header::PREFIX_LEN > header as usize
                {
                    return Err(Error::DoesNotFit);
                }
                // A new firmware must run the active model: no older runtime ABI than the
                // running one (a later ABI runs older models).
                if m.runtime_abi < Some(self.identity.runtime_abi) && self.active.is_some() {
                    return Err(Error::Refused(artifact::Error::AbiMismatch));
                }
                Ok((fw.size, Target::Firmware))
            }
            (None, Some(model)) => {
                let set = m
                    .component(ComponentKind::ValidationSet)
                    .ok_or(Error::DoesNotFit)?;
                let total = model.size.checked_add(set.size).ok_or(Error::DoesNotFit)?;
                if total > self.region(self.inactive_slot()).size
                    || m.arena_size.unwrap_or(u32::MAX) > self.identity.arena_capacity
                {
                    return Err(Error::DoesNotFit);
                }
                Ok((total, Target::Model))
            }
            // A firmware shipped with its model is not handled yet.
            _ => Err(Error::DoesNotFit),
        }
    }
}
