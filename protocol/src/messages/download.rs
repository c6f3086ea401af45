//! Downloads: the device's chunk request and the chunk that answers it.

use super::skip_value;
use crate::MAX_CHUNK;
use crate::codec::{EncodeError, Error, Message};
use artifact::cbor::uint;
use artifact::cbor::{Decode, Reader};
use minicbor::Encoder;
use minicbor::encode::Write;

/// Device to gateway or server: the next piece of a release's payloads, at the device's pace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRequest {
    pub release: u64,
    pub offset: u32,
    /// At most `MAX_CHUNK`; the device picks what its buffers and link allow.
    pub len: u32,
    /// From the stream the update offered (`StreamOffer::id`; key 4, revision 1.3) instead
    /// of the plain payloads; `offset` is then in the stream.
    pub stream: Option<u64>,
}

impl<'a> Message<'a> for ChunkRequest {
    fn field_count(&self) -> u64 {
        3 + u64::from(self.stream.is_some())
    }

    fn encode_fields<W: Write>(&self, e: &mut Encoder<W>) -> Result<(), EncodeError<W>> {
        e.u8(1)?
            .u64(self.release)?
            .u8(2)?
            .u32(self.offset)?
            .u8(3)?
            .u32(self.len)?;
        if let Some(s) = self.stream {
            e.u8(4)?.u64(s)?;
        }
        Ok(())
    }

    fn decode_field(&mut self, key: u64, d: &mut Reader<'a>) -> Result<(), Error> {
        match key {
            1 => self.release = uint(d)?,
            2 => self.offset = uint(d)?,
            3 => self.len = uint(d)?,
            4 => self.stream = Some(uint(d)?),
            _ => skip_value(d)?,
        }
        Ok(())
    }

    fn empty() -> Self {
        ChunkRequest {
            release: u64::MAX,
            offset: 0,
            len: 0,
            stream: None,
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
    /// The stream the bytes are from (key 4, revision 1.3), as the request named it.
    pub stream: Option<u64>,
}

impl<'a> Message<'a> for Chunk<'a> {
    fn field_count(&self) -> u64 {
        3 + u64::from(self.stream.is_some())
    }

    fn encode_fields<W: Write>(&self, e: &mut Encoder<W>) -> Result<(), EncodeError<W>> {
        e.u8(1)?
            .u64(self.release)?
            .u8(2)?
            .u32(self.offset)?
            .u8(3)?
            .bytes(self.data)?;
        if let Some(s) = self.stream {
            e.u8(4)?.u64(s)?;
        }
        Ok(())
    }

    fn decode_field(&mut self, key: u64, d: &mut Reader<'a>) -> Result<(), Error> {
        match key {
            1 => self.release = uint(d)?,
            2 => self.offset = uint(d)?,
            3 => {
                let b = d.byte_string()?;
                if b.len() > MAX_CHUNK {
                    return Err(artifact::Error::TooLarge.into());
                }
                self.data = b;
            }
            4 => self.stream = Some(uint(d)?),
            _ => skip_value(d)?,
        }
        Ok(())
    }

    fn empty() -> Self {
        Chunk {
            release: u64::MAX,
            offset: 0,
            data: &[],
            stream: None,
        }
    }

    fn finish(self) -> Result<Self, Error> {
        if self.release == u64::MAX {
            return Err(artifact::Error::MissingField.into());
        }
        Ok(self)
    }
}
