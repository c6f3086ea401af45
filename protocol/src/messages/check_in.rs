//! The check-in (device to server, every poll) and what it carries: firmware and boot status,
//! active model and slot, download progress, validation figures and counters.

use super::skip_value;
use super::{dec_device_id, dec_map, dec_version, enc_version};
use crate::codec::{EncodeError, Error, Message};
use artifact::Version;
use artifact::cbor::{Decode, Reader};
use artifact::cbor::{check_name, required, uint};
use minicbor::Encoder;
use minicbor::encode::Write;

/// Which of the two model slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelSlot {
    A,
    B,
}

impl ModelSlot {
    pub fn other(self) -> ModelSlot {
        match self {
            ModelSlot::A => ModelSlot::B,
            ModelSlot::B => ModelSlot::A,
        }
    }
}

/// What the bootloader said about the running firmware.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BootStatus {
    Confirmed,
    /// Running on trial after an update, not yet confirmed.
    Trial,
    /// The bootloader reverted to this image (a trial was not confirmed or was refused).
    Reverted,
}

/// The running firmware.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Firmware {
    pub version: Version,
    pub status: BootStatus,
}

/// The active model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunningModel<'a> {
    pub name: &'a str,
    pub version: Version,
    pub slot: ModelSlot,
}

/// An update being downloaded: the device resumes at `offset` after a reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub release: u64,
    pub offset: u32,
    pub total: u32,
}

/// What a model showed on the device's own validation set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Figures {
    pub samples: u32,
    pub accuracy_bp: u16,
    pub p50_us: u32,
    pub p99_us: u32,
}

/// Lifetime counters of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    pub boots: u32,
    pub inferences: u64,
    pub updates: u32,
    pub failures: u32,
    pub reverts: u32,
}

/// Figures as a map (keys 0-3); a report's `Validated` step carries the same map.
pub(super) fn enc_figures<W: Write>(e: &mut Encoder<W>, f: &Figures) -> Result<(), EncodeError<W>> {
    e.map(4)?
        .u8(0)?
        .u32(f.samples)?
        .u8(1)?
        .u16(f.accuracy_bp)?
        .u8(2)?
        .u32(f.p50_us)?
        .u8(3)?
        .u32(f.p99_us)?;
    Ok(())
}

