//! The messages: check-in, command, chunk request and chunk, step report, and serial frames.

use crate::codec::{EncodeError, Error, Message, decode_from};
use crate::{MAX_CHUNK, MAX_DEVICE_ID, MAX_URL};
use artifact::cbor::{MapReader, array_exact, check_name, required, skip_value, uint};
use artifact::{ComponentKind, Version};
use minicbor::encode::Write;
use minicbor::{Decoder, Encoder};

// ---- shared pieces ----------------------------------------------------------------------

fn enc_version<W: Write>(e: &mut Encoder<W>, v: Version) -> Result<(), EncodeError<W>> {
    e.array(3)?.u32(v.major)?.u32(v.minor)?.u32(v.patch)?;
    Ok(())
}

fn dec_version(d: &mut Decoder<'_>) -> Result<Version, Error> {
    array_exact(d, 3)?;
    Ok(Version::new(uint(d)?, uint(d)?, uint(d)?))
}

fn dec_str<'a>(d: &mut Decoder<'a>, max: usize) -> Result<&'a str, Error> {
    let s = d.str()?;
    if s.is_empty() || s.len() > max {
        return Err(artifact::Error::InvalidName.into());
    }
    Ok(s)
}

/// Device ids: 1 to 64 bytes of `[A-Za-z0-9._:-]`.
fn dec_device_id<'a>(d: &mut Decoder<'a>) -> Result<&'a str, Error> {
    let s = dec_str(d, MAX_DEVICE_ID)?;
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
    {
        return Err(artifact::Error::InvalidName.into());
    }
    Ok(s)
}

fn dec_kind(d: &mut Decoder<'_>) -> Result<ComponentKind, Error> {
    match uint::<u8>(d)? {
        0 => Ok(ComponentKind::Firmware),
        1 => Ok(ComponentKind::Model),
        2 => Ok(ComponentKind::ValidationSet),
        _ => Err(artifact::Error::InvalidValue.into()),
    }
}

/// Reads a map of known small fields with `field`, skipping unknown ones.
fn dec_map<'a>(
    d: &mut Decoder<'a>,
    mut field: impl FnMut(u64, &mut Decoder<'a>) -> Result<bool, Error>,
) -> Result<(), Error> {
    let mut map = MapReader::begin(d)?;
    while let Some(k) = map.next_key(d)? {
        if !field(k, d)? {
            skip_value(d)?;
        }
    }
    Ok(())
}

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

fn enc_figures<W: Write>(e: &mut Encoder<W>, f: &Figures) -> Result<(), EncodeError<W>> {
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

fn dec_figures(d: &mut Decoder<'_>) -> Result<Figures, Error> {
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

// ---- check-in ----------------------------------------------------------------------------

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
}

impl<'a> Message<'a> for CheckIn<'a> {
    fn field_count(&self) -> u64 {
        4 + u64::from(self.model.is_some())
            + u64::from(self.update.is_some())
            + u64::from(self.validation.is_some())
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
        Ok(())
    }

    fn decode_field(&mut self, key: u64, d: &mut Decoder<'a>) -> Result<(), Error> {
        match key {
            1 => self.device_id = dec_device_id(d)?,
            2 => self.board = check_name(d.str()?)?,
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
                        0 => name = Some(check_name(d.str()?)?),
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

// ---- command -----------------------------------------------------------------------------

/// Server to device, in answer to a check-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    /// Nothing new; check in again after this many seconds.
    Idle { poll_after_s: u32 },
    /// Install a release: its signed manifest envelope, and where its payloads are fetched
    /// (concatenated in manifest order, by offset).
    Update {
        release: u64,
        envelope: &'a [u8],
        url: &'a str,
    },
    /// Go back to the previous version of a component (a rollout was rolled back).
    Revert { component: ComponentKind },
    /// Restart (after the next report is delivered).
    Reboot,
}

impl<'a> Message<'a> for Command<'a> {
    fn field_count(&self) -> u64 {
        match self {
            Command::Idle { .. } | Command::Revert { .. } => 2,
            Command::Update { .. } => 4,
            Command::Reboot => 1,
        }
    }

    fn encode_fields<W: Write>(&self, e: &mut Encoder<W>) -> Result<(), EncodeError<W>> {
        match self {
            Command::Idle { poll_after_s } => {
                e.u8(1)?.u8(0)?.u8(2)?.u32(*poll_after_s)?;
            }
            Command::Update {
                release,
                envelope,
                url,
            } => {
                e.u8(1)?
                    .u8(1)?
                    .u8(3)?
                    .u64(*release)?
                    .u8(4)?
                    .bytes(envelope)?
                    .u8(5)?
                    .str(url)?;
            }
            Command::Revert { component } => {
                e.u8(1)?.u8(2)?.u8(6)?.u8(*component as u8)?;
            }
            Command::Reboot => {
                e.u8(1)?.u8(3)?;
            }
        }
        Ok(())
    }

    fn decode_field(&mut self, key: u64, d: &mut Decoder<'a>) -> Result<(), Error> {
        // Fields land in a scratch command: the kind (key 1) comes first, its fields follow.
        match (key, &mut *self) {
            (1, cmd) => {
                *cmd = match uint::<u8>(d)? {
                    0 => Command::Idle {
                        poll_after_s: u32::MAX,
                    },
                    1 => Command::Update {
                        release: u64::MAX,
                        envelope: &[],
                        url: "",
                    },
                    2 => Command::Revert {
                        component: ComponentKind::ValidationSet,
                    },
                    3 => Command::Reboot,
                    _ => return Err(artifact::Error::InvalidValue.into()),
                }
            }
            (2, Command::Idle { poll_after_s }) => *poll_after_s = uint(d)?,
            (3, Command::Update { release, .. }) => *release = uint(d)?,
            (4, Command::Update { envelope, .. }) => {
                let b = d.bytes()?;
                if b.len() > artifact::MAX_ENVELOPE_LEN {
                    return Err(artifact::Error::TooLarge.into());
                }
                *envelope = b;
            }
            (5, Command::Update { url, .. }) => *url = dec_str(d, MAX_URL)?,
            (6, Command::Revert { component }) => *component = dec_kind(d)?,
            _ => skip_value(d)?,
        }
        Ok(())
    }

    fn empty() -> Self {
        // An invalid marker: `finish` refuses a command whose kind never came.
        Command::Revert {
            component: ComponentKind::ValidationSet,
        }
    }

    fn finish(self) -> Result<Self, Error> {
        let complete = match self {
            Command::Idle { poll_after_s } => poll_after_s != u32::MAX,
            Command::Update {
                release,
                envelope,
                url,
            } => release != u64::MAX && !envelope.is_empty() && !url.is_empty(),
            Command::Revert { component } => component != ComponentKind::ValidationSet,
            Command::Reboot => true,
        };
        if complete {
            Ok(self)
        } else {
            Err(artifact::Error::MissingField.into())
        }
    }
}

// ---- downloads ---------------------------------------------------------------------------

/// Device to gateway or server: the next piece of a release's payloads, at the device's pace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRequest {
    pub release: u64,
    pub offset: u32,
    /// At most `MAX_CHUNK`; the device picks what its buffers and link allow.
    pub len: u32,
}

