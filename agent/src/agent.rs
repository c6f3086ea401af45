//! The agent core: model updates from command to commit, with the validation gate.

use crate::Error;
use crate::store::{ActiveModel, BUF, Counters, Key, Pending, Store};
use artifact::{ComponentKind, DeviceState, MAX_ENVELOPE_LEN, Manifest, TrustRoot, Version};
use bootloader::SharedFlash;
use embassy_embedded_hal::flash::partition::BlockingPartition;
use embedded_storage::nor_flash::{MultiwriteNorFlash, NorFlash, ReadNorFlash};
use heapless::Deque;
use layout::{Layout, Region};
use protocol::{
    BootStatus, ChunkRequest, Command, Failure, Figures, ModelSlot, RevertReason, Step,
};
use sha2::{Digest as _, Sha256};

/// Bytes the agent asks for per chunk (a multiple of every supported write size).
pub const CHUNK: u32 = 1024;
/// Largest image header a layout may ask for.
const MAX_HEADER: usize = 4096;
const PHASE_DOWNLOADING: u8 = 0;
/// Firmware written and marked for swap; waiting for the reboot.
const PHASE_INSTALLED: u8 = 1;
/// Firmware booted on trial; waiting for its validation.
const PHASE_BOOTED: u8 = 2;
/// Firmware failed its validation; waiting for the reset that reverts it.
const PHASE_REJECTED: u8 = 3;
/// Reports kept until delivered (in RAM and in flash).
const REPORTS: usize = crate::store::REPORT_SLOTS as usize;

/// Who the device is: fixed for a firmware build.
#[derive(Debug, Clone, Copy)]
pub struct Identity<'a> {
    pub device_id: &'a str,
    pub board: &'a str,
    /// Model-runtime ABI this firmware provides.
    pub runtime_abi: u32,
    /// Largest tensor arena this firmware can give a model.
    pub arena_capacity: u32,
}

/// What the platform should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Nothing to do until the next check-in.
    Idle,
    /// Ask for this chunk.
    Fetch(ChunkRequest),
    /// The download is complete: run `validate` on the inactive model slot.
    Validate,
    /// A new model is active in this slot: reload the interpreter from it.
    Switched(ModelSlot),
    /// A firmware runs on trial: run `confirm_firmware` on the active model slot.
    CheckFirmware,
    /// Reset the device (to swap in a firmware, or to let the bootloader revert one).
    Reboot,
}

/// A step report waiting for delivery (the device id is added when it is sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingReport {
    pub seq: u32,
    pub release: u64,
    pub component: ComponentKind,
    pub version: Version,
    pub step: Step,
}

/// What an update needs of its verified manifest.
fn release_info_of(m: &Manifest<'_>) -> Result<ReleaseInfo, Error> {
    let primary = m.primary().ok_or(Error::DoesNotFit)?;
    let mut parts = heapless::Vec::new();
    for kind in [
        ComponentKind::Firmware,
        ComponentKind::Model,
        ComponentKind::ValidationSet,
    ] {
        if let Some(c) = m.component(kind) {
            parts
                .push((c.size, c.digest))
                .map_err(|_| Error::DoesNotFit)?;
        }
    }
    let part = |k| m.component(k).map_or((0, [0; 32]), |c| (c.size, c.digest));
    let (model_size, model_digest) = part(ComponentKind::Model);
    let (set_size, set_digest) = part(ComponentKind::ValidationSet);
    let mut name = [0u8; 32];
    let len = primary.name.len().min(32);
    name[..len].copy_from_slice(&primary.name.as_bytes()[..len]);
    Ok(ReleaseInfo {
        name: (name, len as u8),
        version: primary.version,
        counter: m.security_counter,
        policy: m.policy.unwrap_or_default(),
        arena: m.arena_size.unwrap_or(0),
        parts,
        model_size,
        set_size,
        model_digest,
        set_digest,
    })
}

/// A model's validation run: parse, plan, run every sample through the interpreter.
fn run_validation(
    model_bytes: &[u8],
    set_bytes: &[u8],
    arena: &mut [u8],
    now_ns: impl FnMut() -> u64,
) -> Result<model::Report, model::Error> {
    let model = model::Model::parse(model_bytes)?;
    let set = model::ValidationSet::parse(set_bytes)?;
    let mut interp = model::Interpreter::new(&model, arena)?;
    model::validation::run(&mut interp, &set, now_ns)
}

