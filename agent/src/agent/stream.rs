//! Payloads fetched as a delta or compressed stream (`delta`, `docs/delta-format.md`): the
//! server's offer taken only when the device holds the base it names (hashed from flash, before
//! anything is fetched), the stream decoded block by block into the plain download path (so
//! erasing, hashing, digests, progress and reports are those of a full download), and a
//! checkpoint persisted so that a reset resumes at a block boundary.

use super::pending::{Target, Update};
use super::{Agent, Next};
use crate::error::{Error, flash};
use crate::store::{Key, StreamRecord};
use delta::{Base, Checkpoint, Decoder, FormatError, Header, Kind, Progress};
use embassy_embedded_hal::flash::partition::BlockingPartition;
use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use embedded_storage::nor_flash::{NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash};
use protocol::{Failure, Step, StreamOffer};
use sha2::{Digest as _, Sha256};

/// The stream being fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct StreamDownload {
    pub id: u64,
    pub len: u32,
    /// Next stream byte to ask for.
    pub at: u32,
    base: Option<([u8; 32], u32)>,
    header: Option<(u32, [u8; 32])>,
    /// Where the block being decoded starts, and the checkpoint in flash.
    block_start: Checkpoint,
    saved: Checkpoint,
}

const START: Checkpoint = Checkpoint {
    block: 0,
    stream_offset: 0,
};

impl StreamDownload {
    fn record(&self, release: u64) -> StreamRecord {
        StreamRecord {
            release,
            id: self.id,
            len: self.len,
            base: self.base,
            header: self.header,
            block: self.saved.block,
            stream_offset: self.saved.stream_offset,
        }
    }

    pub(super) fn from_record(r: &StreamRecord) -> Self {
        let saved = match r.header {
            Some(_) => Checkpoint {
                block: r.block,
                stream_offset: r.stream_offset,
            },
            None => START,
        };
        Self {
            id: r.id,
            len: r.len,
            at: saved.stream_offset,
            base: r.base,
            header: r.header,
            block_start: saved,
            saved,
        }
    }

    /// A decoder where this stream resumes.
    fn decoder(&self) -> Decoder {
        match self.header {
            None => Decoder::new(),
            Some((target_len, target_sha256)) => {
                let (base_sha256, base_len) = self.base.unwrap_or(([0; 32], 0));
                let header = Header {
                    kind: if self.base.is_some() {
                        Kind::Delta
                    } else {
                        Kind::Compressed
                    },
                    target_len,
                    target_sha256,
                    base_len,
                    base_sha256,
                };
                Decoder::resume(header, self.saved)
            }
        }
    }
}

/// How an update's payloads travel (for the platform's log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    Plain,
    Delta,
    Compressed,
}

/// The base a delta is applied to: the running image, or the active model slot, in flash.
struct SlotBase<'f, F: NorFlash> {
    part: BlockingPartition<'f, NoopRawMutex, F>,
    start: u32,
}

impl<F: NorFlash> Base for SlotBase<'_, F> {
    type Error = NorFlashErrorKind;
    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), NorFlashErrorKind> {
        self.part
            .read(self.start + offset, buf)
            .map_err(|e| e.kind())
    }
}

impl<'f, F: NorFlash> Agent<'f, F> {
    /// Gives the agent a decoder for streams (RAM the platform owns: `size_of::<Decoder>()`).
    /// Without one the agent fetches plain payloads only and says so in its check-ins.
    pub fn set_stream_decoder(&mut self, decoder: &'f mut Decoder) {
        if let Some(s) = self.stream {
            *decoder = s.decoder();
        }
        self.decoder = Some(decoder);
    }

    /// The release being downloaded and how its payloads are coming (`None` when nothing is
    /// being downloaded; a finished stream leaves the plain path's state: `Plain`).
    pub fn transfer(&self) -> Option<(u64, Transfer)> {
        self.pending.filter(|p| p.stage.downloading()).map(|p| {
            let how = match self.stream {
                None => Transfer::Plain,
                Some(s) if s.base.is_some() => Transfer::Delta,
                Some(_) => Transfer::Compressed,
            };
            (p.release, how)
        })
    }