impl<'a> Message<'a> for ChunkRequest {
    fn field_count(&self) -> u64 {
        3
    }

    fn encode_fields<W: Write>(&self, e: &mut Encoder<W>) -> Result<(), EncodeError<W>> {
        e.u8(1)?
            .u64(self.release)?
            .u8(2)?
            .u32(self.offset)?
            .u8(3)?
            .u32(self.len)?;
        Ok(())
    }

    fn decode_field(&mut self, key: u64, d: &mut Decoder<'a>) -> Result<(), Error> {
        match key {
            1 => self.release = uint(d)?,
            2 => self.offset = uint(d)?,
            3 => self.len = uint(d)?,
            _ => skip_value(d)?,
        }
        Ok(())
    }

    fn empty() -> Self {
        ChunkRequest {
            release: u64::MAX,
            offset: 0,
            len: 0,
        }
    }

    fn finish(self) -> Result<Self, Error> {
        if self.release == u64::MAX {
            return Err(artifact::Error::MissingField.into());
        }
        if self.len == 0 || self.len as usize > MAX_CHUNK {
            return Err(artifact::Error::TooLarge.into());
        }
        Ok(self)
    }
}

/// The answer to a chunk request: the bytes at `offset` (fewer than asked at the end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk<'a> {
    pub release: u64,
    pub offset: u32,
    pub data: &'a [u8],
}

impl<'a> Message<'a> for Chunk<'a> {
    fn field_count(&self) -> u64 {
        3
    }

    fn encode_fields<W: Write>(&self, e: &mut Encoder<W>) -> Result<(), EncodeError<W>> {
        e.u8(1)?
            .u64(self.release)?
            .u8(2)?
            .u32(self.offset)?
            .u8(3)?
            .bytes(self.data)?;
        Ok(())
    }

    fn decode_field(&mut self, key: u64, d: &mut Decoder<'a>) -> Result<(), Error> {
        match key {
            1 => self.release = uint(d)?,
            2 => self.offset = uint(d)?,
            3 => {
                let b = d.bytes()?;
                if b.len() > MAX_CHUNK {
                    return Err(artifact::Error::TooLarge.into());
                }
                self.data = b;
            }
            _ => skip_value(d)?,
        }
        Ok(())
    }

    fn empty() -> Self {
        Chunk {
            release: u64::MAX,
            offset: 0,
            data: &[],
        }
    }

    fn finish(self) -> Result<Self, Error> {
        if self.release == u64::MAX {
            return Err(artifact::Error::MissingField.into());
        }
        Ok(self)
    }
}