fn figures_of(r: &model::Report) -> Figures {
    Figures {
        samples: r.samples,
        accuracy_bp: r.accuracy_bp,
        p50_us: r.p50_us,
        p99_us: r.p99_us,
    }
}

/// The first part of a policy a verdict fails.
fn revert_reason(v: &model::Verdict) -> RevertReason {
    if !v.accuracy_ok {
        RevertReason::Accuracy
    } else if !v.latency_ok {
        RevertReason::Latency
    } else {
        RevertReason::AccuracyDrop
    }
}

fn slot_of(n: u8) -> ModelSlot {
    if n == 0 { ModelSlot::A } else { ModelSlot::B }
}

fn slot_index(s: ModelSlot) -> u8 {
    match s {
        ModelSlot::A => 0,
        ModelSlot::B => 1,
    }
}

/// The agent of one device over its flash.
#[allow(missing_debug_implementations)] // holds the shared flash mutex and the store
pub struct Agent<'f, F: NorFlash + MultiwriteNorFlash> {
    flash: &'f SharedFlash<F>,
    layout: &'f Layout,
    root: TrustRoot,
    identity: Identity<'f>,
    store: Store<'f, F>,
    buf: [u8; BUF],
    envelope: [u8; MAX_ENVELOPE_LEN],
    envelope_len: usize,
    active: Option<ActiveModel>,
    pending: Option<Pending>,
    /// Bytes of the pending update written (ahead of the persisted offset).
    cursor: u32,
    hasher: Sha256,
    counters: Counters,
    reports: Deque<PendingReport, REPORTS>,
    last_validation: Option<Figures>,
    /// What the pending release's verified manifest says (checked once, not per chunk).
    info: Option<ReleaseInfo>,
}

/// The parts of a verified manifest the agent needs while an update is in progress.
#[derive(Debug, Clone)]
struct ReleaseInfo {
    /// The primary component's name (names are at most 32 bytes).
    name: ([u8; 32], u8),
    version: Version,
    counter: u64,
    policy: artifact::Policy,
    arena: u32,
    /// (size, digest) of each payload, in download order.
    parts: heapless::Vec<(u32, [u8; 32]), 2>,
    model_size: u32,
    set_size: u32,
    model_digest: [u8; 32],
    set_digest: [u8; 32],
}

impl<'f, F: NorFlash + MultiwriteNorFlash> Agent<'f, F> {
    /// Loads the agent's records; an interrupted download resumes at its last persisted offset.
    pub fn open(
        flash: &'f SharedFlash<F>,
        layout: &'f Layout,
        root: TrustRoot,
        identity: Identity<'f>,
    ) -> Result<Self, Error> {
        let mut store = Store::new(flash, layout)?;
        let mut buf = [0u8; BUF];
        let active = store.get::<ActiveModel>(Key::ActiveModel, &mut buf)?;
        let mut pending = store.get::<Pending>(Key::Pending, &mut buf)?;
        let counters = store
            .get::<Counters>(Key::Counters, &mut buf)?
            .unwrap_or_default();
        let mut envelope = [0u8; MAX_ENVELOPE_LEN];
        let envelope_len = match pending {
            Some(_) => match store.get_bytes(Key::Envelope, &mut buf, &mut envelope)? {
                Some(n) => n,
                None => {
                    pending = None;
                    0
                }
            },
            None => 0,
        };
        let mut agent = Agent {
            flash,
            layout,
            root,
            identity,
            store,
            buf,
            envelope,
            envelope_len,
            active,
            pending,
            cursor: 0,
            hasher: Sha256::new(),
            counters,
            reports: Deque::new(),
            last_validation: None,
            info: None,
        };
        agent.load_reports()?;
        if let Some(p) = agent.pending {
            agent.info = agent.release_info().ok();
            let committed = agent.info.as_ref().map(|i| i.model_digest);
            if agent.info.is_none() {
                agent.abandon()?;
            } else if !p.firmware
                && committed.is_some()
                && committed == agent.active.map(|a| a.model_digest)
            {
                // Power went between the switch and the clean-up: the update is done.
                agent.clear_pending()?;
            } else if p.phase == PHASE_DOWNLOADING {
                agent.cursor = p.offset;
                agent.rehash(p.offset)?;
            } else {
                agent.cursor = p.total;
            }
        }
        Ok(agent)
    }

