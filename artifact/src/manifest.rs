//! The release manifest: components with digests, compatibility, security counter, validation policy.

use crate::cbor::{Decode as _, Reader};
use crate::cbor::{
    MapReader, array_len, bytes_exact, check_name, finish, required, skip_value, uint,
};
use crate::{
    Digest, Error, MAX_ARENA_SIZE, MAX_BOARDS, MAX_COMPONENT_SIZE, MAX_COMPONENTS, Version,
};
use heapless::Vec;

/// Manifest format version this code writes and reads.
pub const MANIFEST_FORMAT: u8 = 1;

/// Default and usual maximum p99 inference latency: 10 ms.
pub const DEFAULT_MAX_P99_LATENCY_US: u32 = 10_000;

/// Accuracies are integers in basis points (1/100 of a percent): no floats on the device.
pub const FULL_ACCURACY_BP: u16 = 10_000;

/// What a component is; the order of the variants is the order components appear in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum ComponentKind {
    Firmware = 0,
    Model = 1,
    ValidationSet = 2,
}

impl ComponentKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            ComponentKind::Firmware => "firmware",
            ComponentKind::Model => "model",
            ComponentKind::ValidationSet => "validation-set",
        }
    }

    fn from_u8(v: u8) -> Result<Self, Error> {
        match v {
            0 => Ok(ComponentKind::Firmware),
            1 => Ok(ComponentKind::Model),
            2 => Ok(ComponentKind::ValidationSet),
            _ => Err(Error::InvalidValue),
        }
    }
}

/// One payload of the release, bound by size and SHA-256.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Component<'a> {
    pub kind: ComponentKind,
    pub name: &'a str,
    pub version: Version,
    pub size: u32,
    pub digest: Digest,
}

/// What a model must show on the device's own validation set before the device commits to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Minimum top-1 accuracy, basis points.
    pub min_accuracy_bp: u16,
    /// Maximum 99th-percentile inference latency, microseconds.
    pub max_p99_latency_us: u32,
    /// Maximum accuracy drop against the model being replaced, basis points
    /// (10 000 means no limit).
    pub max_accuracy_drop_bp: u16,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            min_accuracy_bp: 0,
            max_p99_latency_us: DEFAULT_MAX_P99_LATENCY_US,
            max_accuracy_drop_bp: FULL_ACCURACY_BP,
        }
    }
}

/// What a device knows about itself when it judges a manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceState<'a> {
    pub board: &'a str,
    /// Model-runtime ABI of the running firmware.
    pub runtime_abi: u32,
    /// Security counter of the confirmed firmware (stored by the bootloader).
    pub firmware_counter: u64,
    /// Security counter of the confirmed model.
    pub model_counter: u64,
}

/// A release. Decoding borrows names from the input; nothing is allocated.
///
/// Valid releases: a firmware alone; a model with its validation set; or all three (a model
/// that needs the firmware shipped with it). Components appear in `ComponentKind` order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest<'a> {
    /// Monotonic anti-rollback counter; a device refuses a manifest below what it trusts for
    /// each kind of component the manifest carries.
    pub security_counter: u64,
    /// Board identifiers this release runs on.
    pub boards: Vec<&'a str, MAX_BOARDS>,
    pub components: Vec<Component<'a>, MAX_COMPONENTS>,
    /// Firmware: the model-runtime ABI it provides.
    pub runtime_abi: Option<u32>,
    /// Model: the model-runtime ABI it requires.
    pub required_abi: Option<u32>,
    /// Model: tensor arena bytes it needs.
    pub arena_size: Option<u32>,
    /// Model: the validation policy.
    pub policy: Option<Policy>,
}

mod key {
    pub const FORMAT: u64 = 0;
    pub const SECURITY_COUNTER: u64 = 1;
    pub const BOARDS: u64 = 2;
    pub const COMPONENTS: u64 = 3;
    pub const RUNTIME_ABI: u64 = 4;
    pub const REQUIRED_ABI: u64 = 5;
    pub const ARENA_SIZE: u64 = 6;
    pub const POLICY: u64 = 7;

    pub const C_KIND: u64 = 0;
    pub const C_NAME: u64 = 1;
    pub const C_VERSION: u64 = 2;
    pub const C_SIZE: u64 = 3;
    pub const C_DIGEST: u64 = 4;

    pub const P_MIN_ACCURACY: u64 = 0;
    pub const P_MAX_P99_LATENCY: u64 = 1;
    pub const P_MAX_DROP: u64 = 2;
}

