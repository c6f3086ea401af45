//! The agent's persistent records: a sequential-storage map (postcard values) in the layout's
//! key-value region. Each store is one CRC-protected item: a power cut leaves the previous
//! value readable, never a half-written one.
//!
//! The records are written and read by [`Record`], byte for byte postcard's encoding of the
//! fields in order (what the records in flash were written with), without postcard and serde's
//! generic code on the device. The map stores them as raw bytes, so every record and the
//! envelope share one fetch and one store path of sequential-storage.

use crate::Error;
use bootloader::SharedFlash;
use embassy_embedded_hal::adapter::BlockingAsync;
use embassy_embedded_hal::flash::partition::BlockingPartition;
use embassy_futures::block_on;
use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use embedded_storage::nor_flash::NorFlash;
use layout::Layout;
use sequential_storage::cache::Cache;
use sequential_storage::map::{MapConfig, MapStorage};

/// Keys of the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    ActiveModel,
    Pending,
    Envelope,
    Counters,
    /// The model the active one replaced, still in the other slot.
    PreviousModel,
    /// Undelivered step reports, `protocol::Report` CBOR, in slots 0..REPORT_SLOTS (by seq).
    Report(u8),
    /// The pending update's payloads come as a delta or compressed stream: where to resume it.
    Stream,
}

/// Reports kept in flash until the server has them.
pub const REPORT_SLOTS: u8 = 16;

impl Key {
    fn id(self) -> u8 {
        match self {
            Key::ActiveModel => 1,
            Key::Pending => 2,
            Key::Envelope => 3,
            Key::Counters => 4,
            Key::PreviousModel => 5,
            Key::Stream => 6,
            Key::Report(slot) => 16 + slot % REPORT_SLOTS,
        }
    }
}

/// The model inference runs on, and what it proved on its own validation set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveModel {
    /// 0 = model slot A, 1 = model slot B.
    pub slot: u8,
    /// The model's name from its manifest (`name_len` bytes of `name`).
    pub name: [u8; 32],
    pub name_len: u8,
    pub version: (u32, u32, u32),
    pub security_counter: u64,
    pub model_size: u32,
    pub model_digest: [u8; 32],
    pub set_size: u32,
    pub set_digest: [u8; 32],
    pub arena_size: u32,
    pub accuracy_bp: u16,
    /// Its policy, re-checked after a firmware update.
    pub min_accuracy_bp: u16,
    pub max_p99_latency_us: u32,
    pub max_accuracy_drop_bp: u16,
}

impl ActiveModel {
    pub fn name(&self) -> &str {
        self.name
            .get(..usize::from(self.name_len))
            .and_then(|b| core::str::from_utf8(b).ok())
            .unwrap_or("")
    }
}

/// An update in progress (its envelope is stored under `Key::Envelope`). The agent holds it as
/// a typed stage (`src/agent/pending.rs`) and encodes it into these fields, unchanged so that the
/// records already in flash still load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    pub release: u64,
    /// Bytes of the payloads written and hashed so far (so that the next write starts an erase
    /// sector, or the total when the download is complete).
    pub offset: u32,
    pub total: u32,
    /// A firmware (to the DFU slot) rather than a model (to the inactive model slot).
    pub firmware: bool,
    /// Firmware only: 0 downloading, 1 installed (marked for swap), 2 booted on trial, 3 rejected.
    pub phase: u8,
}

/// A pending update fetched as a stream (`delta`): which stream, what its header said once read,
/// and the block a reset resumes at. Its block never starts after the pending record's offset
/// (written after it), so resuming re-decodes at most what was written and skips it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamRecord {
    pub release: u64,
    pub id: u64,
    pub len: u32,
    /// The base's SHA-256 and length as the device found them (`None`: compressed).
    pub base: Option<([u8; 32], u32)>,
    /// The header's target length and digest once read (its base fields equal `base`).
    pub header: Option<(u32, [u8; 32])>,
    pub block: u32,
    pub stream_offset: u32,
}

/// Lifetime counters (reported in every check-in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    pub updates: u32,
    pub failures: u32,
    pub reverts: u32,
    pub report_seq: u32,
}

