//! Bounded CBOR reading rules shared by every decoder of the fleet (artifact formats and the device
//! protocol): definite lengths, ascending integer keys, negative keys critical, bounded lists.
//!
//! The rules are written once over [`Decode`], which two decoders implement: [`Reader`], this
//! crate's own (every artifact document: envelope, manifest, root; and the device protocol, which
//! skips unknown fields with [`Reader::skip_any_length`]), small enough that a device links no
//! generic CBOR decoder, and minicbor's `Decoder` (what the tests hold the reader to).

use crate::Error;

/// Upper bound on the entries of any map, known and unknown fields together.
const MAX_MAP_ENTRIES: u64 = 32;

/// What the rules need of a CBOR decoder over a byte slice `'b`.
pub trait Decode<'b> {
    /// The whole input.
    fn input(&self) -> &'b [u8];
    /// Bytes consumed so far.
    fn position(&self) -> usize;
    /// An unsigned integer (major type 0).
    fn unsigned(&mut self) -> Result<u64, Error>;
    /// A definite byte string.
    fn byte_string(&mut self) -> Result<&'b [u8], Error>;
    /// A definite UTF-8 text string.
    fn text(&mut self) -> Result<&'b str, Error>;
    /// The entry count of a definite array (an indefinite one is malformed).
    fn array_header(&mut self) -> Result<u64, Error>;
    /// The entry count of a definite map (an indefinite one is malformed).
    fn map_header(&mut self) -> Result<u64, Error>;
    /// Skips one whole item, whatever it holds, without recursion.
    fn skip_item(&mut self) -> Result<(), Error>;
}

/// Major types (RFC 8949, section 3.1).
const UNSIGNED: u8 = 0;
const NEGATIVE: u8 = 1;
const BYTES: u8 = 2;
const TEXT: u8 = 3;
const ARRAY: u8 = 4;
const MAP: u8 = 5;
const TAG: u8 = 6;

/// A CBOR decoder for definite-length items only: what every artifact body is. It reads
/// integers of any width (readers check signatures over the bytes as sent, so they need not
/// check that encodings are minimal) and refuses indefinite lengths, reserved additional
/// information and break codes anywhere, skipped values included. Truncated input is
/// `Truncated`, any other misfit `Malformed`; it never panics or allocates.
#[derive(Debug, Clone)]
pub struct Reader<'b> {
    input: &'b [u8],
    pos: usize,
}

impl<'b> Reader<'b> {
    pub fn new(input: &'b [u8]) -> Self {
        Reader { input, pos: 0 }
    }

    fn byte(&mut self) -> Result<u8, Error> {
        let b = *self.input.get(self.pos).ok_or(Error::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    /// The head of the next item: its major type and argument. `expected` refuses another
    /// major type before any of its argument is read.
    fn head(&mut self, expected: Option<u8>) -> Result<(u8, u64), Error> {
        let initial = *self.input.get(self.pos).ok_or(Error::Truncated)?;
        let major = initial >> 5;
        if expected.is_some_and(|m| m != major) {
            return Err(Error::Malformed);
        }
        self.pos += 1;
        let arg = match initial & 0x1f {
            n @ 0..=23 => u64::from(n),
            n @ 24..=27 => {
                let mut v = 0u64;
                for _ in 0..1u8 << (n - 24) {
                    v = v << 8 | u64::from(self.byte()?);
                }
                v
            }
            // 28-30 are reserved; 31 is an indefinite length or a break.
            _ => return Err(Error::Malformed),
        };
        Ok((major, arg))
    }

    fn take(&mut self, len: u64) -> Result<&'b [u8], Error> {
        let end = usize::try_from(len)
            .ok()
            .and_then(|n| self.pos.checked_add(n))
            .ok_or(Error::Truncated)?;
        let s = self.input.get(self.pos..end).ok_or(Error::Truncated)?;
        self.pos = end;
        Ok(s)
    }
}

impl<'b> Decode<'b> for Reader<'b> {
    fn input(&self) -> &'b [u8] {
        self.input
    }

    fn position(&self) -> usize {
        self.pos
    }

    fn unsigned(&mut self) -> Result<u64, Error> {
        Ok(self.head(Some(UNSIGNED))?.1)
    }

    fn byte_string(&mut self) -> Result<&'b [u8], Error> {
        let (_, len) = self.head(Some(BYTES))?;
        self.take(len)
    }

    fn text(&mut self) -> Result<&'b str, Error> {
        let (_, len) = self.head(Some(TEXT))?;
        core::str::from_utf8(self.take(len)?).map_err(|_| Error::Malformed)
    }

    fn array_header(&mut self) -> Result<u64, Error> {
        Ok(self.head(Some(ARRAY))?.1)
    }

    fn map_header(&mut self) -> Result<u64, Error> {
        Ok(self.head(Some(MAP))?.1)
    }

    /// Counts the items still to skip instead of recursing: each head read consumes at least
    /// one byte, so this ends within the input's length whatever the counts claim.
    fn skip_item(&mut self) -> Result<(), Error> {
        self.skip(false)
    }
}