    /// Whether this agent decodes streams (`CheckIn::streams`).
    pub fn accepts_streams(&self) -> bool {
        self.decoder.is_some()
    }

    /// Takes the server's stream offer for the release just started, if the device holds its
    /// base intact and nothing of the plain payloads is written yet; otherwise the download
    /// goes on with the plain payloads.
    pub(super) fn offer_stream(&mut self, release: u64, offer: StreamOffer) -> Result<(), Error> {
        let Some(p) = self.pending else {
            return Ok(());
        };
        if self.decoder.is_none()
            || self.stream.is_some()
            || p.release != release
            || !p.stage.downloading()
            || self.cursor != 0
            || offer.len == 0
        {
            return Ok(());
        }
        let base = match offer.base_sha256 {
            None => None,
            Some(want) => match self.base_digest(p.stage.target())? {
                Some((digest, len)) if digest == want => Some((digest, len)),
                // Another version, or a slot that differs: the full payloads.
                _ => return Ok(()),
            },
        };
        let s = StreamDownload {
            id: offer.id,
            len: offer.len,
            at: 0,
            base,
            header: None,
            block_start: START,
            saved: START,
        };
        self.store
            .set(Key::Stream, &s.record(release), &mut self.buf)?;
        if let Some(d) = self.decoder.as_deref_mut() {
            *d = Decoder::new();
        }
        self.stream = Some(s);
        Ok(())
    }

    /// SHA-256 and length of what a delta for `target` would start from, read from flash: the
    /// running image (verified against its signed header, so a slot that differs has none) or
    /// the active model slot's payloads.
    fn base_digest(&mut self, target: Target) -> Result<Option<([u8; 32], u32)>, Error> {
        match target {
            Target::Firmware => {
                let r = self.layout.active;
                let mut part = BlockingPartition::new(self.flash, r.offset, r.size);
                Ok(
                    bootloader::verify_slot(&mut part, self.layout, &self.root, &mut self.buf)
                        .ok()
                        .map(|info| (info.digest, info.size)),
                )
            }
            Target::Model => {
                let Some((slot, len)) = self
                    .active
                    .map(|a| (a.slot, a.model_size.saturating_add(a.set_size)))
                else {
                    return Ok(None);
                };
                let r = self.region(super::slot_of(slot));
                let mut part = BlockingPartition::new(self.flash, r.offset, r.size);
                let mut hasher = Sha256::new();
                let mut chunk = [0u8; 256];
                let mut at = 0;
                while at < len {
                    let n = (len - at).min(chunk.len() as u32) as usize;
                    part.read(at, &mut chunk[..n]).map_err(flash)?;
                    hasher.update(&chunk[..n]);
                    at += n as u32;
                }
                Ok(Some((hasher.finalize().into(), len)))
            }
        }
    }

    /// A chunk of the stream: decoded, and each whole block written as the plain payloads
    /// would be. A stream that does not decode, or decodes to something else than the
    /// release, abandons the update with a `Download` failure report.
    pub fn on_stream_chunk(
        &mut self,
        release: u64,
        id: u64,
        offset: u32,
        data: &[u8],
    ) -> Result<Next, Error> {
        let (Some(p), Some(s)) = (self.pending, self.stream) else {
            return Err(Error::NoUpdate);
        };
        if release != p.release
            || id != s.id
            || !p.stage.downloading()
            || offset != s.at
            || data.is_empty()
            || offset as u64 + data.len() as u64 > u64::from(s.len)
        {
            return Err(Error::UnexpectedChunk);
        }
        let Some(decoder) = self.decoder.take() else {
            return self.fail_stream(FormatError::Unsupported);
        };
        let fed = self.feed(decoder, p, s, data);
        self.decoder = Some(decoder);
        match fed {
            Ok(()) => Ok(self.next_fetch()),
            Err(Error::Stream(e)) => self.fail_stream(e),
            Err(e) => Err(e),
        }
    }