/// A record's fields in postcard's encoding: integers above a byte as LEB128 varints, bytes,
/// booleans and `Option` tags as one byte, arrays and tuples as their elements in order. `None`:
/// the buffer is too short (writing) or the bytes are not a record (reading).
pub trait Record: Sized {
    fn write(&self, w: &mut Writer<'_>) -> Option<()>;
    fn read(r: &mut Reader<'_>) -> Option<Self>;
}

/// Writes a record into a buffer.
#[derive(Debug)]
pub struct Writer<'b> {
    buf: &'b mut [u8],
    pos: usize,
}

impl Writer<'_> {
    #[inline(never)]
    fn byte(&mut self, b: u8) -> Option<()> {
        *self.buf.get_mut(self.pos)? = b;
        self.pos += 1;
        Some(())
    }

    fn bytes(&mut self, b: &[u8]) -> Option<()> {
        b.iter().try_for_each(|&b| self.byte(b))
    }

    /// The shortest varint, as postcard writes every width.
    #[inline(never)]
    fn varint(&mut self, mut v: u64) -> Option<()> {
        while v >= 0x80 {
            self.byte(v as u8 | 0x80)?;
            v >>= 7;
        }
        self.byte(v as u8)
    }

    fn bool(&mut self, b: bool) -> Option<()> {
        self.byte(u8::from(b))
    }
}

/// Reads a record as postcard does (bytes after it are ignored).
#[derive(Debug)]
pub struct Reader<'b> {
    buf: &'b [u8],
    pos: usize,
}

impl Reader<'_> {
    #[inline(never)]
    fn byte(&mut self) -> Option<u8> {
        let b = *self.buf.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    /// Fills `out` with the next bytes (an array's elements).
    #[inline(never)]
    fn fill(&mut self, out: &mut [u8]) -> Option<()> {
        let end = self.pos.checked_add(out.len())?;
        out.copy_from_slice(self.buf.get(self.pos..end)?);
        self.pos = end;
        Some(())
    }

    /// A varint of a `bits`-wide integer, as postcard reads it: at most as many bytes as the
    /// width needs, the last one holding no bits beyond it (longer encodings than the shortest
    /// are accepted).
    #[inline(never)]
    fn varint(&mut self, bits: u32) -> Option<u64> {
        let max = bits.div_ceil(7);
        let mut out = 0u64;
        for i in 0..max {
            let b = self.byte()?;
            out |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                if i == max - 1 && u32::from(b) >= 1 << (bits % 7) {
                    return None;
                }
                return Some(out);
            }
        }
        None
    }

    fn u16(&mut self) -> Option<u16> {
        Some(self.varint(16)? as u16)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(self.varint(32)? as u32)
    }

    fn u64(&mut self) -> Option<u64> {
        self.varint(64)
    }

    /// A boolean or an `Option`'s tag: 0 or 1.
    fn bool(&mut self) -> Option<bool> {
        match self.byte()? {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }
}

impl Record for ActiveModel {
    fn write(&self, w: &mut Writer<'_>) -> Option<()> {
        w.byte(self.slot)?;
        w.bytes(&self.name)?;
        w.byte(self.name_len)?;
        w.varint(u64::from(self.version.0))?;
        w.varint(u64::from(self.version.1))?;
        w.varint(u64::from(self.version.2))?;
        w.varint(self.security_counter)?;
        w.varint(u64::from(self.model_size))?;
        w.bytes(&self.model_digest)?;
        w.varint(u64::from(self.set_size))?;
        w.bytes(&self.set_digest)?;
        w.varint(u64::from(self.arena_size))?;
        w.varint(u64::from(self.accuracy_bp))?;
        w.varint(u64::from(self.min_accuracy_bp))?;
        w.varint(u64::from(self.max_p99_latency_us))?;
        w.varint(u64::from(self.max_accuracy_drop_bp))
    }

    fn read(r: &mut Reader<'_>) -> Option<Self> {
        // Fields in their order on flash; the arrays filled in place.
        let mut m = ActiveModel {
            slot: r.byte()?,
            name: [0; 32],
            name_len: 0,
            version: (0, 0, 0),
            security_counter: 0,
            model_size: 0,
            model_digest: [0; 32],
            set_size: 0,
            set_digest: [0; 32],
            arena_size: 0,
            accuracy_bp: 0,
            min_accuracy_bp: 0,
            max_p99_latency_us: 0,
            max_accuracy_drop_bp: 0,
        };
        r.fill(&mut m.name)?;
        m.name_len = r.byte()?;
        m.version = (r.u32()?, r.u32()?, r.u32()?);
        m.security_counter = r.u64()?;
        m.model_size = r.u32()?;
        r.fill(&mut m.model_digest)?;
        m.set_size = r.u32()?;
        r.fill(&mut m.set_digest)?;
        m.arena_size = r.u32()?;
        m.accuracy_bp = r.u16()?;
        m.min_accuracy_bp = r.u16()?;
        m.max_p99_latency_us = r.u32()?;
        m.max_accuracy_drop_bp = r.u16()?;
        Some(m)
    }
}