/// Refuses an accuracy above 100 % (10 000 basis points).
pub(super) fn dec_figures(d: &mut Reader<'_>) -> Result<Figures, Error> {
    let mut f = Figures::default();
    dec_map(d, |k, d| {
        match k {
            0 => f.samples = uint(d)?,
            1 => f.accuracy_bp = uint(d)?,
            2 => f.p50_us = uint(d)?,
            3 => f.p99_us = uint(d)?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    if f.accuracy_bp > 10_000 {
        return Err(artifact::Error::InvalidValue.into());
    }
    Ok(f)
}

/// Device to server, every poll: who it is and what it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckIn<'a> {
    pub device_id: &'a str,
    pub board: &'a str,
    pub firmware: Firmware,
    pub model: Option<RunningModel<'a>>,
    pub update: Option<Progress>,
    /// The last validation run (of the active model, or of the update being judged).
    pub validation: Option<Figures>,
    pub counters: Counters,
    /// The model-runtime ABI the running firmware provides (key 8, added in revision 1.1;
    /// optional both ways, so the version stays 1: a server reads its absence as unknown).
    pub runtime_abi: Option<u32>,
    /// Long-poll (key 9, revision 1.2; optional both ways): the longest, in milliseconds, the
    /// sender will wait for the answer. A server may hold the check-in until there is a
    /// command for the device or this passes (bounded by its own poll interval and maximum),
    /// then answers what a check-in answers. Absent: answered at once, as before 1.2.
    pub wait_ms: Option<u32>,
    /// The payload stream formats the device decodes (key 10, revision 1.3; optional both
    /// ways): a bit set of `STREAM_*`. A server offers a delta or a compressed payload only to a
    /// device that names its format; absent, plain payloads only.
    pub streams: Option<u8>,
}

/// `CheckIn::streams`: the `delta` crate's `FDL1` streams (deltas and compressed payloads).
pub const STREAM_FDL1: u8 = 1;

impl<'a> Message<'a> for CheckIn<'a> {
    fn field_count(&self) -> u64 {
        4 + u64::from(self.model.is_some())
            + u64::from(self.update.is_some())
            + u64::from(self.validation.is_some())
            + u64::from(self.runtime_abi.is_some())
            + u64::from(self.wait_ms.is_some())
            + u64::from(self.streams.is_some())
    }

    fn encode_fields<W: Write>(&self, e: &mut Encoder<W>) -> Result<(), EncodeError<W>> {
        e.u8(1)?.str(self.device_id)?;
        e.u8(2)?.str(self.board)?;
        e.u8(3)?.map(2)?.u8(0)?;
        enc_version(e, self.firmware.version)?;
        e.u8(1)?.u8(self.firmware.status as u8)?;
        if let Some(m) = &self.model {
            e.u8(4)?.map(3)?.u8(0)?.str(m.name)?.u8(1)?;
            enc_version(e, m.version)?;
            e.u8(2)?.u8(m.slot as u8)?;
        }
        if let Some(p) = &self.update {
            e.u8(5)?
                .map(3)?
                .u8(0)?
                .u64(p.release)?
                .u8(1)?
                .u32(p.offset)?
                .u8(2)?
                .u32(p.total)?;
        }
        if let Some(f) = &self.validation {
            e.u8(6)?;
            enc_figures(e, f)?;
        }
        let c = &self.counters;
        e.u8(7)?.map(5)?;
        e.u8(0)?
            .u32(c.boots)?
            .u8(1)?
            .u64(c.inferences)?
            .u8(2)?
            .u32(c.updates)?
            .u8(3)?
            .u32(c.failures)?
            .u8(4)?
            .u32(c.reverts)?;
        if let Some(abi) = self.runtime_abi {
            e.u8(8)?.u32(abi)?;
        }
        if let Some(wait) = self.wait_ms {
            e.u8(9)?.u32(wait)?;
        }
        if let Some(s) = self.streams {
            e.u8(10)?.u8(s)?;
        }
        Ok(())
    }

    fn decode_field(&mut self, key: u64, d: &mut Reader<'a>) -> Result<(), Error> {
        match key {
            1 => self.device_id = dec_device_id(d)?,
            2 => self.board = check_name(d.text()?)?,
            3 => {
                let (mut version, mut status) = (None, None);
                dec_map(d, |k, d| {
                    match k {
                        0 => version = Some(dec_version(d)?),
                        1 => {
                            status = Some(match uint::<u8>(d)? {
                                0 => BootStatus::Confirmed,
                                1 => BootStatus::Trial,
                                2 => BootStatus::Reverted,
                                _ => return Err(artifact::Error::InvalidValue.into()),
                            })
                        }
                        _ => return Ok(false),
                    }
                    Ok(true)
                })?;
                self.firmware = Firmware {
                    version: required(version)?,
                    status: required(status)?,
                };
            }
            4 => {
                let (mut name, mut version, mut slot) = (None, None, None);
                dec_map(d, |k, d| {
                    match k {
                        0 => name = Some(check_name(d.text()?)?),
                        1 => version = Some(dec_version(d)?),
                        2 => {
                            slot = Some(match uint::<u8>(d)? {
                                0 => ModelSlot::A,
                                1 => ModelSlot::B,
                                _ => return Err(artifact::Error::InvalidValue.into()),
                            })
                        }
                        _ => return Ok(false),
                    }
                    Ok(true)
                })?;
                self.model = Some(RunningModel {
                    name: required(name)?,
                    version: required(version)?,
                    slot: required(slot)?,
                });
            }
            5 => {
                let (mut release, mut offset, mut total) = (None, None, None);
                dec_map(d, |k, d| {
                    match k {
                        0 => release = Some(uint(d)?),
                        1 => offset = Some(uint(d)?),
                        2 => total = Some(uint(d)?),
                        _ => return Ok(false),
                    }
                    Ok(true)
                })?;
                let p = Progress {
                    release: required(release)?,
                    offset: required(offset)?,
                    total: required(total)?,
                };
                if p.offset > p.total {
                    return Err(artifact::Error::InvalidValue.into());
                }
                self.update = Some(p);
            }
            6 => self.validation = Some(dec_figures(d)?),
            7 => {
                let c = &mut self.counters;
                dec_map(d, |k, d| {
                    match k {
                        0 => c.boots = uint(d)?,
                        1 => c.inferences = uint(d)?,
                        2 => c.updates = uint(d)?,
                        3 => c.failures = uint(d)?,
                        4 => c.reverts = uint(d)?,
                        _ => return Ok(false),
                    }
                    Ok(true)
                })?;
            }
            8 => self.runtime_abi = Some(uint(d)?),
            9 => self.wait_ms = Some(uint(d)?),
            10 => self.streams = Some(uint(d)?),
            _ => skip_value(d)?,
        }
        Ok(())
    }

    fn empty() -> Self {
        CheckIn {
            device_id: "",
            board: "",
            // A sentinel version: `finish` refuses a check-in without its firmware field.
            firmware: Firmware {
                version: Version::new(u32::MAX, u32::MAX, u32::MAX),
                status: BootStatus::Confirmed,
            },
            model: None,
            update: None,
            validation: None,
            counters: Counters::default(),
            runtime_abi: None,
            wait_ms: None,
            streams: None,
        }
    }

    fn finish(self) -> Result<Self, Error> {
        if self.device_id.is_empty()
            || self.board.is_empty()
            || self.firmware.version == Version::new(u32::MAX, u32::MAX, u32::MAX)
        {
            return Err(artifact::Error::MissingField.into());
        }
        Ok(self)
    }
}