/// Most indefinite-length arrays and maps open at once that [`Reader::skip_any_length`] skips.
const MAX_INDEFINITE_DEPTH: usize = 8;

/// The break code that closes an indefinite-length item.
const BREAK: u8 = 0xff;

impl Reader<'_> {
    /// Skips one whole item as [`Decode::skip_item`] does, but accepting indefinite lengths
    /// (nested at most `MAX_INDEFINITE_DEPTH` deep): the device protocol skips unknown fields
    /// this way, as it did with minicbor's decoder. A break outside an indefinite item is
    /// malformed.
    pub fn skip_any_length(&mut self) -> Result<(), Error> {
        self.skip(true)
    }

    /// Both skips in one routine (one copy on a device that links both). `pending` counts the
    /// items still to skip in the innermost run of definite items; each open indefinite item
    /// keeps the count of the run around it in `outer`.
    fn skip(&mut self, indefinite: bool) -> Result<(), Error> {
        let mut pending = 1u64;
        let mut outer = [0u64; MAX_INDEFINITE_DEPTH];
        let mut depth = 0usize;
        while pending > 0 || depth > 0 {
            let initial = *self.input.get(self.pos).ok_or(Error::Truncated)?;
            let major = initial >> 5;
            if indefinite && initial & 0x1f == 31 {
                self.pos += 1;
                match major {
                    // Closes the innermost indefinite item, between two of its entries only.
                    _ if initial == BREAK => {
                        if pending > 0 {
                            return Err(Error::Malformed);
                        }
                        depth = depth.checked_sub(1).ok_or(Error::Malformed)?;
                        pending = *outer.get(depth).ok_or(Error::Malformed)?;
                        continue;
                    }
                    // Definite chunks of the same type up to a break.
                    BYTES | TEXT => {
                        while *self.input.get(self.pos).ok_or(Error::Truncated)? != BREAK {
                            self.chunk(major)?;
                        }
                        self.pos += 1;
                    }
                    ARRAY | MAP => {
                        *outer.get_mut(depth).ok_or(Error::Malformed)? = pending.saturating_sub(1);
                        depth += 1;
                        pending = 0;
                        continue;
                    }
                    _ => return Err(Error::Malformed),
                }
                pending = pending.saturating_sub(1);
                continue;
            }
            // Inside an indefinite item (`pending` 0) an entry starts a new run.
            pending = pending.saturating_sub(1);
            match major {
                BYTES | TEXT => self.chunk(major)?,
                _ => {
                    let (major, arg) = self.head(None)?;
                    match major {
                        ARRAY => pending = pending.saturating_add(arg),
                        MAP => pending = pending.saturating_add(arg.saturating_mul(2)),
                        // A tag's item follows it.
                        TAG => pending = pending.saturating_add(1),
                        // Integers, simple values and floats: the head is the whole item.
                        _ => {}
                    }
                }
            }
        }
        Ok(())
    }

    /// A definite byte or text string of `major` (text: valid UTF-8).
    fn chunk(&mut self, major: u8) -> Result<(), Error> {
        let (_, len) = self.head(Some(major))?;
        let s = self.take(len)?;
        if major == TEXT {
            core::str::from_utf8(s).map_err(|_| Error::Malformed)?;
        }
        Ok(())
    }
}

