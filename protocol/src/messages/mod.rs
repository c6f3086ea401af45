//! The messages, one file per family: check-in, command, download (chunk request and chunk),
//! report, and the serial frames with the `Hello` that opens a link. This module holds the field
//! encodings several families share (versions, names, device ids, component kinds).

mod check_in;
mod command;
mod download;
mod frame;
mod report;

pub use check_in::{
    BootStatus, CheckIn, Counters, Figures, Firmware, ModelSlot, Progress, RunningModel,
    STREAM_FDL1,
};
pub use command::{Command, StreamOffer};
pub use download::{Chunk, ChunkRequest};
pub use frame::{DeviceFrame, Hello, MAX_CREDENTIAL, ServerFrame};
pub use report::{Failure, Report, RevertReason, Step};

use crate::MAX_DEVICE_ID;
use crate::codec::{EncodeError, Error};
use artifact::cbor::{MapReader, array_exact, skip_value, uint};
use artifact::{ComponentKind, Version};
use minicbor::encode::Write;
use minicbor::{Decoder, Encoder};

/// Versions travel as `[major, minor, patch]`.
fn enc_version<W: Write>(e: &mut Encoder<W>, v: Version) -> Result<(), EncodeError<W>> {
    e.array(3)?.u32(v.major)?.u32(v.minor)?.u32(v.patch)?;
    Ok(())
}

fn dec_version(d: &mut Decoder<'_>) -> Result<Version, Error> {
    array_exact(d, 3)?;
    Ok(Version::new(uint(d)?, uint(d)?, uint(d)?))
}

/// Non-empty text of at most `max` bytes: bounded before the caller looks at it.
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

/// A component kind by its number (`ComponentKind as u8` on encode).
fn dec_kind(d: &mut Decoder<'_>) -> Result<ComponentKind, Error> {
    match uint::<u8>(d)? {
        0 => Ok(ComponentKind::Firmware),
        1 => Ok(ComponentKind::Model),
        2 => Ok(ComponentKind::ValidationSet),
        _ => Err(artifact::Error::InvalidValue.into()),
    }
}

/// Reads a map of known small fields with `field`, skipping unknown ones.
pub(super) fn dec_map<'a>(
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
