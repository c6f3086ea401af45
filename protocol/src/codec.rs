//! Encoding into a caller's buffer (or a Vec on the host) and bounded decoding of messages.

use artifact::cbor::Reader;
use artifact::cbor::{MapReader, finish, required};
use minicbor::Encoder;
use minicbor::encode::Write;

/// Why a message could not be decoded or encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The bytes are not a valid message (see the inner cause).
    Decode(artifact::Error),
    /// A message from a newer protocol version this code cannot read.
    UnsupportedVersion,
    /// The output buffer is too small for the message.
    BufferTooSmall,
}

impl From<artifact::Error> for Error {
    fn from(e: artifact::Error) -> Self {
        Error::Decode(e)
    }
}

impl From<minicbor::decode::Error> for Error {
    fn from(e: minicbor::decode::Error) -> Self {
        Error::Decode(e.into())
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Decode(e) => write!(f, "bad message: {e}"),
            Error::UnsupportedVersion => f.write_str("unsupported protocol version"),
            Error::BufferTooSmall => f.write_str("buffer too small for the message"),
        }
    }
}

impl core::error::Error for Error {}

/// The encoder's error for a writer `W`.
pub type EncodeError<W> = minicbor::encode::Error<<W as Write>::Error>;

/// A top-level message: a map whose key 0 is the protocol version, then its own fields.
pub trait Message<'a>: Sized {
    /// Number of fields after the version (the map has one more entry).
    fn field_count(&self) -> u64;
    /// Writes the fields (keys 1.. in ascending order).
    fn encode_fields<W: Write>(&self, e: &mut Encoder<W>) -> Result<(), EncodeError<W>>;
    /// Reads one field; `key` is never 0. Unknown keys must be skipped by the implementation.
    fn decode_field(&mut self, key: u64, d: &mut Reader<'a>) -> Result<(), Error>;
    /// The empty message fields are decoded into.
    fn empty() -> Self;
    /// Checks that required fields were present.
    fn finish(self) -> Result<Self, Error>;
}

fn encode_message<'a, M: Message<'a>, W: Write>(
    m: &M,
    e: &mut Encoder<W>,
) -> Result<(), EncodeError<W>> {
    e.map(m.field_count() + 1)?.u8(0)?.u8(crate::VERSION)?;
    m.encode_fields(e)
}

/// Encodes `m` into `buf`; returns the bytes used.
pub fn encode<'a, M: Message<'a>>(m: &M, buf: &mut [u8]) -> Result<usize, Error> {
    let mut e = Encoder::new(minicbor::encode::write::Cursor::new(buf));
    encode_message(m, &mut e).map_err(|_| Error::BufferTooSmall)?;
    Ok(e.into_writer().position())
}

/// Encodes `m` into a new vector (host side).
#[cfg(feature = "alloc")]
pub fn to_vec<'a, M: Message<'a>>(m: &M) -> alloc::vec::Vec<u8> {
    let mut e = Encoder::new(alloc::vec::Vec::new());
    // A Vec writer cannot fail and the messages raise no errors of their own.
    let _ = encode_message(m, &mut e);
    e.into_writer()
}

/// Decodes one message that spans all of `bytes`.
pub fn decode<'a, M: Message<'a>>(bytes: &'a [u8]) -> Result<M, Error> {
    let mut d = Reader::new(bytes);
    let m = decode_from(&mut d)?;
    finish(&d)?;
    Ok(m)
}

/// Decodes one message at the decoder's position (frames hold one after their kind).
pub(crate) fn decode_from<'a, M: Message<'a>>(d: &mut Reader<'a>) -> Result<M, Error> {
    let mut map = MapReader::begin(d)?;
    let mut version = None;
    let mut m = M::empty();
    while let Some(key) = map.next_key(d)? {
        if key == 0 {
            version = Some(artifact::cbor::uint::<u8>(d)?);
        } else {
            m.decode_field(key, d)?;
        }
    }
    match required(version)? {
        crate::VERSION => m.finish(),
        _ => Err(Error::UnsupportedVersion),
    }
}