impl Record for Pending {
    fn write(&self, w: &mut Writer<'_>) -> Option<()> {
        w.varint(self.release)?;
        w.varint(u64::from(self.offset))?;
        w.varint(u64::from(self.total))?;
        w.bool(self.firmware)?;
        w.byte(self.phase)
    }

    fn read(r: &mut Reader<'_>) -> Option<Self> {
        Some(Pending {
            release: r.u64()?,
            offset: r.u32()?,
            total: r.u32()?,
            firmware: r.bool()?,
            phase: r.byte()?,
        })
    }
}

impl Record for StreamRecord {
    fn write(&self, w: &mut Writer<'_>) -> Option<()> {
        w.varint(self.release)?;
        w.varint(self.id)?;
        w.varint(u64::from(self.len))?;
        w.bool(self.base.is_some())?;
        if let Some((digest, len)) = &self.base {
            w.bytes(digest)?;
            w.varint(u64::from(*len))?;
        }
        w.bool(self.header.is_some())?;
        if let Some((len, digest)) = &self.header {
            w.varint(u64::from(*len))?;
            w.bytes(digest)?;
        }
        w.varint(u64::from(self.block))?;
        w.varint(u64::from(self.stream_offset))
    }

    fn read(r: &mut Reader<'_>) -> Option<Self> {
        let release = r.u64()?;
        let id = r.u64()?;
        let len = r.u32()?;
        // The digests are filled in place (no 32-byte values moved through `Option`s).
        let mut digest = [0; 32];
        let base = match r.bool()? {
            true => {
                r.fill(&mut digest)?;
                Some((digest, r.u32()?))
            }
            false => None,
        };
        let header = match r.bool()? {
            true => {
                let len = r.u32()?;
                r.fill(&mut digest)?;
                Some((len, digest))
            }
            false => None,
        };
        Some(StreamRecord {
            release,
            id,
            len,
            base,
            header,
            block: r.u32()?,
            stream_offset: r.u32()?,
        })
    }
}

impl Record for Counters {
    fn write(&self, w: &mut Writer<'_>) -> Option<()> {
        w.varint(u64::from(self.updates))?;
        w.varint(u64::from(self.failures))?;
        w.varint(u64::from(self.reverts))?;
        w.varint(u64::from(self.report_seq))
    }

    fn read(r: &mut Reader<'_>) -> Option<Self> {
        Some(Counters {
            updates: r.u32()?,
            failures: r.u32()?,
            reverts: r.u32()?,
            report_seq: r.u32()?,
        })
    }
}

type Part<'f, F> = BlockingAsync<BlockingPartition<'f, NoopRawMutex, F>>;

/// The record store over the key-value region.
#[allow(missing_debug_implementations)] // sequential-storage's map has no Debug
pub struct Store<'f, F: NorFlash> {
    map: MapStorage<
        u8,
        Part<'f, F>,
        Cache<
            sequential_storage::cache::Uncached,
            sequential_storage::cache::Uncached,
            sequential_storage::cache::Uncached,
            u8,
        >,
    >,
}

/// The longest record's bytes (an `ActiveModel` with every varint at its widest: 152).
const MAX_RECORD: usize = 160;

/// Item buffer: the largest record is the envelope.
pub const BUF: usize = artifact::MAX_ENVELOPE_LEN + 64;

impl<'f, F: NorFlash> Store<'f, F> {
    pub fn new(flash: &'f SharedFlash<F>, layout: &Layout) -> Result<Self, Error> {
        let part = BlockingAsync::new(BlockingPartition::new(
            flash,
            layout.kv.offset,
            layout.kv.size,
        ));
        let config = MapConfig::try_new(0..layout.kv.size).map_err(|_| Error::Storage)?;
        Ok(Store {
            map: MapStorage::new(part, config, Cache::new_uncached()),
        })
    }

