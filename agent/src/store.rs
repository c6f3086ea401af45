//! The agent's persistent records: a sequential-storage map (postcard values) in the layout's
//! key-value region. Each store is one CRC-protected item: a power cut leaves the previous
//! value readable, never a half-written one.

use crate::Error;
use bootloader::SharedFlash;
use embassy_embedded_hal::adapter::BlockingAsync;
use embassy_embedded_hal::flash::partition::BlockingPartition;
use embassy_futures::block_on;
use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use embedded_storage::nor_flash::{MultiwriteNorFlash, NorFlash};
use layout::Layout;
use sequential_storage::cache::Cache;
use sequential_storage::map::{MapConfig, MapStorage, PostcardValue};
use serde::{Deserialize, Serialize};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

impl PostcardValue<'_> for ActiveModel {}

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

impl PostcardValue<'_> for Pending {}

/// A pending update fetched as a stream (`delta`): which stream, what its header said once read,
/// and the block a reset resumes at. Its block never starts after the pending record's offset
/// (written after it), so resuming re-decodes at most what was written and skips it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

impl PostcardValue<'_> for StreamRecord {}

/// Lifetime counters (reported in every check-in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Counters {
    pub updates: u32,
    pub failures: u32,
    pub reverts: u32,
    pub report_seq: u32,
}

impl PostcardValue<'_> for Counters {}

type Part<'f, F> = BlockingAsync<BlockingPartition<'f, NoopRawMutex, F>>;

/// The record store over the key-value region.
#[allow(missing_debug_implementations)] // sequential-storage's map has no Debug
pub struct Store<'f, F: NorFlash + MultiwriteNorFlash> {
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

/// Item buffer: the largest record is the envelope.
pub const BUF: usize = artifact::MAX_ENVELOPE_LEN + 64;

impl<'f, F: NorFlash + MultiwriteNorFlash> Store<'f, F> {
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

    pub fn get<V: for<'a> PostcardValue<'a>>(
        &mut self,
        key: Key,
        buf: &mut [u8; BUF],
    ) -> Result<Option<V>, Error> {
        block_on(self.map.fetch_item::<V>(buf, &key.id())).map_err(|_| Error::Storage)
    }

    pub fn set<V: for<'a> PostcardValue<'a>>(
        &mut self,
        key: Key,
        value: &V,
        buf: &mut [u8; BUF],
    ) -> Result<(), Error> {
        block_on(self.map.store_item(buf, &key.id(), value)).map_err(|_| Error::Storage)
    }

    /// Reads raw bytes (the envelope) into `out`; returns their length.
    pub fn get_bytes(
        &mut self,
        key: Key,
        buf: &mut [u8; BUF],
        out: &mut [u8],
    ) -> Result<Option<usize>, Error> {
        let found: Option<&[u8]> =
            block_on(self.map.fetch_item::<&[u8]>(buf, &key.id())).map_err(|_| Error::Storage)?;
        match found {
            Some(b) => {
                let dst = out.get_mut(..b.len()).ok_or(Error::Storage)?;
                dst.copy_from_slice(b);
                Ok(Some(b.len()))
            }
            None => Ok(None),
        }
    }

    pub fn set_bytes(&mut self, key: Key, value: &[u8], buf: &mut [u8; BUF]) -> Result<(), Error> {
        block_on(self.map.store_item(buf, &key.id(), &value)).map_err(|_| Error::Storage)
    }

    pub fn remove(&mut self, key: Key, buf: &mut [u8; BUF]) -> Result<(), Error> {
        block_on(self.map.remove_item(buf, &key.id())).map_err(|_| Error::Storage)
    }
}