    fn manifest(&self) -> Result<Manifest<'_>, Error> {
        let env = self
            .envelope
            .get(..self.envelope_len)
            .ok_or(Error::NoUpdate)?;
        Ok(self
            .root
            .verify_manifest(env)
            .map_err(Error::Refused)?
            .manifest)
    }

    /// Verifies the stored envelope and keeps what the update needs.
    fn release_info(&self) -> Result<ReleaseInfo, Error> {
        release_info_of(&self.manifest()?)
    }

    fn info(&self) -> Result<&ReleaseInfo, Error> {
        self.info.as_ref().ok_or(Error::NoUpdate)
    }

    pub fn identity(&self) -> Identity<'f> {
        self.identity
    }

    /// The active model, if any.
    pub fn active(&self) -> Option<&ActiveModel> {
        self.active.as_ref()
    }

    pub fn active_slot(&self) -> Option<ModelSlot> {
        self.active.map(|a| slot_of(a.slot))
    }

    /// The slot an update is written to: the one inference is not using.
    pub fn inactive_slot(&self) -> ModelSlot {
        self.active_slot().map_or(ModelSlot::A, ModelSlot::other)
    }

    pub fn region(&self, slot: ModelSlot) -> Region {
        match slot {
            ModelSlot::A => self.layout.model_a,
            ModelSlot::B => self.layout.model_b,
        }
    }

    /// Download progress, for the check-in.
    pub fn progress(&self) -> Option<protocol::Progress> {
        self.pending.map(|p| protocol::Progress {
            release: p.release,
            offset: self.cursor,
            total: p.total,
        })
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    pub fn last_validation(&self) -> Option<Figures> {
        self.last_validation
    }

    /// Whether a complete download awaits validation (after a reset during validation, too).
    pub fn needs_validation(&self) -> bool {
        self.pending
            .is_some_and(|p| !p.firmware && self.cursor == p.total)
    }

    /// The next report to deliver; `delivered` removes it once the server has it.
    pub fn report(&self) -> Option<PendingReport> {
        self.reports.front().copied()
    }

    /// The server has the report `seq`: forget it (in flash too).
    pub fn delivered(&mut self, seq: u32) -> Result<(), Error> {
        if self.reports.front().is_some_and(|r| r.seq == seq) {
            self.reports.pop_front();
            self.store
                .remove(Key::Report((seq % REPORTS as u32) as u8), &mut self.buf)?;
        }
        Ok(())
    }

    /// The report as the protocol carries it.
    pub fn message<'a>(&'a self, r: &PendingReport) -> protocol::Report<'a> {
        protocol::Report {
            device_id: self.identity.device_id,
            seq: r.seq,
            release: r.release,
            component: r.component,
            version: r.version,
            step: r.step,
        }
    }

    /// Reads the undelivered reports a reset left in flash, oldest first.
    fn load_reports(&mut self) -> Result<(), Error> {
        let mut found: heapless::Vec<PendingReport, REPORTS> = heapless::Vec::new();
        let mut bytes = [0u8; 128];
        for slot in 0..crate::store::REPORT_SLOTS {
            let Some(n) = self
                .store
                .get_bytes(Key::Report(slot), &mut self.buf, &mut bytes)?
            else {
                continue;
            };
            if let Ok(r) = protocol::decode::<protocol::Report>(&bytes[..n]) {
                let _ = found.push(PendingReport {
                    seq: r.seq,
                    release: r.release,
                    component: r.component,
                    version: r.version,
                    step: r.step,
                });
            }
        }
        // Insertion sort by sequence number: at most 16 entries, and far less code on the
        // device than the generic sort.
        for i in 1..found.len() {
            let mut j = i;
            while j > 0 && found[j - 1].seq > found[j].seq {
                found.swap(j - 1, j);
                j -= 1;
            }
        }
        for r in found {
            let _ = self.reports.push_back(r);
        }
        Ok(())
    }

    fn push_report(
        &mut self,
        release: u64,
        component: ComponentKind,
        version: Version,
        step: Step,
    ) -> Result<(), Error> {
        self.counters.report_seq = self.counters.report_seq.wrapping_add(1);
        if self.reports.is_full() {
            // Keep the newest: the oldest step is implied by the later ones (and its flash slot
            // is the one the new report takes).
            self.reports.pop_front();
        }
        let report = PendingReport {
            seq: self.counters.report_seq,
            release,
            component,
            version,
            step,
        };
        let _ = self.reports.push_back(report);
        // The counter first: a report is never stored under a sequence number used before.
        self.store
            .set(Key::Counters, &self.counters, &mut self.buf)?;
        let mut bytes = [0u8; 128];
        let n = protocol::encode(&self.message(&report), &mut bytes).map_err(|_| Error::Storage)?;
        self.store.set_bytes(
            Key::Report((report.seq % REPORTS as u32) as u8),
            &bytes[..n],
            &mut self.buf,
        )
    }

    /// Handles a command from the server.
    pub fn on_command(&mut self, cmd: &Command<'_>) -> Result<Next, Error> {
        match *cmd {
            Command::Idle { .. } => Ok(Next::Idle),
            Command::Reboot => Ok(Next::Reboot),
            Command::Revert {
                component: ComponentKind::Model,
            } => self.revert_model(),
            // A confirmed firmware goes back by an update to the last good release (the server
            // sends it): embassy-boot cannot swap a completed swap back.
            Command::Revert { .. } => Ok(Next::Idle),
            Command::Update {
                release, envelope, ..
            } => self.start_update(release, envelope),
        }
    }

    /// Checks the release before writing a single byte: signature threshold, board, security
    /// counter (firmware: the bootloader's; model: the active model's), runtime ABI, arena and
    /// slot size.
    fn start_update(&mut self, release: u64, envelope: &[u8]) -> Result<Next, Error> {
        if let Some(p) = self.pending {
            if p.release == release {
                return Ok(if p.phase == PHASE_DOWNLOADING {
                    self.next_fetch()
                } else {
                    Next::Idle
                });
            }
            if p.phase != PHASE_DOWNLOADING {
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
        let ((total, firmware), info) = match checked {
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
        let dst = self
            .envelope
            .get_mut(..envelope.len())
            .ok_or(Error::DoesNotFit)?;
        dst.copy_from_slice(envelope);
        self.envelope_len = envelope.len();
        // The envelope first, then the pending record that points at it.
        self.store
            .set_bytes(Key::Envelope, envelope, &mut self.buf)?;
        self.info = Some(info);
        let pending = Pending {
            release,
            offset: 0,
            total,
            firmware,
            phase: PHASE_DOWNLOADING,
        };
        if firmware {
            // The image header (the signed manifest the bootloader checks) goes first.
            let mut header = [0xFFu8; MAX_HEADER];
            let header = header
                .get_mut(..self.layout.image_header_size as usize)
                .ok_or(Error::DoesNotFit)?;
            bootloader::header::write(envelope, header).map_err(|_| Error::DoesNotFit)?;
            let mut part = self.target_partition(true);
            let erase = F::ERASE_SIZE as u32;
            part.erase(0, erase).map_err(|_| Error::Flash)?;
            part.write(0, header).map_err(|_| Error::Flash)?;
        }
        self.store.set(Key::Pending, &pending, &mut self.buf)?;
        self.pending = Some(pending);
        self.cursor = 0;
        self.hasher = Sha256::new();
        Ok(self.next_fetch())
    }

    /// Returns the payload bytes to download and whether it is a firmware release.
    fn check_release(&self, m: &Manifest<'_>, envelope_len: usize) -> Result<(u32, bool), Error> {
        let firmware = m.component(ComponentKind::Firmware);
        let model = m.component(ComponentKind::Model);
        let firmware_counter = match firmware {
            Some(_) => {
                let r = self.layout.security_counter;
                bootloader::SecurityCounter::new(BlockingPartition::new(
                    self.flash, r.offset, r.size,
                ))
                .and_then(|mut c| c.get())
                .map_err(|_| Error::Flash)?
            }
            None => 0,
        };
        m.check_device(&DeviceState {
            board: self.identity.board,
            runtime_abi: self.identity.runtime_abi,
            firmware_counter,
            model_counter: self.active.map_or(0, |a| a.security_counter),
        })
        .map_err(Error::Refused)?;
        match (firmware, model) {
            (Some(fw), None) => {
                let header = self.layout.image_header_size;
                if fw.size > self.layout.max_image_size()
                    || envelope_len + bootloader::header::PREFIX_LEN > header as usize
                {
                    return Err(Error::DoesNotFit);
                }
                // A new firmware must run the active model: same runtime ABI.
                if m.runtime_abi != Some(self.identity.runtime_abi) && self.active.is_some() {
                    return Err(Error::Refused(artifact::Error::AbiMismatch));
                }
                Ok((fw.size, true))
            }
            (None, Some(model)) => {
                let set = m
                    .component(ComponentKind::ValidationSet)
                    .ok_or(Error::DoesNotFit)?;
                let total = model.size.checked_add(set.size).ok_or(Error::DoesNotFit)?;
                if total > self.region(self.inactive_slot()).size
                    || m.arena_size.unwrap_or(u32::MAX) > self.identity.arena_capacity
                {
                    return Err(Error::DoesNotFit);
                }
                Ok((total, false))
            }
            // A firmware shipped with its model is not handled yet.
            _ => Err(Error::DoesNotFit),
        }
    }

    fn next_fetch(&self) -> Next {
        match self.pending {
            Some(p) if self.cursor < p.total => Next::Fetch(ChunkRequest {
                release: p.release,
                offset: self.cursor,
                len: CHUNK.min(p.total - self.cursor),
            }),
            Some(p) if !p.firmware => Next::Validate,
            Some(_) => Next::Reboot,
            None => Next::Idle,
        }
    }

    /// Where a release's payloads go: the DFU slot after the image header, or the inactive
    /// model slot from its start. Returns the partition; `base` is `header_base`.
    fn target_partition(
        &self,
        firmware: bool,
    ) -> BlockingPartition<'f, embassy_sync::blocking_mutex::raw::NoopRawMutex, F> {
        let r = if firmware {
            self.layout.dfu
        } else {
            self.region(self.inactive_slot())
        };
        BlockingPartition::new(self.flash, r.offset, r.size)
    }

    fn header_base(&self, firmware: bool) -> u32 {
        if firmware {
            self.layout.image_header_size
        } else {
            0
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
    fn rehash(&mut self, upto: u32) -> Result<(), Error> {
        let firmware = self.pending.is_some_and(|p| p.firmware);
        let base = self.header_base(firmware);
        let (start, _) = self.part_start(upto)?;
        let mut part = self.target_partition(firmware);
        self.hasher = Sha256::new();
        let mut at = start;
        let mut chunk = [0u8; 256];
        while at < upto {
            let n = (upto - at).min(chunk.len() as u32) as usize;
            part.read(base + at, &mut chunk[..n])
                .map_err(|_| Error::Flash)?;
            self.hasher.update(&chunk[..n]);
            at += n as u32;
        }
        Ok(())
    }

    fn sizes(&self) -> Result<(u32, u32), Error> {
        let info = self.info()?;
        Ok((info.model_size, info.set_size))
    }

    /// Bytes of the model (then the validation set) of the update in progress: where the
    /// platform's interpreter finds them in the inactive slot.
    pub fn pending_sizes(&self) -> Option<(u32, u32)> {
        self.sizes().ok()
    }

    /// Writes a chunk where the release goes, hashing as it goes; a payload whose digest
    /// differs is caught at its last byte, before anything is committed or marked for swap.
    pub fn on_chunk(&mut self, release: u64, offset: u32, data: &[u8]) -> Result<Next, Error> {
        let Some(p) = self.pending else {
            return Err(Error::NoUpdate);
        };
        if release != p.release
            || p.phase != PHASE_DOWNLOADING
            || offset != self.cursor
            || data.is_empty()
            || offset + data.len() as u32 > p.total
        {
            return Err(Error::UnexpectedChunk);
        }
        let base = self.header_base(p.firmware);
        let erase = F::ERASE_SIZE as u32;
        let word = F::WRITE_SIZE;
        let mut part = self.target_partition(p.firmware);
        // Erase each sector when the download first reaches its start (a resume restarts at
        // one; the header's sector was erased with the header).
        let (from, to) = (base + offset, base + offset + data.len() as u32);
        let mut sector = from.div_ceil(erase) * erase;
        while sector < to {
            part.erase(sector, sector + erase)
                .map_err(|_| Error::Flash)?;
            sector += erase;
        }
        // Whole words, then the tail padded with 0xFF (only at the end of the payloads).
        let whole = data.len() / word * word;
        if whole > 0 {
            part.write(from, &data[..whole]).map_err(|_| Error::Flash)?;
        }
        if whole < data.len() {
            let mut tail = [0xFFu8; 64];
            let rest = &data[whole..];
            tail[..rest.len()].copy_from_slice(rest);
            part.write(from + whole as u32, &tail[..word])
                .map_err(|_| Error::Flash)?;
        }
        // Hash, finishing each payload's digest at its last byte.
        let parts = self.parts()?;
        let kind = if p.firmware {
            ComponentKind::Firmware
        } else {
            ComponentKind::Model
        };
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
            let mut record = Pending {
                offset: persisted,
                ..p
            };
            let version = self.info()?.version;
            if end == p.total && p.firmware {
                // Ask the bootloader to swap at the next reset.
                self.boot_state(|state| state.mark_updated())?;
                record.phase = PHASE_INSTALLED;
            }
            self.store.set(Key::Pending, &record, &mut self.buf)?;
            self.pending = Some(record);
            if end == p.total {
                self.push_report(release, kind, version, Step::Downloaded)?;
                if p.firmware {
                    self.push_report(release, kind, version, Step::Installed)?;
                }
            }
        }
        Ok(self.next_fetch())
    }

    /// After every boot, with what the bootloader said of the running firmware. A firmware on
    /// trial must prove the active model still meets its policy (`confirm_firmware`); a revert
    /// the bootloader did on its own is reported here.
    pub fn after_boot(&mut self, status: BootStatus, running: Version) -> Result<Next, Error> {
        let Some(p) = self
            .pending
            .filter(|p| p.firmware && p.phase != PHASE_DOWNLOADING)
        else {
            return Ok(Next::Idle);
        };
        let version = self.info()?.version;
        match status {
            BootStatus::Trial if running == version => {
                if p.phase == PHASE_INSTALLED {
                    self.push_report(p.release, ComponentKind::Firmware, version, Step::Booted)?;
                    let booted = Pending {
                        phase: PHASE_BOOTED,
                        ..p
                    };
                    self.store.set(Key::Pending, &booted, &mut self.buf)?;
                    self.pending = Some(booted);
                }
                Ok(Next::CheckFirmware)
            }
            BootStatus::Reverted | BootStatus::Trial => {
                // The bootloader went back: the trial hung, crashed, failed its checks, or the
                // new image was refused. Report it (once), then confirm the old firmware.
                if p.phase != PHASE_REJECTED {
                    self.counters.reverts += 1;
                    self.push_report(
                        p.release,
                        ComponentKind::Firmware,
                        version,
                        Step::Reverted(RevertReason::NotConfirmed),
                    )?;
                }
                self.mark_booted()?;
                self.clear_pending()?;
                Ok(Next::Idle)
            }
            BootStatus::Confirmed => {
                if running == version {
                    // Confirmed before the power went: finish the bookkeeping.
                    self.counters.updates += 1;
                    self.push_report(p.release, ComponentKind::Firmware, version, Step::Confirmed)?;
                }
                self.clear_pending()?;
                Ok(Next::Idle)
            }
        }
    }

    /// On a firmware trial: run the active model's validation set under the new firmware
    /// (`slot`: the active model slot's bytes). Confirm if its policy still holds; otherwise
    /// report the revert and ask for a reset, so that the bootloader goes back.
    pub fn confirm_firmware(
        &mut self,
        slot: &[u8],
        arena: &mut [u8],
        now_ns: impl FnMut() -> u64,
    ) -> Result<Next, Error> {
        let Some(p) = self
            .pending
            .filter(|p| p.firmware && p.phase == PHASE_BOOTED)
        else {
            return Err(Error::NoUpdate);
        };
        let version = self.info()?.version;
        let verdict = match self.active {
            None => None,
            Some(a) => {
                let model_bytes = slot.get(..a.model_size as usize).ok_or(Error::DoesNotFit)?;
                let set_bytes = slot
                    .get(a.model_size as usize..(a.model_size + a.set_size) as usize)
                    .ok_or(Error::DoesNotFit)?;
                let report =
                    run_validation(model_bytes, set_bytes, arena, now_ns).map_err(Error::Model)?;
                let figures = figures_of(&report);
                self.last_validation = Some(figures);
                self.push_report(
                    p.release,
                    ComponentKind::Firmware,
                    version,
                    Step::Validated(figures),
                )?;
                let policy = artifact::Policy {
                    min_accuracy_bp: a.min_accuracy_bp,
                    max_p99_latency_us: a.max_p99_latency_us,
                    max_accuracy_drop_bp: a.max_accuracy_drop_bp,
                };
                Some(model::judge(&report, &policy, Some(a.accuracy_bp)))
            }
        };
        match verdict {
            Some(v) if !v.passed() => {
                let reason = revert_reason(&v);
                self.counters.reverts += 1;
                self.push_report(
                    p.release,
                    ComponentKind::Firmware,
                    version,
                    Step::Reverted(reason),
                )?;
                let rejected = Pending {
                    phase: PHASE_REJECTED,
                    ..p
                };
                self.store.set(Key::Pending, &rejected, &mut self.buf)?;
                self.pending = Some(rejected);
                Ok(Next::Reboot)
            }
            _ => {
                self.mark_booted()?;
                self.counters.updates += 1;
                self.push_report(p.release, ComponentKind::Firmware, version, Step::Confirmed)?;
                self.clear_pending()?;
                Ok(Next::Idle)
            }
        }
    }

    /// Back to the previous model (a rollout was rolled back): only if its slot still holds it
    /// intact, and no update is writing over it.
    fn revert_model(&mut self) -> Result<Next, Error> {
        let (Some(current), Some(previous)) = (
            self.active,
            self.store
                .get::<ActiveModel>(Key::PreviousModel, &mut self.buf)?,
        ) else {
            return Ok(Next::Idle);
        };
        if self.pending.is_some_and(|p| !p.firmware) {
            self.abandon()?;
        }
        if previous.slot == current.slot || !self.slot_intact(&previous)? {
            return Ok(Next::Idle);
        }
        self.store.set(Key::ActiveModel, &previous, &mut self.buf)?;
        self.store
            .set(Key::PreviousModel, &current, &mut self.buf)?;
        self.active = Some(previous);
        self.counters.reverts += 1;
        let (a, b, c) = current.version;
        self.push_report(
            0,
            ComponentKind::Model,
            Version::new(a, b, c),
            Step::Reverted(RevertReason::Requested),
        )?;
        Ok(Next::Switched(slot_of(previous.slot)))
    }

    /// Whether a model's slot still holds the bytes its record names.
    fn slot_intact(&self, m: &ActiveModel) -> Result<bool, Error> {
        let r = self.region(slot_of(m.slot));
        let mut part = BlockingPartition::new(self.flash, r.offset, r.size);
        let mut chunk = [0u8; 256];
        for (start, size, digest) in [
            (0, m.model_size, m.model_digest),
            (m.model_size, m.set_size, m.set_digest),
        ] {
            let mut h = Sha256::new();
            let mut at = start;
            while at < start + size {
                let n = (start + size - at).min(chunk.len() as u32) as usize;
                part.read(at, &mut chunk[..n]).map_err(|_| Error::Flash)?;
                h.update(&chunk[..n]);
                at += n as u32;
            }
            if <[u8; 32]>::from(h.finalize()) != digest {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn mark_booted(&mut self) -> Result<(), Error> {
        self.boot_state(|state| state.mark_booted())
    }

    /// embassy-boot's state partition, as the application side sees it.
    fn boot_state(
        &self,
        op: impl FnOnce(
            &mut embassy_boot::BlockingFirmwareState<
                '_,
                BlockingPartition<'f, embassy_sync::blocking_mutex::raw::NoopRawMutex, F>,
            >,
        ) -> Result<(), embassy_boot::FirmwareUpdaterError>,
    ) -> Result<(), Error> {
        let r = self.layout.state;
        let mut aligned = [0u8; 64];
        let aligned = aligned.get_mut(..F::WRITE_SIZE).ok_or(Error::Flash)?;
        let mut state = embassy_boot::BlockingFirmwareState::new(
            BlockingPartition::new(self.flash, r.offset, r.size),
            aligned,
        );
        op(&mut state).map_err(|_| Error::Flash)
    }

    /// Runs the new model on its validation set (from the inactive slot's bytes, `slot`) and
    /// switches to it only if the policy holds; the old model stays in its slot.
    pub fn validate(
        &mut self,
        slot: &[u8],
        arena: &mut [u8],
        now_ns: impl FnMut() -> u64,
    ) -> Result<Next, Error> {
        if !self.needs_validation() {
            return Err(Error::NoUpdate);
        }
        let release = self.pending.map_or(0, |p| p.release);
        let (model_size, set_size) = self.sizes()?;
        let info = self.info()?;
        let (version, counter, policy, arena_size, model_digest, set_digest) = (
            info.version,
            info.counter,
            info.policy,
            info.arena,
            info.model_digest,
            info.set_digest,
        );
        let model_bytes = slot.get(..model_size as usize).ok_or(Error::DoesNotFit)?;
        let set_bytes = slot
            .get(model_size as usize..(model_size + set_size) as usize)
            .ok_or(Error::DoesNotFit)?;
        // The slot must still hold what was downloaded (flash can change under a reset).
        if artifact::sha256(model_bytes) != model_digest
            || artifact::sha256(set_bytes) != set_digest
        {
            // Reported before it is dropped: a reset in between repeats the check, not the loss.
            self.push_report(
                release,
                ComponentKind::Model,
                version,
                Step::Failed(Failure::Digest),
            )?;
            self.abandon()?;
            return Err(Error::Digest);
        }
        let outcome = run_validation(model_bytes, set_bytes, arena, now_ns);
        let report = match outcome {
            Ok(r) => r,
            Err(e) => {
                self.counters.failures += 1;
                self.push_report(
                    release,
                    ComponentKind::Model,
                    version,
                    Step::Failed(Failure::Model),
                )?;
                self.abandon()?;
                return Err(Error::Model(e));
            }
        };
        let figures = figures_of(&report);
        self.last_validation = Some(figures);
        self.push_report(
            release,
            ComponentKind::Model,
            version,
            Step::Validated(figures),
        )?;
        let verdict = model::judge(&report, &policy, self.active.map(|a| a.accuracy_bp));
        if !verdict.passed() {
            let reason = revert_reason(&verdict);
            self.counters.reverts += 1;
            self.push_report(
                release,
                ComponentKind::Model,
                version,
                Step::Reverted(reason),
            )?;
            self.abandon()?;
            return Ok(Next::Idle);
        }
        let new_slot = self.inactive_slot();
        let (name, name_len) = self.info()?.name;
        let active = ActiveModel {
            slot: slot_index(new_slot),
            name,
            name_len,
            version: (version.major, version.minor, version.patch),
            security_counter: counter,
            model_size,
            model_digest,
            set_size,
            set_digest,
            arena_size,
            accuracy_bp: report.accuracy_bp,
            min_accuracy_bp: policy.min_accuracy_bp,
            max_p99_latency_us: policy.max_p99_latency_us,
            max_accuracy_drop_bp: policy.max_accuracy_drop_bp,
        };
        // The report first: a reset after it finds the update still pending, validates it again
        // and switches, so the report comes true; a reset after the switch cannot lose it.
        self.counters.updates += 1;
        self.push_report(release, ComponentKind::Model, version, Step::Confirmed)?;
        // The previous model stays in its slot, recorded for an instant revert.
        if let Some(old) = self.active {
            self.store.set(Key::PreviousModel, &old, &mut self.buf)?;
        }
        // The switch is this one record: before it the old model is active, after it the new.
        self.store.set(Key::ActiveModel, &active, &mut self.buf)?;
        self.active = Some(active);
        self.clear_pending()?;
        Ok(Next::Switched(new_slot))
    }

    fn clear_pending(&mut self) -> Result<(), Error> {
        self.store.remove(Key::Pending, &mut self.buf)?;
        self.pending = None;
        self.info = None;
        self.envelope_len = 0;
        self.cursor = 0;
        Ok(())
    }

    /// Drops the update in progress; the active model is untouched.
    fn abandon(&mut self) -> Result<(), Error> {
        self.clear_pending()
    }
}