    /// A record; bytes that are not one are a storage error, as a corrupt item is.
    pub fn get<V: Record>(&mut self, key: Key, buf: &mut [u8; BUF]) -> Result<Option<V>, Error> {
        match self.fetch(key, buf)? {
            Some(b) => V::read(&mut Reader { buf: b, pos: 0 })
                .map(Some)
                .ok_or(Error::Storage),
            None => Ok(None),
        }
    }

    /// Stores a record: its bytes are written as raw bytes, one store path for every record.
    pub fn set<V: Record>(
        &mut self,
        key: Key,
        value: &V,
        buf: &mut [u8; BUF],
    ) -> Result<(), Error> {
        let mut bytes = [0; MAX_RECORD];
        let mut w = Writer {
            buf: &mut bytes,
            pos: 0,
        };
        value.write(&mut w).ok_or(Error::Storage)?;
        let n = w.pos;
        self.set_bytes(key, bytes.get(..n).ok_or(Error::Storage)?, buf)
    }

    /// Reads raw bytes (the envelope) into `out`; returns their length.
    pub fn get_bytes(
        &mut self,
        key: Key,
        buf: &mut [u8; BUF],
        out: &mut [u8],
    ) -> Result<Option<usize>, Error> {
        match self.fetch(key, buf)? {
            Some(b) => {
                let dst = out.get_mut(..b.len()).ok_or(Error::Storage)?;
                dst.copy_from_slice(b);
                Ok(Some(b.len()))
            }
            None => Ok(None),
        }
    }

