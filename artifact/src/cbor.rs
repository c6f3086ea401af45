//! Bounded CBOR reading rules shared by every decoder of the fleet (artifact formats and the device
//! protocol): definite lengths, ascending integer keys, negative keys critical, bounded lists.

use crate::Error;
use minicbor::Decoder;
use minicbor::data::Type;

/// Upper bound on the entries of any map, known and unknown fields together.
const MAX_MAP_ENTRIES: u64 = 32;

/// Walks a definite-length map whose keys are integers.
///
/// Keys must be strictly ascending (so there are no duplicates and one encoding per value).
/// A negative key is a critical extension: this version knows none, so it is refused; an
/// unknown non-negative key is optional and the caller skips its value.
#[derive(Debug)]
pub struct MapReader {
    remaining: u64,
    last_key: Option<u64>,
}

impl MapReader {
    pub fn begin(d: &mut Decoder<'_>) -> Result<Self, Error> {
        let len = d.map()?.ok_or(Error::Malformed)?;
        if len > MAX_MAP_ENTRIES {
            return Err(Error::TooMany);
        }
        Ok(MapReader {
            remaining: len,
            last_key: None,
        })
    }

    /// The next key, or `None` when the map is done.
    pub fn next_key(&mut self, d: &mut Decoder<'_>) -> Result<Option<u64>, Error> {
        if self.remaining == 0 {
            return Ok(None);
        }
        self.remaining -= 1;
        let key = match d.datatype()? {
            Type::U8 | Type::U16 | Type::U32 | Type::U64 => d.u64()?,
            Type::I8 | Type::I16 | Type::I32 | Type::I64 | Type::Int => {
                return Err(Error::UnknownCriticalField);
            }
            _ => return Err(Error::Malformed),
        };
        if self.last_key.is_some_and(|last| key <= last) {
            return Err(Error::KeyOrder);
        }
        self.last_key = Some(key);
        Ok(Some(key))
    }
}

/// Reads an unsigned integer into `T`; one decoding routine for every width keeps the device
/// code small. Too large for `T` is malformed, as minicbor's own width checks would say.
pub fn uint<T: TryFrom<u64>>(d: &mut Decoder<'_>) -> Result<T, Error> {
    T::try_from(d.u64()?).map_err(|_| Error::Malformed)
}

/// Skips the value of an unknown optional field (non-recursive in minicbor, so bounded stack).
pub fn skip_value(d: &mut Decoder<'_>) -> Result<(), Error> {
    d.skip().map_err(Error::from)
}

/// Reads a definite array header of at most `max` entries.
pub fn array_len(d: &mut Decoder<'_>, max: usize) -> Result<usize, Error> {
    let len = d.array()?.ok_or(Error::Malformed)?;
    usize::try_from(len)
        .ok()
        .filter(|&n| n <= max)
        .ok_or(Error::TooMany)
}

/// Reads a definite array header of exactly `n` entries.
pub fn array_exact(d: &mut Decoder<'_>, n: u64) -> Result<(), Error> {
    match d.array()? {
        Some(len) if len == n => Ok(()),
        _ => Err(Error::Malformed),
    }
}

/// Reads a byte string of exactly `N` bytes.
pub fn bytes_exact<const N: usize>(d: &mut Decoder<'_>) -> Result<[u8; N], Error> {
    <[u8; N]>::try_from(d.bytes()?).map_err(|_| Error::Malformed)
}

/// Refuses anything after the end of a top-level item.
pub fn finish(d: &Decoder<'_>) -> Result<(), Error> {
    if d.position() == d.input().len() {
        Ok(())
    } else {
        Err(Error::TrailingBytes)
    }
}

/// Names (components, boards): 1 to 32 bytes of `[A-Za-z0-9._-]`, so they are safe in paths,
/// logs and HTML without escaping surprises.
pub fn check_name(s: &str) -> Result<&str, Error> {
    let ok = (1..=crate::MAX_NAME_LEN).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok { Ok(s) } else { Err(Error::InvalidName) }
}

/// Sets a field once; a second occurrence cannot happen because keys ascend, but a missing one can.
pub fn required<T>(v: Option<T>) -> Result<T, Error> {
    v.ok_or(Error::MissingField)
}

/// The encoder every `to_vec` writes with.
#[cfg(feature = "alloc")]
pub type VecEncoder = minicbor::Encoder<alloc::vec::Vec<u8>>;

/// Encoding failures; writing into a `Vec` has none, so this is uninhabited in practice.
#[cfg(feature = "alloc")]
pub type EncodeError = minicbor::encode::Error<core::convert::Infallible>;

/// Runs `f` against a fresh `Vec` encoder and returns the bytes. Every encoder of this crate
/// emits definite lengths, ascending keys and minimal integers: the deterministic encoding.
#[cfg(feature = "alloc")]
pub fn encode_to_vec(
    f: impl FnOnce(&mut VecEncoder) -> Result<(), EncodeError>,
) -> alloc::vec::Vec<u8> {
    let mut e = minicbor::Encoder::new(alloc::vec::Vec::new());
    // A Vec writer cannot fail and these encoders raise no errors of their own.
    let written = f(&mut e);
    debug_assert!(written.is_ok());
    e.into_writer()
}