// ---- reports -----------------------------------------------------------------------------

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
fn dec_step(d: &mut Decoder<'_>) -> Result<Step, Error> {
    let n = d.array()?.ok_or(artifact::Error::Malformed)?;
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

    fn decode_field(&mut self, key: u64, d: &mut Decoder<'a>) -> Result<(), Error> {
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

// ---- serial frames -----------------------------------------------------------------------

/// Longest device credential, in bytes.
pub const MAX_CREDENTIAL: usize = 128;

/// Device to gateway, first on every serial link: who is at the other end, with the credential
/// the gateway presents to the server on its behalf (HTTP devices send it as a bearer token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello<'a> {
    pub device_id: &'a str,
    /// 1 to 128 printable ASCII bytes.
    pub credential: &'a str,
}

impl<'a> Message<'a> for Hello<'a> {
    fn field_count(&self) -> u64 {
        2
    }

    fn encode_fields<W: Write>(&self, e: &mut Encoder<W>) -> Result<(), EncodeError<W>> {
        e.u8(1)?.str(self.device_id)?.u8(2)?.str(self.credential)?;
        Ok(())
    }

    fn decode_field(&mut self, key: u64, d: &mut Decoder<'a>) -> Result<(), Error> {
        match key {
            1 => self.device_id = dec_device_id(d)?,
            2 => {
                let s = dec_str(d, MAX_CREDENTIAL)?;
                if !s.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(artifact::Error::InvalidName.into());
                }
                self.credential = s;
            }
            _ => skip_value(d)?,
        }
        Ok(())
    }

    fn empty() -> Self {
        Hello {
            device_id: "",
            credential: "",
        }
    }

    fn finish(self) -> Result<Self, Error> {
        if self.device_id.is_empty() || self.credential.is_empty() {
            return Err(artifact::Error::MissingField.into());
        }
        Ok(self)
    }
}

/// What a device sends on a serial link (the gateway turns each into an HTTP request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceFrame<'a> {
    CheckIn(CheckIn<'a>),
    ChunkRequest(ChunkRequest),
    Report(Report<'a>),
    /// Opens the link (kind 3).
    Hello(Hello<'a>),
}

/// What a device receives on a serial link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerFrame<'a> {
    Command(Command<'a>),
    Chunk(Chunk<'a>),
    /// The report with this sequence number is stored by the server: the device may drop it.
    ReportAck {
        seq: u32,
    },
}

impl<'a> DeviceFrame<'a> {
    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, Error> {
        match self {
            DeviceFrame::CheckIn(m) => frame(0, buf, &mut |b| crate::encode(m, b)),
            DeviceFrame::ChunkRequest(m) => frame(1, buf, &mut |b| crate::encode(m, b)),
            DeviceFrame::Report(m) => frame(2, buf, &mut |b| crate::encode(m, b)),
            DeviceFrame::Hello(m) => frame(3, buf, &mut |b| crate::encode(m, b)),
        }
    }

    pub fn decode(bytes: &'a [u8]) -> Result<Self, Error> {
        let (kind, mut d) = unframe(bytes)?;
        let f = match kind {
            0 => DeviceFrame::CheckIn(decode_from(&mut d)?),
            1 => DeviceFrame::ChunkRequest(decode_from(&mut d)?),
            2 => DeviceFrame::Report(decode_from(&mut d)?),
            3 => DeviceFrame::Hello(decode_from(&mut d)?),
            _ => return Err(artifact::Error::WrongDocument.into()),
        };
        artifact::cbor::finish(&d)?;
        Ok(f)
    }
}

impl<'a> ServerFrame<'a> {
    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, Error> {
        match self {
            ServerFrame::Command(m) => frame(0, buf, &mut |b| crate::encode(m, b)),
            ServerFrame::Chunk(m) => frame(1, buf, &mut |b| crate::encode(m, b)),
            ServerFrame::ReportAck { seq } => frame(2, buf, &mut |b| {
                let mut e = Encoder::new(minicbor::encode::write::Cursor::new(b));
                e.u32(*seq).map_err(|_| Error::BufferTooSmall)?;
                Ok(e.into_writer().position())
            }),
        }
    }

    pub fn decode(bytes: &'a [u8]) -> Result<Self, Error> {
        let (kind, mut d) = unframe(bytes)?;
        let f = match kind {
            0 => ServerFrame::Command(decode_from(&mut d)?),
            1 => ServerFrame::Chunk(decode_from(&mut d)?),
            2 => ServerFrame::ReportAck { seq: uint(&mut d)? },
            _ => return Err(artifact::Error::WrongDocument.into()),
        };
        artifact::cbor::finish(&d)?;
        Ok(f)
    }
}

/// `[kind, body]`: an array header, the kind, then the body written by `body`.
fn frame(
    kind: u8,
    buf: &mut [u8],
    body: &mut dyn FnMut(&mut [u8]) -> Result<usize, Error>,
) -> Result<usize, Error> {
    let (head, rest) = buf.split_at_mut_checked(2).ok_or(Error::BufferTooSmall)?;
    head.copy_from_slice(&[0x82, kind]); // array(2), small uint
    Ok(2 + body(rest)?)
}

fn unframe(bytes: &[u8]) -> Result<(u8, Decoder<'_>), Error> {
    let mut d = Decoder::new(bytes);
    array_exact(&mut d, 2)?;
    let kind = uint::<u8>(&mut d)?;
    Ok((kind, d))
}
