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
use artifact::cbor::{Decode, Reader};
use artifact::cbor::{MapReader, array_exact, uint};
use artifact::{ComponentKind, Version};
use minicbor::Encoder;
use minicbor::encode::Write;

/// Versions travel as `[major, minor, patch]`.
fn enc_version<W: Write>(e: &mut Encoder<W>, v: Version) -> Result<(), EncodeError<W>> {
    e.array(3)?.u32(v.major)?.u32(v.minor)?.u32(v.patch)?;
    Ok(())
}

fn dec_version(d: &mut Reader<'_>) -> Result<Version, Error> {
    array_exact(d, 3)?;
    Ok(Version::new(uint(d)?, uint(d)?, uint(d)?))
}

/// Non-empty text of at most `max` bytes: bounded before the caller looks at it.
fn dec_str<'a>(d: &mut Reader<'a>, max: usize) -> Result<&'a str, Error> {
    let s = d.text()?;
    if s.is_empty() || s.len() > max {
        return Err(artifact::Error::InvalidName.into());
    }
    Ok(s)
}

/// Device ids: 1 to 64 bytes of `[A-Za-z0-9._:-]`.
fn dec_device_id<'a>(d: &mut Reader<'a>) -> Result<&'a str, Error> {
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
fn dec_kind(d: &mut Reader<'_>) -> Result<ComponentKind, Error> {
    match uint::<u8>(d)? {
        0 => Ok(ComponentKind::Firmware),
        1 => Ok(ComponentKind::Model),
        2 => Ok(ComponentKind::ValidationSet),
        _ => Err(artifact::Error::InvalidValue.into()),
    }
}

/// Skips the value of an unknown field, indefinite lengths included: the protocol has always
/// accepted them there (only artifact documents refuse them).
fn skip_value(d: &mut Reader<'_>) -> Result<(), Error> {
    Ok(d.skip_any_length()?)
}

/// Reads a map of known small fields with `field`, skipping unknown ones.
pub(super) fn dec_map<'a>(
    d: &mut Reader<'a>,
    mut field: impl FnMut(u64, &mut Reader<'a>) -> Result<bool, Error>,
) -> Result<(), Error> {
    let mut map = MapReader::begin(d)?;
    while let Some(k) = map.next_key(d)? {
        if !field(k, d)? {
            skip_value(d)?;
        }
    }
    Ok(())
}
