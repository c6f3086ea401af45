//! Downloads: a release checked and its first writes made when the command comes, then each
//! chunk erased, written and hashed where it goes, progress persisted at each erase sector.

use super::pending::{Event, Stage, Target, Update};
use super::release::release_info_of;
use super::{Agent, Next};
use crate::error::{Error, flash};
use crate::store::Key;
use artifact::{ComponentKind, Version};
use embassy_embedded_hal::flash::partition::BlockingPartition;
use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use embedded_storage::nor_flash::{NorFlash, ReadNorFlash};
use protocol::{ChunkRequest, Failure, Step};
use sha2::{Digest as _, Sha256};

/// Bytes the agent asks for per chunk (a multiple of every supported write size).
pub const CHUNK: u32 = 1024;
/// Largest image header a layout may ask for.
const MAX_HEADER: usize = 4096;

impl<'f, F: NorFlash> Agent<'f, F> {
    /// Checks the release before writing a single byte: signature threshold, board, security
    /// counter (firmware: the bootloader's; model: the active model's), runtime ABI, arena and
    /// slot size.
    pub(super) fn start_update(&mut self, release: u64, envelope: &[u8]) -> Result<Next, Error> {
        if let Some(p) = self.pending {
            if p.release == release {
                return Ok(if p.stage.downloading() {
                    self.next_fetch()
                } else {
                    Next::Idle
                });
            }
            if !p.stage.downloading() {
                // A firmware update waits for its reboot: one update at a time.
                return Ok(Next::Idle);
            }
            self.abandon()?;
        }
        // Verified once: the checks, the failure report and the update's info all use it.
        let verified = self.root.verify_manifest(envelope);
        let (kind, version) = verified
            .as_ref()
            .ok()
            .and_then(|v| v.manifest.primary().map(|c| (c.kind, c.version)))
            .unwrap_or((ComponentKind::Model, Version::default()));
        let checked = verified.map_err(Error::Refused).and_then(|v| {
            Ok((
                self.check_release(&v.manifest, envelope.len())?,
                release_info_of(&v.manifest)?,
            ))
        });
        let ((total, target), info) = match checked {
            Ok(x) => x,
            Err(e) => {
                let failure = match e {
                    Error::Refused(a) => Failure::Manifest(a),
                    _ => Failure::Model,
                };
                self.counters.failures += 1;
                self.push_report(release, kind, version, Step::Failed(failure))?;
                return Err(e);
            }
        };
        // The envelope first, then the pending record that points at it.
        self.store
            .set_bytes(Key::Envelope, envelope, &mut self.buf)?;
        self.info = Some(info);
        let pending = Update {
            release,
            offset: 0,
            total,
            stage: Stage::Downloading(target),
        };
        if target == Target::Firmware {
            // The image header (the signed manifest the bootloader checks) goes first.
            let mut header = [0xFFu8; MAX_HEADER];
            let header = header
                .get_mut(..self.layout.image_header_size as usize)
                .ok_or(Error::DoesNotFit)?;
            bootloader::header::write(envelope, header).map_err(|_| Error::DoesNotFit)?;
            let mut part = self.target_partition(target);
            let erase = F::ERASE_SIZE as u32;
            part.erase(0, erase).map_err(flash)?;
            part.write(0, header).map_err(flash)?;
        }
        self.set_pending(pending)?;
        self.cursor = 0;
        self.hasher = Sha256::new();
        Ok(self.next_fetch())
    }

    pub(super) fn next_fetch(&self) -> Next {
        match self.pending {
            Some(p) if self.cursor < p.total => Next::Fetch(match self.stream {
                Some(s) => ChunkRequest {
                    release: p.release,
                    offset: s.at,
                    len: CHUNK.min(s.len.saturating_sub(s.at)).max(1),
                    stream: Some(s.id),
                },
                None => ChunkRequest {
                    release: p.release,
                    offset: self.cursor,
                    len: CHUNK.min(p.total - self.cursor),
                    stream: None,
                },
            }),
            Some(p) if p.stage.target() == Target::Model => Next::Validate,
            Some(_) => Next::Reboot,
            None => Next::Idle,
        }
    }