    fn feed(
        &mut self,
        decoder: &mut Decoder,
        p: Update,
        mut s: StreamDownload,
        data: &[u8],
    ) -> Result<(), Error> {
        let mut base = {
            let (r, start) = match p.stage.target() {
                Target::Firmware => (self.layout.active, self.layout.image_header_size),
                Target::Model => (
                    self.region(self.active_slot().unwrap_or(protocol::ModelSlot::A)),
                    0,
                ),
            };
            SlotBase {
                part: BlockingPartition::new(self.flash, r.offset, r.size),
                start,
            }
        };
        let mut taken = 0;
        let mut done = false;
        // After a header or a block the decoder is asked again, even with nothing left: the
        // last block is followed by `Done`.
        let mut again = true;
        while !done && (taken < data.len() || again) {
            let rest = data.get(taken..).unwrap_or_default();
            let (n, progress) = decoder.feed(rest, &mut base).map_err(|e| match e {
                delta::Error::Format(f) => Error::Stream(f),
                delta::Error::Base(kind) => Error::Flash(kind),
            })?;
            taken += n;
            again = matches!(progress, Progress::Header(_) | Progress::Block { .. });
            match progress {
                Progress::NeedInput => {}
                Progress::Done => done = true,
                Progress::Header(h) => {
                    let fits = h.target_len == p.total
                        && match s.base {
                            None => h.kind == Kind::Compressed,
                            Some((digest, len)) => {
                                h.kind == Kind::Delta
                                    && h.base_sha256 == digest
                                    && h.base_len == len
                            }
                        };
                    if !fits {
                        return Err(Error::Stream(FormatError::BadHeader));
                    }
                    s.header = Some((h.target_len, h.target_sha256));
                    s.block_start = Checkpoint {
                        block: 0,
                        stream_offset: delta::HEADER_LEN as u32,
                    };
                }
                Progress::Block {
                    index,
                    data: block,
                    next,
                } => {
                    let start = index * delta::BLOCK_SIZE as u32;
                    let end = start + block.len() as u32;
                    if end > self.cursor {
                        let skip = self
                            .cursor
                            .checked_sub(start)
                            .ok_or(Error::Stream(FormatError::OutOfBounds))?;
                        let now = self.pending.ok_or(Error::NoUpdate)?;
                        let rest = block.get(skip as usize..).unwrap_or_default();
                        self.write_payload(now, self.cursor, rest)?;
                    }
                    // Resume where the flash has everything before: never past the persisted
                    // offset of the download.
                    let persisted = self.pending.map_or(0, |p| p.offset);
                    let cp = if end <= persisted {
                        next
                    } else if start <= persisted {
                        s.block_start
                    } else {
                        s.saved
                    };
                    s.block_start = next;
                    if cp != s.saved && s.header.is_some() {
                        s.saved = cp;
                        self.store
                            .set(Key::Stream, &s.record(p.release), &mut self.buf)?;
                    }
                }
            }
        }
        s.at += taken as u32;
        if taken < data.len() {
            return Err(Error::Stream(FormatError::TrailingInput));
        }
        if s.at >= s.len && !done {
            return Err(Error::Stream(FormatError::Truncated));
        }
        if self.pending.is_none() {
            return Ok(());
        }
        if done {
            self.store.remove(Key::Stream, &mut self.buf)?;
            self.stream = None;
        } else {
            self.stream = Some(s);
        }
        Ok(())
    }

    /// The stream failed: the update is dropped (nothing was marked for swap or switched to)
    /// and the server hears a `Download` failure.
    fn fail_stream(&mut self, e: FormatError) -> Result<Next, Error> {
        let version = self.info()?.version;
        let (release, kind) = self
            .pending
            .map(|p| (p.release, p.stage.target().kind()))
            .ok_or(Error::NoUpdate)?;
        self.abandon()?;
        self.counters.failures += 1;
        self.push_report(release, kind, version, Step::Failed(Failure::Download))?;
        Err(Error::Stream(e))
    }

    /// Drops the stream record with the update it belongs to.
    pub(super) fn clear_stream(&mut self) -> Result<(), Error> {
        if self.stream.take().is_some() {
            self.store.remove(Key::Stream, &mut self.buf)?;
        }
        Ok(())
    }
}
