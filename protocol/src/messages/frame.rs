//! The serial frames: `[kind, message]` for each direction, and the `Hello` that opens a link.

use super::skip_value;
use super::{CheckIn, Chunk, ChunkRequest, Command, Report, dec_device_id, dec_str};
use crate::codec::{EncodeError, Error, Message, decode_from};
use artifact::cbor::Reader;
use artifact::cbor::{array_exact, uint};
use minicbor::Encoder;
use minicbor::encode::Write;

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

    fn decode_field(&mut self, key: u64, d: &mut Reader<'a>) -> Result<(), Error> {
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
    /// Check in now (kind 3, revision 1.2; serial links only): a gateway's long-poll for the
    /// device came back with a command. The device's own check-in fetches it, so a command
    /// only ever arrives as a check-in's answer and is never applied twice. A device before
    /// 1.2 cannot decode the frame, drops it and keeps polling.
    CheckInNow,
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
            // An empty map: room for fields a later revision may add.
            ServerFrame::CheckInNow => frame(3, buf, &mut |b| {
                *b.first_mut().ok_or(Error::BufferTooSmall)? = 0xa0;
                Ok(1)
            }),
        }
    }

    pub fn decode(bytes: &'a [u8]) -> Result<Self, Error> {
        let (kind, mut d) = unframe(bytes)?;
        let f = match kind {
            0 => ServerFrame::Command(decode_from(&mut d)?),
            1 => ServerFrame::Chunk(decode_from(&mut d)?),
            2 => ServerFrame::ReportAck { seq: uint(&mut d)? },
            3 => {
                let mut map = artifact::cbor::MapReader::begin(&mut d)?;
                while map.next_key(&mut d)?.is_some() {
                    skip_value(&mut d)?;
                }
                ServerFrame::CheckInNow
            }
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

fn unframe(bytes: &[u8]) -> Result<(u8, Reader<'_>), Error> {
    let mut d = Reader::new(bytes);
    array_exact(&mut d, 2)?;
    let kind = uint::<u8>(&mut d)?;
    Ok((kind, d))
}