impl<'a> Manifest<'a> {
    /// Decodes a manifest body and checks that it is a valid release.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, Error> {
        let mut d = Reader::new(bytes);
        let m = Self::decode_map(&mut d)?;
        finish(&d)?;
        m.validate()?;
        Ok(m)
    }

    fn decode_map(d: &mut Reader<'a>) -> Result<Self, Error> {
        let mut map = MapReader::begin(d)?;
        let mut format = None;
        let mut security_counter = None;
        let mut boards = None;
        let mut components = None;
        let mut m = Manifest::empty();
        while let Some(k) = map.next_key(d)? {
            match k {
                key::FORMAT => format = Some(uint::<u8>(d)?),
                key::SECURITY_COUNTER => security_counter = Some(d.unsigned()?),
                key::BOARDS => {
                    let n = array_len(d, MAX_BOARDS)?;
                    let mut v = Vec::new();
                    for _ in 0..n {
                        v.push(check_name(d.text()?)?).map_err(|_| Error::TooMany)?;
                    }
                    boards = Some(v);
                }
                key::COMPONENTS => {
                    let n = array_len(d, MAX_COMPONENTS)?;
                    let mut v = Vec::new();
                    for _ in 0..n {
                        v.push(decode_component(d)?).map_err(|_| Error::TooMany)?;
                    }
                    components = Some(v);
                }
                key::RUNTIME_ABI => m.runtime_abi = Some(uint::<u32>(d)?),
                key::REQUIRED_ABI => m.required_abi = Some(uint::<u32>(d)?),
                key::ARENA_SIZE => m.arena_size = Some(uint::<u32>(d)?),
                key::POLICY => m.policy = Some(decode_policy(d)?),
                _ => skip_value(d)?,
            }
        }
        if required(format)? != MANIFEST_FORMAT {
            return Err(Error::UnsupportedVersion);
        }
        m.security_counter = required(security_counter)?;
        m.boards = required(boards)?;
        m.components = required(components)?;
        Ok(m)
    }

    pub(crate) fn empty() -> Self {
        Manifest {
            security_counter: 0,
            boards: Vec::new(),
            components: Vec::new(),
            runtime_abi: None,
            required_abi: None,
            arena_size: None,
            policy: None,
        }
    }

    /// The rules a decoded manifest must satisfy; encoders call it too, so no tool can sign a
    /// manifest a device would refuse for its shape.
    pub fn validate(&self) -> Result<(), Error> {
        if self.boards.is_empty() {
            return Err(Error::MissingField);
        }
        for (i, b) in self.boards.iter().enumerate() {
            check_name(b)?;
            if self.boards.iter().skip(i + 1).any(|o| o == b) {
                return Err(Error::InvalidValue);
            }
        }
        // Kinds strictly ascending: at most one of each, in a fixed order.
        let mut last: Option<ComponentKind> = None;
        for c in &self.components {
            check_name(c.name)?;
            if c.size > MAX_COMPONENT_SIZE {
                return Err(Error::TooLarge);
            }
            if last.is_some_and(|l| c.kind <= l) {
                return Err(Error::InconsistentComponents);
            }
            last = Some(c.kind);
        }
        let firmware = self.component(ComponentKind::Firmware).is_some();
        let model = self.component(ComponentKind::Model).is_some();
        let validation = self.component(ComponentKind::ValidationSet).is_some();
        if (!firmware && !model) || model != validation {
            return Err(Error::InconsistentComponents);
        }
        if firmware != self.runtime_abi.is_some() {
            return Err(if firmware {
                Error::MissingField
            } else {
                Error::InconsistentComponents
            });
        }
        let model_fields = [
            self.required_abi.is_some(),
            self.arena_size.is_some(),
            self.policy.is_some(),
        ];
        if model_fields.iter().any(|&present| present != model) {
            return Err(if model {
                Error::MissingField
            } else {
                Error::InconsistentComponents
            });
        }
        if self.arena_size.is_some_and(|a| a > MAX_ARENA_SIZE) {
            return Err(Error::TooLarge);
        }
        if let Some(p) = self.policy {
            if p.min_accuracy_bp > FULL_ACCURACY_BP
                || p.max_accuracy_drop_bp > FULL_ACCURACY_BP
                || p.max_p99_latency_us == 0
            {
                return Err(Error::InvalidValue);
            }
        }
        // A combined release must be self-consistent: its model runs on its firmware (a later
        // ABI runs older models).
        if let (Some(provided), Some(needed)) = (self.runtime_abi, self.required_abi) {
            if needed > provided {
                return Err(Error::AbiMismatch);
            }
        }
        Ok(())
    }

    /// The component of a kind, if the release has one.
    pub fn component(&self, kind: ComponentKind) -> Option<&Component<'a>> {
        self.components.iter().find(|c| c.kind == kind)
    }

    /// The component that names the release: the firmware if there is one, else the model.
    pub fn primary(&self) -> Option<&Component<'a>> {
        self.components.first()
    }

    /// Total payload bytes; bounded by `MAX_COMPONENTS * MAX_COMPONENT_SIZE`, so no overflow.
    pub fn payload_len(&self) -> u64 {
        self.components.iter().map(|c| u64::from(c.size)).sum()
    }

    /// Whether this device may install the release: board, anti-rollback counters, runtime ABI.
    /// Runs before the first byte is written to flash.
    pub fn check_device(&self, device: &DeviceState<'_>) -> Result<(), Error> {
        if !self.boards.contains(&device.board) {
            return Err(Error::WrongBoard);
        }
        let firmware = self.component(ComponentKind::Firmware).is_some();
        let model = self.component(ComponentKind::Model).is_some();
        if (firmware && self.security_counter < device.firmware_counter)
            || (model && self.security_counter < device.model_counter)
        {
            return Err(Error::SecurityCounter);
        }
        if !firmware {
            // A firmware's ABI runs every model of that ABI or an older one.
            if let Some(needed) = self.required_abi {
                if needed > device.runtime_abi {
                    return Err(Error::AbiMismatch);
                }
            }
        }
        Ok(())
    }

    /// Deterministic encoding: the bytes that get signed.
    #[cfg(feature = "alloc")]
    pub fn to_vec(&self) -> Result<alloc::vec::Vec<u8>, Error> {
        self.validate()?;
        let fields = 4
            + u64::from(self.runtime_abi.is_some())
            + u64::from(self.required_abi.is_some())
            + u64::from(self.arena_size.is_some())
            + u64::from(self.policy.is_some());
        Ok(crate::cbor::encode_to_vec(|e| {
            e.map(fields)?;
            e.u64(key::FORMAT)?.u8(MANIFEST_FORMAT)?;
            e.u64(key::SECURITY_COUNTER)?.u64(self.security_counter)?;
            e.u64(key::BOARDS)?.array(self.boards.len() as u64)?;
            for b in &self.boards {
                e.str(b)?;
            }
            e.u64(key::COMPONENTS)?
                .array(self.components.len() as u64)?;
            for c in &self.components {
                e.map(5)?;
                e.u64(key::C_KIND)?.u8(c.kind as u8)?;
                e.u64(key::C_NAME)?.str(c.name)?;
                e.u64(key::C_VERSION)?.array(3)?;
                e.u32(c.version.major)?
                    .u32(c.version.minor)?
                    .u32(c.version.patch)?;
                e.u64(key::C_SIZE)?.u32(c.size)?;
                e.u64(key::C_DIGEST)?.bytes(&c.digest)?;
            }
            if let Some(v) = self.runtime_abi {
                e.u64(key::RUNTIME_ABI)?.u32(v)?;
            }
            if let Some(v) = self.required_abi {
                e.u64(key::REQUIRED_ABI)?.u32(v)?;
            }
            if let Some(v) = self.arena_size {
                e.u64(key::ARENA_SIZE)?.u32(v)?;
            }
            if let Some(p) = self.policy {
                e.u64(key::POLICY)?.map(3)?;
                e.u64(key::P_MIN_ACCURACY)?.u16(p.min_accuracy_bp)?;
                e.u64(key::P_MAX_P99_LATENCY)?.u32(p.max_p99_latency_us)?;
                e.u64(key::P_MAX_DROP)?.u16(p.max_accuracy_drop_bp)?;
            }
            Ok(())
        }))
    }
}