impl<'b> Decode<'b> for minicbor::Decoder<'b> {
    fn input(&self) -> &'b [u8] {
        minicbor::Decoder::input(self)
    }

    fn position(&self) -> usize {
        minicbor::Decoder::position(self)
    }

    fn unsigned(&mut self) -> Result<u64, Error> {
        Ok(self.u64()?)
    }

    fn byte_string(&mut self) -> Result<&'b [u8], Error> {
        Ok(self.bytes()?)
    }

    fn text(&mut self) -> Result<&'b str, Error> {
        Ok(self.str()?)
    }

    fn array_header(&mut self) -> Result<u64, Error> {
        self.array()?.ok_or(Error::Malformed)
    }

    fn map_header(&mut self) -> Result<u64, Error> {
        self.map()?.ok_or(Error::Malformed)
    }

    /// minicbor's skip (non-recursive; it also accepts indefinite lengths).
    fn skip_item(&mut self) -> Result<(), Error> {
        Ok(self.skip()?)
    }
}

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
    pub fn begin<'b>(d: &mut impl Decode<'b>) -> Result<Self, Error> {
        let len = d.map_header()?;
        if len > MAX_MAP_ENTRIES {
            return Err(Error::TooMany);
        }
        Ok(MapReader {
            remaining: len,
            last_key: None,
        })
    }

    /// The next key, or `None` when the map is done.
    pub fn next_key<'b>(&mut self, d: &mut impl Decode<'b>) -> Result<Option<u64>, Error> {
        if self.remaining == 0 {
            return Ok(None);
        }
        self.remaining -= 1;
        let initial = *d.input().get(d.position()).ok_or(Error::Truncated)?;
        let key = match initial >> 5 {
            UNSIGNED => d.unsigned()?,
            NEGATIVE => return Err(Error::UnknownCriticalField),
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
/// code small. Too large for `T` is malformed.
pub fn uint<'b, T: TryFrom<u64>>(d: &mut impl Decode<'b>) -> Result<T, Error> {
    T::try_from(d.unsigned()?).map_err(|_| Error::Malformed)
}

/// Skips the value of an unknown optional field (bounded stack: no recursion).
pub fn skip_value<'b>(d: &mut impl Decode<'b>) -> Result<(), Error> {
    d.skip_item()
}

/// Reads a definite array header of at most `max` entries.
pub fn array_len<'b>(d: &mut impl Decode<'b>, max: usize) -> Result<usize, Error> {
    let len = d.array_header()?;
    usize::try_from(len)
        .ok()
        .filter(|&n| n <= max)
        .ok_or(Error::TooMany)
}

/// Reads a definite array header of exactly `n` entries.
pub fn array_exact<'b>(d: &mut impl Decode<'b>, n: u64) -> Result<(), Error> {
    if d.array_header()? == n {
        Ok(())
    } else {
        Err(Error::Malformed)
    }
}

/// Reads a byte string of exactly `N` bytes.
pub fn bytes_exact<'b, const N: usize>(d: &mut impl Decode<'b>) -> Result<[u8; N], Error> {
    <[u8; N]>::try_from(d.byte_string()?).map_err(|_| Error::Malformed)
}

/// Refuses anything after the end of a top-level item.
pub fn finish<'b>(d: &impl Decode<'b>) -> Result<(), Error> {
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