    /// Where a release's payloads go: the DFU slot after the image header, or the inactive
    /// model slot from its start. Returns the partition; `base` is `header_base`.
    pub(super) fn target_partition(
        &self,
        target: Target,
    ) -> BlockingPartition<'f, NoopRawMutex, F> {
        let r = match target {
            Target::Firmware => self.layout.dfu,
            Target::Model => self.region(self.inactive_slot()),
        };
        BlockingPartition::new(self.flash, r.offset, r.size)
    }

    pub(super) fn header_base(&self, target: Target) -> u32 {
        match target {
            Target::Firmware => self.layout.image_header_size,
            Target::Model => 0,
        }
    }

    /// (size, digest) of each payload, in download order.
    fn parts(&self) -> Result<heapless::Vec<(u32, [u8; 32]), 2>, Error> {
        Ok(self.info()?.parts.clone())
    }

    /// Start of the payload that contains stream offset `at` (the hash restarts there).
    fn part_start(&self, at: u32) -> Result<(u32, u32), Error> {
        let mut start = 0;
        for (size, _) in self.parts()? {
            if at < start + size {
                return Ok((start, start + size));
            }
            start += size;
        }
        Ok((start, start))
    }

    /// Recomputes the running digest of the bytes already written (after a reset).
    pub(super) fn rehash(&mut self, upto: u32) -> Result<(), Error> {
        let target = self.pending.map_or(Target::Model, |p| p.stage.target());
        let base = self.header_base(target);
        let (start, _) = self.part_start(upto)?;
        let mut part = self.target_partition(target);
        self.hasher = Sha256::new();
        let mut at = start;
        let mut chunk = [0u8; 256];
        while at < upto {
            let n = (upto - at).min(chunk.len() as u32) as usize;
            part.read(base + at, &mut chunk[..n]).map_err(flash)?;
            self.hasher.update(&chunk[..n]);
            at += n as u32;
        }
        Ok(())
    }

    /// Writes a chunk where the release goes, hashing as it goes; a payload whose digest
    /// differs is caught at its last byte, before anything is committed or marked for swap.
    pub fn on_chunk(&mut self, release: u64, offset: u32, data: &[u8]) -> Result<Next, Error> {
        let Some(p) = self.pending else {
            return Err(Error::NoUpdate);
        };
        if release != p.release
            || !p.stage.downloading()
            || self.stream.is_some()
            || offset != self.cursor
            || data.is_empty()
            || offset + data.len() as u32 > p.total
        {
            return Err(Error::UnexpectedChunk);
        }
        self.write_payload(p, offset, data)?;
        Ok(self.next_fetch())
    }

    /// Writes payload bytes at `offset` (the cursor) where the release goes: each sector
    /// erased when first reached, the bytes hashed (a payload's digest checked at its last
    /// byte: a mismatch abandons the update with a report), progress persisted at each sector
    /// and at the end (then a firmware is marked for swap).
    pub(super) fn write_payload(
        &mut self,
        p: Update,
        offset: u32,
        data: &[u8],
    ) -> Result<(), Error> {
        let release = p.release;
        let target = p.stage.target();
        let base = self.header_base(target);
        let erase = F::ERASE_SIZE as u32;
        let word = F::WRITE_SIZE;
        let mut part = self.target_partition(target);
        // Erase each sector when the download first reaches its start (a resume restarts at
        // one; the header's sector was erased with the header).
        let (from, to) = (base + offset, base + offset + data.len() as u32);
        let mut sector = from.div_ceil(erase) * erase;
        while sector < to {
            part.erase(sector, sector + erase).map_err(flash)?;
            sector += erase;
        }
        // Whole words, then the tail padded with 0xFF (only at the end of the payloads).
        let whole = data.len() / word * word;
        if whole > 0 {
            part.write(from, &data[..whole]).map_err(flash)?;
        }
        if whole < data.len() {
            let mut tail = [0xFFu8; 64];
            let rest = &data[whole..];
            tail[..rest.len()].copy_from_slice(rest);
            part.write(from + whole as u32, &tail[..word])
                .map_err(flash)?;
        }
        // Hash, finishing each payload's digest at its last byte.
        let parts = self.parts()?;
        let kind = target.kind();
        let mut at = offset;
        let mut rest = data;
        while !rest.is_empty() {
            let (_, boundary) = self.part_start(at)?;
            let n = ((boundary - at) as usize).min(rest.len());
            self.hasher.update(&rest[..n]);
            at += n as u32;
            rest = &rest[n..];
            if at == boundary {
                let digest: [u8; 32] = core::mem::replace(&mut self.hasher, Sha256::new())
                    .finalize()
                    .into();
                let mut start = 0;
                let want = parts.iter().find_map(|&(size, d)| {
                    start += size;
                    (start == boundary).then_some(d)
                });
                if Some(digest) != want {
                    let version = self.info()?.version;
                    self.abandon()?;
                    self.counters.failures += 1;
                    self.push_report(release, kind, version, Step::Failed(Failure::Digest))?;
                    return Err(Error::Digest);
                }
            }
        }
        self.cursor = at;
        // Persist progress at each completed sector and at the end.
        let end = at;
        if end == p.total || (base + end) / erase != from / erase {
            let persisted = if end == p.total {
                end
            } else {
                ((base + end) / erase * erase).saturating_sub(base)
            };
            let mut record = Update {
                offset: persisted,
                ..p
            };
            let version = self.info()?.version;
            // Complete, a firmware is installed; a model stays downloaded until validated.
            let installed = if end == p.total {
                p.stage.next(Event::Downloaded)
            } else {
                None
            };
            if let Some(stage) = installed {
                // Ask the bootloader to swap at the next reset.
                self.boot_state(|state| state.mark_updated())?;
                record.stage = stage;
            }
            self.set_pending(record)?;
            if end == p.total {
                self.push_report(release, kind, version, Step::Downloaded)?;
                if installed.is_some() {
                    self.push_report(release, kind, version, Step::Installed)?;
                }
            }
        }
        Ok(())
    }
}
