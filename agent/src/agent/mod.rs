//! The agent core: model and firmware updates from the server's command to their commit, with
//! the validation gate. Here: the agent's state, loading it after a reset, and the commands;
//! each part of an update has its own file.

mod download;
mod firmware_update;
mod model_update;
mod pending;
mod release;
mod report;
mod stream;
mod validation;

pub use download::CHUNK;
pub use report::PendingReport;
pub use stream::Transfer;

use self::pending::{Target, Update};
use self::release::{ReleaseInfo, release_info_of};
use self::report::REPORTS;
use self::stream::StreamDownload;
use crate::Error;
use crate::store::{ActiveModel, BUF, Counters, Key, Pending, Store, StreamRecord};
use artifact::{ComponentKind, TrustRoot};
use bootloader::SharedFlash;
use embedded_storage::nor_flash::NorFlash;
use heapless::Deque;
use layout::{Layout, Region};
use protocol::{ChunkRequest, Command, Figures, ModelSlot};
use sha2::{Digest as _, Sha256};

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
pub struct Agent<'f, F: NorFlash> {
    flash: &'f SharedFlash<F>,
    layout: &'f Layout,
    root: TrustRoot,
    identity: Identity<'f>,
    store: Store<'f, F>,
    buf: [u8; BUF],
    active: Option<ActiveModel>,
    pending: Option<Update>,
    /// Bytes of the pending update written (ahead of the persisted offset).
    cursor: u32,
    hasher: Sha256,
    counters: Counters,
    reports: Deque<PendingReport, REPORTS>,
    last_validation: Option<Figures>,
    /// What the pending release's verified manifest says (checked once, not per chunk).
    info: Option<ReleaseInfo>,
    /// The platform's stream decoder, if it gave one (`set_stream_decoder`).
    decoder: Option<&'f mut delta::Decoder>,
    /// The pending update's payloads come as this stream.
    stream: Option<StreamDownload>,
}

impl<'f, F: NorFlash> Agent<'f, F> {
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
        let mut record = store.get::<Pending>(Key::Pending, &mut buf)?;
        let counters = store
            .get::<Counters>(Key::Counters, &mut buf)?
            .unwrap_or_default();
        // The pending update's envelope is verified again and read into its info; the bytes
        // are not kept (the store holds them, and nothing needs them again).
        let info = match record {
            Some(_) => match store.fetch(Key::Envelope, &mut buf)? {
                Some(envelope) => root
                    .verify_manifest(envelope)
                    .ok()
                    .and_then(|v| release_info_of(&v.manifest).ok()),
                None => {
                    record = None;
                    None
                }
            },
            None => None,
        };
        let mut agent = Agent {
            flash,
            layout,
            root,
            identity,
            store,
            buf,
            active,
            pending: record.and_then(Update::from_record),
            cursor: 0,
            hasher: Sha256::new(),
            counters,
            reports: Deque::new(),
            last_validation: None,
            info,
            decoder: None,
            stream: None,
        };
        agent.load_reports()?;
        if record.is_some() {
            let committed = agent.info.as_ref().map(|i| i.model_digest);
            match agent.pending {
                // The envelope no longer verifies, or the record holds a stage this agent never
                // writes: nothing to resume.
                _ if agent.info.is_none() => agent.abandon()?,
                None => agent.abandon()?,
                Some(p)
                    if p.stage.target() == Target::Model
                        && committed.is_some()
                        && committed == agent.active.map(|a| a.model_digest) =>
                {
                    // Power went between the switch and the clean-up: the update is done.
                    agent.clear_pending()?;
                }
                Some(p) if p.stage.downloading() => {
                    agent.cursor = p.offset;
                    agent.rehash(p.offset)?;
                    let stream = agent
                        .store
                        .get::<StreamRecord>(Key::Stream, &mut agent.buf)?;
                    agent.stream = stream
                        .filter(|s| s.release == p.release)
                        .map(|s| StreamDownload::from_record(&s));
                }
                Some(p) => agent.cursor = p.total,
            }
        }
        Ok(agent)
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

    /// Handles a command from the server.
    pub fn on_command(&mut self, cmd: &Command<'_>) -> Result<Next, Error> {
        match *cmd {
            Command::Idle { .. } => Ok(Next::Idle),
            Command::Reboot => Ok(Next::Reboot),
            Command::Revert {
                component: ComponentKind::Model,
            } => self.revert_model(),
            // A confirmed firmware goes back by an update to the last good release (the server
            // sends it): the bootloader reverts only an unconfirmed trial, never a confirmed image.
            Command::Revert { .. } => Ok(Next::Idle),
            Command::Update {
                release,
                envelope,
                stream,
                ..
            } => {
                let next = self.start_update(release, envelope)?;
                if let (Next::Fetch(_), Some(offer)) = (next, stream) {
                    self.offer_stream(release, offer)?;
                    return Ok(self.next_fetch());
                }
                Ok(next)
            }
        }
    }

    /// Persists the update's new stage or progress, then holds it.
    fn set_pending(&mut self, update: Update) -> Result<(), Error> {
        self.store
            .set(Key::Pending, &update.record(), &mut self.buf)?;
        self.pending = Some(update);
        Ok(())
    }

    fn clear_pending(&mut self) -> Result<(), Error> {
        self.clear_stream()?;
        self.store.remove(Key::Pending, &mut self.buf)?;
        self.pending = None;
        self.info = None;
        self.cursor = 0;
        Ok(())
    }

    /// Drops the update in progress; the active model is untouched.
    fn abandon(&mut self) -> Result<(), Error> {
        self.clear_pending()
    }
}