fn decode_component<'a>(d: &mut Reader<'a>) -> Result<Component<'a>, Error> {
    let mut map = MapReader::begin(d)?;
    let (mut kind, mut name, mut version, mut size, mut digest) = (None, None, None, None, None);
    while let Some(k) = map.next_key(d)? {
        match k {
            key::C_KIND => kind = Some(ComponentKind::from_u8(uint::<u8>(d)?)?),
            key::C_NAME => name = Some(check_name(d.text()?)?),
            key::C_VERSION => {
                crate::cbor::array_exact(d, 3)?;
                version = Some(Version::new(
                    uint::<u32>(d)?,
                    uint::<u32>(d)?,
                    uint::<u32>(d)?,
                ));
            }
            key::C_SIZE => {
                // Read as u64 so an oversized declaration is "too large", not "malformed".
                let s = d.unsigned()?;
                size = Some(
                    u32::try_from(s)
                        .ok()
                        .filter(|&s| s <= MAX_COMPONENT_SIZE)
                        .ok_or(Error::TooLarge)?,
                );
            }
            key::C_DIGEST => digest = Some(bytes_exact::<32>(d)?),
            _ => skip_value(d)?,
        }
    }
    Ok(Component {
        kind: required(kind)?,
        name: required(name)?,
        version: required(version)?,
        size: required(size)?,
        digest: required(digest)?,
    })
}

fn decode_policy(d: &mut Reader<'_>) -> Result<Policy, Error> {
    let mut map = MapReader::begin(d)?;
    let mut policy = Policy::default();
    let mut min_accuracy = None;
    while let Some(k) = map.next_key(d)? {
        match k {
            key::P_MIN_ACCURACY => min_accuracy = Some(uint::<u16>(d)?),
            key::P_MAX_P99_LATENCY => policy.max_p99_latency_us = uint::<u32>(d)?,
            key::P_MAX_DROP => policy.max_accuracy_drop_bp = uint::<u16>(d)?,
            _ => skip_value(d)?,
        }
    }
    policy.min_accuracy_bp = required(min_accuracy)?;
    Ok(policy)
}