    /// An item's bytes, in `buf`: the one fetch every record and the envelope share.
    #[inline(never)]
    pub fn fetch<'b>(
        &mut self,
        key: Key,
        buf: &'b mut [u8; BUF],
    ) -> Result<Option<&'b [u8]>, Error> {
        let item = block_on(self.map.fetch_item::<&[u8]>(buf, &key.id()));
        Ok(item.map_err(|_| Error::Storage)?.filter(|b| !b.is_empty()))
    }

    pub fn set_bytes(&mut self, key: Key, value: &[u8], buf: &mut [u8; BUF]) -> Result<(), Error> {
        block_on(self.map.store_item(buf, &key.id(), &value)).map_err(|_| Error::Storage)
    }

    /// Removing stores an empty item: sequential-storage's own removal rewrites an item's
    /// header in place, which flash with ECC (the STM32L4's 64-bit words are written once
    /// between erases) cannot take. Every record and report is at least one byte, so an empty
    /// item is an absent one, and the agent needs only `NorFlash`.
    pub fn remove(&mut self, key: Key, buf: &mut [u8; BUF]) -> Result<(), Error> {
        self.set_bytes(key, &[], buf)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;

    /// postcard 1.2's bytes for these values (the encoding of the records already in flash;
    /// checked against postcard itself, every width's varint boundaries and mutations, when
    /// the codec replaced it).
    fn encode<V: Record>(v: &V, buf: &mut [u8]) -> Option<usize> {
        let mut w = Writer { buf, pos: 0 };
        v.write(&mut w)?;
        Some(w.pos)
    }

    fn decode<V: Record>(bytes: &[u8]) -> Option<V> {
        V::read(&mut Reader { buf: bytes, pos: 0 })
    }

    fn golden<V: Record + PartialEq + core::fmt::Debug>(v: &V, bytes: &[u8]) {
        let mut buf = [0u8; MAX_RECORD];
        let n = encode(v, &mut buf).unwrap();
        assert_eq!(&buf[..n], bytes);
        assert_eq!(decode::<V>(bytes).unwrap(), *v);
        for k in 0..bytes.len() {
            assert!(encode(v, &mut buf[..k]).is_none());
            assert!(decode::<V>(&bytes[..k]).is_none());
        }
    }

    fn hex(s: &str) -> std::vec::Vec<u8> {
        s.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    #[test]
    fn records_are_postcards_bytes() {
        let mut name = [0; 32];
        name[..9].copy_from_slice(b"kws-small");
        let active = ActiveModel {
            slot: 1,
            name,
            name_len: 9,
            version: (1, 2, 300),
            security_counter: 1 << 40,
            model_size: 200_000,
            model_digest: [0xab; 32],
            set_size: 127,
            set_digest: [0x11; 32],
            arena_size: 65536,
            accuracy_bp: 9_321,
            min_accuracy_bp: 128,
            max_p99_latency_us: u32::MAX,
            max_accuracy_drop_bp: 65535,
        };
        let mut want = hex("01 6b 77 73 2d 73 6d 61 6c 6c");
        want.extend([0; 23]);
        want.extend(hex("09 01 02 ac 02 80 80 80 80 80 20 c0 9a 0c"));
        want.extend([0xab; 32]);
        want.push(0x7f);
        want.extend([0x11; 32]);
        want.extend(hex("80 80 04 e9 48 80 01 ff ff ff ff 0f ff ff 03"));
        golden(&active, &want);

        let pending = Pending {
            release: u64::MAX,
            offset: 4096,
            total: 300_000,
            firmware: true,
            phase: 2,
        };
        golden(
            &pending,
            &hex("ff ff ff ff ff ff ff ff ff 01 80 20 e0 a7 12 01 02"),
        );

        let stream = StreamRecord {
            release: 7,
            id: 1 << 35,
            len: 5000,
            base: Some(([0x22; 32], 65_000)),
            header: None,
            block: 3,
            stream_offset: 16_384,
        };
        let mut want = hex("07 80 80 80 80 80 01 88 27 01");
        want.extend([0x22; 32]);
        want.extend(hex("e8 fb 03 00 03 80 80 01"));
        golden(&stream, &want);
        let stream = StreamRecord {
            id: 9,
            base: None,
            header: Some((70_000, [0x33; 32])),
            block: 0,
            stream_offset: 0,
            ..stream
        };
        let mut want = hex("07 09 88 27 00 01 f0 a2 04");
        want.extend([0x33; 32]);
        want.extend([0, 0]);
        golden(&stream, &want);

        let counters = Counters {
            updates: 0,
            failures: 127,
            reverts: 128,
            report_seq: 16_383,
        };
        golden(&counters, &hex("00 7f 80 01 ff 7f"));
    }

    #[test]
    fn the_widest_record_fits() {
        let active = ActiveModel {
            slot: 0,
            name: [0; 32],
            name_len: 0,
            version: (u32::MAX, u32::MAX, u32::MAX),
            security_counter: u64::MAX,
            model_size: u32::MAX,
            model_digest: [0; 32],
            set_size: u32::MAX,
            set_digest: [0; 32],
            arena_size: u32::MAX,
            accuracy_bp: u16::MAX,
            min_accuracy_bp: u16::MAX,
            max_p99_latency_us: u32::MAX,
            max_accuracy_drop_bp: u16::MAX,
        };
        assert_eq!(encode(&active, &mut [0; MAX_RECORD]), Some(152));
    }

    #[test]
    fn what_postcard_refuses_is_refused() {
        // Varints one byte too long or with bits beyond their width; a bool or an Option tag
        // other than 0 or 1. Bytes after a record are ignored, as postcard does.
        for bad in [
            &[0x80, 0x80, 0x80, 0x80, 0x80, 0, 0, 0][..], // u32 of 6 bytes
            &[0xff, 0xff, 0xff, 0xff, 0x10, 0, 0, 0],     // u32 with a 33rd bit
        ] {
            assert!(decode::<Counters>(bad).is_none(), "{bad:02x?}");
        }
        assert_eq!(
            decode::<Counters>(&[1, 2, 3, 4, 5]).unwrap(),
            Counters {
                updates: 1,
                failures: 2,
                reverts: 3,
                report_seq: 4
            }
        );
        assert!(decode::<Pending>(&[1, 1, 1, 2, 0]).is_none());
        let mut stream = hex("07 09 88 27 02");
        stream.extend([0; 40]);
        assert!(decode::<StreamRecord>(&stream).is_none());
        // All zero but accuracy_bp (after 105 bytes of fields): 0x84 0x80 0x04 sets bit 16 of
        // a u16, 0x84 0x80 0x03 is the widest it takes.
        let mut active = [0u8; 112];
        active[105..108].copy_from_slice(&[0x84, 0x80, 0x04]);
        assert!(decode::<ActiveModel>(&active).is_none());
        active[107] = 0x03;
        assert!(decode::<ActiveModel>(&active).is_some());
    }
}
