//! The report (device to server): one step of an update, with its revert reason or failure code.

use super::check_in::{Figures, dec_figures, enc_figures};
use super::skip_value;
use super::{dec_device_id, dec_kind, dec_version, enc_version};
use crate::codec::{EncodeError, Error, Message};
use artifact::cbor::uint;
use artifact::cbor::{Decode, Reader};
use artifact::{ComponentKind, Version};
use minicbor::Encoder;
use minicbor::encode::Write;

/// Why a component went back to its previous version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RevertReason {
    /// Validation accuracy below the policy's minimum.
    Accuracy,
    /// Validation p99 latency above the policy's maximum.
    Latency,
    /// Accuracy dropped more than allowed against the replaced model.
    AccuracyDrop,
    /// The bootloader reverted a firmware trial that was not confirmed (hang, crash, reset).
    NotConfirmed,
    /// The bootloader refused the new image (signature, digest, security counter).
    Refused,
    /// The server asked for it.
    Requested,
}

/// Why an update failed before it could be tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Failure {
    /// The envelope failed verification: the `artifact::Error` code tells why.
    Manifest(artifact::Error),
    /// A payload's SHA-256 differs from the manifest: a corrupted chunk.
    Digest,
    /// The model or validation set does not load (malformed, unsupported, arena).
    Model,
    Flash,
    Download,
    /// A failure code this version does not know.
    Other(u16),
}

/// One step of an update on a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Downloaded,
    Installed,
    Booted,
    Validated(Figures),
    Confirmed,
    Reverted(RevertReason),
    Failed(Failure),
}

/// Device to server: a step of an update. `seq` increases per device, so a report delivered
/// twice (after a lost acknowledgement) is counted once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report<'a> {
    pub device_id: &'a str,
    pub seq: u32,
    pub release: u64,
    pub component: ComponentKind,
    pub version: Version,
    pub step: Step,
}

const FAILURE_MANIFEST_BASE: u16 = 1000;

fn failure_code(f: Failure) -> u16 {
    match f {
        Failure::Digest => 1,
        Failure::Model => 2,
        Failure::Flash => 3,
        Failure::Download => 4,
        Failure::Manifest(e) => FAILURE_MANIFEST_BASE + manifest_code(e),
        Failure::Other(c) => c,
    }
}

/// Stable numbers for the artifact errors a device reports.
const MANIFEST_ERRORS: [artifact::Error; 12] = [
    artifact::Error::Malformed,
    artifact::Error::BadSignature,
    artifact::Error::UnknownKey,
    artifact::Error::BelowThreshold,
    artifact::Error::DuplicateSignature,
    artifact::Error::WrongBoard,
    artifact::Error::SecurityCounter,
    artifact::Error::AbiMismatch,
    artifact::Error::TooLarge,
    artifact::Error::InconsistentComponents,
    artifact::Error::UnknownCriticalField,
    artifact::Error::Truncated,
];

fn manifest_code(e: artifact::Error) -> u16 {
    MANIFEST_ERRORS
        .iter()
        .position(|&x| x == e)
        .map_or(0, |i| i as u16 + 1)
}

fn failure_from(code: u16) -> Failure {
    match code {
        1 => Failure::Digest,
        2 => Failure::Model,
        3 => Failure::Flash,
        4 => Failure::Download,
        c if c > FAILURE_MANIFEST_BASE => {
            match MANIFEST_ERRORS.get(usize::from(c - FAILURE_MANIFEST_BASE - 1)) {
                Some(&e) => Failure::Manifest(e),
                None => Failure::Other(c),
            }
        }
        c => Failure::Other(c),
    }
}

fn enc_step<W: Write>(e: &mut Encoder<W>, step: &Step) -> Result<(), EncodeError<W>> {
    match step {
        Step::Downloaded => e.array(1)?.u8(0)?,
        Step::Installed => e.array(1)?.u8(1)?,
        Step::Booted => e.array(1)?.u8(2)?,
        Step::Validated(f) => {
            e.array(2)?.u8(3)?;
            enc_figures(e, f)?;
            e
        }
        Step::Confirmed => e.array(1)?.u8(4)?,
        Step::Reverted(r) => e.array(2)?.u8(5)?.u8(*r as u8)?,
        Step::Failed(f) => e.array(2)?.u8(6)?.u16(failure_code(*f))?,
    };
    Ok(())
}

/// A step is `[kind]` or `[kind, detail]`: the detail travels with its kind.
fn dec_step(d: &mut Reader<'_>) -> Result<Step, Error> {
    let n = d.array_header()?;
    let kind = uint::<u8>(d)?;
    let with_detail = matches!(kind, 3 | 5 | 6);
    if n != 1 + u64::from(with_detail) {
        return Err(artifact::Error::Malformed.into());
    }
    Ok(match kind {
        0 => Step::Downloaded,
        1 => Step::Installed,
        2 => Step::Booted,
        3 => Step::Validated(dec_figures(d)?),
        4 => Step::Confirmed,
        5 => Step::Reverted(match uint::<u8>(d)? {
            0 => RevertReason::Accuracy,
            1 => RevertReason::Latency,
            2 => RevertReason::AccuracyDrop,
            3 => RevertReason::NotConfirmed,
            4 => RevertReason::Refused,
            5 => RevertReason::Requested,
            _ => return Err(artifact::Error::InvalidValue.into()),
        }),
        6 => Step::Failed(failure_from(uint(d)?)),
        _ => return Err(artifact::Error::InvalidValue.into()),
    })
}

impl<'a> Message<'a> for Report<'a> {
    fn field_count(&self) -> u64 {
        6
    }

    fn encode_fields<W: Write>(&self, e: &mut Encoder<W>) -> Result<(), EncodeError<W>> {
        e.u8(1)?.str(self.device_id)?;
        e.u8(2)?.u32(self.seq)?;
        e.u8(3)?.u64(self.release)?;
        e.u8(4)?.u8(self.component as u8)?;
        e.u8(5)?;
        enc_version(e, self.version)?;
        e.u8(6)?;
        enc_step(e, &self.step)
    }

    fn decode_field(&mut self, key: u64, d: &mut Reader<'a>) -> Result<(), Error> {
        match key {
            1 => self.device_id = dec_device_id(d)?,
            2 => self.seq = uint(d)?,
            3 => self.release = uint(d)?,
            4 => self.component = dec_kind(d)?,
            5 => self.version = dec_version(d)?,
            6 => self.step = dec_step(d)?,
            _ => skip_value(d)?,
        }
        Ok(())
    }

    fn empty() -> Self {
        Report {
            device_id: "",
            seq: 0,
            release: u64::MAX,
            component: ComponentKind::ValidationSet,
            version: Version::new(0, 0, 0),
            // A sentinel: `finish` refuses a report whose step never came.
            step: Step::Failed(Failure::Other(u16::MAX)),
        }
    }

    fn finish(self) -> Result<Self, Error> {
        if self.device_id.is_empty()
            || self.release == u64::MAX
            || self.component == ComponentKind::ValidationSet
            || self.step == Step::Failed(Failure::Other(u16::MAX))
        {
            return Err(artifact::Error::MissingField.into());
        }
        Ok(self)
    }
}
