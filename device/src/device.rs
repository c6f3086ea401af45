//! The device: the agent's session over the board, the uplink, and the application's
//! inference, driven by `poll`; what only the platform can do (validate with the line going
//! on, check a firmware on trial, reset) is done here, once for every board.

use crate::board::{Board, Inference};
use crate::boot::BootInfo;
use crate::console::{Line, count};
use crate::models::ActiveModel;
use crate::uplink::Uplink;
use agent::provisioning::{self, MAX_RECORD};
use agent::{Agent, Identity, Next, Session, Transfer};
use artifact::{Envelope, TrustRoot};
use bootloader::SharedFlash;
use embedded_storage::nor_flash::NorFlash;
use layout::Layout;
use protocol::{BootStatus, Firmware, ModelSlot};

/// The longest the device sleeps between two polls: the watchdog is fed at each.
const MAX_SLEEP_MS: u64 = 1_000;
/// The device id an unprovisioned device runs under (it never reaches the server).
const UNPROVISIONED: &str = "unprovisioned";

/// What the board hands the device at start.
#[allow(missing_debug_implementations)] // holds the flash and the decoder
pub struct Parts<'f, F: NorFlash> {
    pub flash: &'f SharedFlash<F>,
    pub layout: &'f Layout,
    /// The trust root envelope baked into the firmware (as the bootloader's).
    pub trust_root: &'f [u8],
    pub boot: BootInfo,
    /// What the firmware says it is at boot, after its version (a build number, a git hash).
    pub build: &'f str,
    /// Where the provisioned identity is read to; it lives as long as the device.
    pub identity: &'f mut [u8; MAX_RECORD],
    /// For delta and compressed downloads; without one every download is plain.
    pub decoder: Option<&'f mut delta::Decoder>,
    /// The arena validations run in; a model that needs more is refused before download.
    pub check_arena: &'f mut [u8],
}

impl<'f, F: NorFlash> Parts<'f, F> {
    /// The parts of a board whose bootloader leaves nothing in RAM (the real boards, which
    /// execute in place): the boot read back from the flash (`boot_info_from_flash`), the
    /// firmware's version from its signed header.
    pub fn from_flash(
        flash: &'f SharedFlash<F>,
        layout: &'f Layout,
        trust_root: &'f [u8],
        build: &'f str,
        identity: &'f mut [u8; MAX_RECORD],
        decoder: Option<&'f mut delta::Decoder>,
        check_arena: &'f mut [u8],
    ) -> Result<Self, StartError> {
        let root = decode_root(trust_root).ok_or(StartError::TrustRoot)?;
        let mut header = [0u8; crate::boot::MAX_HEADER];
        let boot = crate::boot::boot_info_from_flash(flash, layout, &root, &mut header)
            .ok_or(StartError::Boot)?;
        Ok(Parts {
            flash,
            layout,
            trust_root,
            boot,
            build,
            identity,
            decoder,
            check_arena,
        })
    }
}

/// Why the agent cannot start: nothing runs (the board says so on its console and stops; on
/// a trial boot the watchdog then gives the bootloader its revert).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartError {
    /// The baked-in trust root does not decode.
    TrustRoot,
    /// The agent's records could not be read.
    Records(agent::Error),
    /// The active slot's signed header does not verify (read back by `Parts::from_flash`):
    /// the bootloader would not have started this image, so the flash has changed under it.
    Boot,
}

impl StartError {
    pub fn as_str(self) -> &'static str {
        match self {
            StartError::TrustRoot => "bad baked-in trust root",
            StartError::Records(_) => "agent records unreadable",
            StartError::Boot => "the running image's header does not verify",
        }
    }
}

/// The trust root from its signed envelope (as baked into a firmware).
pub fn decode_root(envelope: &[u8]) -> Option<TrustRoot> {
    Envelope::decode(envelope)
        .ok()
        .and_then(|e| TrustRoot::decode_body(e.body).ok())
}

/// Where the active model is, for mapping it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Running {
    slot: ModelSlot,
    offset: u32,
    model: u32,
    set: u32,
}

/// The agent on a board.
#[allow(missing_debug_implementations)] // holds the session
pub struct Device<'f, F: NorFlash, B: Board> {
    session: Session<'f, F>,
    /// `None` without a provisioned identity: the model runs, nothing is sent.
    uplink: Option<Uplink<'f>>,
    board: B,
    boot: BootInfo,
    check_arena: &'f mut [u8],
    running: Option<Running>,
    generation: u32,
    /// The application has been told of the model it runs.
    told: bool,
    /// The release whose transfer was last said on the console.
    fetching: Option<u64>,
}

impl<'f, F: NorFlash, B: Board> Device<'f, F, B> {
    /// Opens the agent's records, reads the identity, and acts on what the bootloader said.
    pub fn new(parts: Parts<'f, F>, board: B) -> Result<Self, StartError> {
        let Parts {
            flash,
            layout,
            trust_root,
            boot,
            build,
            identity,
            decoder,
            check_arena,
        } = parts;
        let root = decode_root(trust_root).ok_or(StartError::TrustRoot)?;
        let provisioned =
            flash.lock(|f| provisioning::read(&mut *f.borrow_mut(), layout.identity, identity));
        let (device_id, uplink) = match provisioned {
            Ok(p) => (p.device_id, Some(Uplink::new(p.device_id, p.credential))),
            Err(e) => {
                board.console(
                    Line::new()
                        .text(b"agent: no identity: ")
                        .text(e.as_str().as_bytes())
                        .text(b"; running the active model offline")
                        .end(),
                );
                (UNPROVISIONED, None)
            }
        };
        let identity = Identity {
            device_id,
            board: layout.board,
            // The ABI of the model runtime this firmware links.
            runtime_abi: model::RUNTIME_ABI,
            arena_capacity: u32::try_from(check_arena.len()).unwrap_or(u32::MAX),
        };
        let mut agent = Agent::open(flash, layout, root, identity).map_err(StartError::Records)?;
        if let Some(d) = decoder {
            agent.set_stream_decoder(d);
        }
        let first = agent.after_boot(boot.status, boot.version);
        let v = boot.version;
        board.console(
            Line::new()
                .text(b"agent: up, firmware ")
                .num(v.major)
                .text(b".")
                .num(v.minor)
                .text(b".")
                .num(v.patch)
                .text(match boot.status {
                    BootStatus::Confirmed => b" confirmed",
                    BootStatus::Trial => b" trial",
                    BootStatus::Reverted => b" reverted",
                })
                .text(b", boot ")
                .num(boot.boots)
                .text(b", build ")
                .text(build.as_bytes())
                .end(),
        );
        let now = board.now_ms();
        let mut session = Session::new(
            agent,
            Firmware {
                version: boot.version,
                status: boot.status,
            },
            boot.boots,
            now,
        );
        let _ = session.after_action(first);
        let mut device = Device {
            session,
            uplink,
            board,
            boot,
            check_arena,
            running: None,
            generation: 0,
            told: false,
            fetching: None,
        };
        device.running = device.find_running();
        Ok(device)
    }

    /// The board, for what the application does with it between polls.
    pub fn board(&self) -> &B {
        &self.board
    }

    /// The agent, for what the application reads of it (the active model, its counters).
    pub fn agent(&mut self) -> &mut Agent<'f, F> {
        self.session.agent()
    }

    /// A request is out and its answer has not come: the board may poll its transport faster.
    pub fn expecting(&self) -> bool {
        self.uplink.as_ref().is_some_and(Uplink::expecting)
    }

    /// Does what is due (an inference, the agent's next step, the next message to send);
    /// returns when to poll again at the latest (milliseconds since boot). Call `transmit`
    /// after it, and `receive` with whatever the transport brought.
    pub fn poll(&mut self, app: &mut impl Inference) -> u64 {
        self.board.feed_watchdog();
        self.say_transfer();
        if !self.told {
            self.told = true;
            let running = self.running;
            app.model_changed(map(&self.board, running, self.generation).as_ref());
        }
        let now = self.board.now_ms();
        infer_if_due(&self.board, app, self.running, self.generation, now);
        self.session.set_inferences(app.inferences());
        if let Some(action) = self.session.take_action() {
            self.act(action, app);
            return now;
        }
        let session_wake = match self.uplink.as_mut() {
            Some(uplink) => {
                uplink.poll(&mut self.session, now);
                self.session.next_wake_ms()
            }
            None => u64::MAX,
        };
        // Without a model nothing is inferred, however due the application says it is.
        let infer_wake = if self.running.is_some() {
            app.next_ms()
        } else {
            u64::MAX
        };
        session_wake.min(infer_wake).min(now + MAX_SLEEP_MS)
    }

    /// The next framed bytes for the transport (call until `None`).
    pub fn transmit(&mut self) -> Option<&[u8]> {
        self.uplink.as_mut()?.transmit()
    }

    /// Bytes that came over the transport.
    pub fn receive(&mut self, bytes: &[u8]) {
        let now = self.board.now_ms();
        if let Some(uplink) = self.uplink.as_mut() {
            uplink.receive(bytes, &mut self.session, now);
        }
    }

    fn find_running(&mut self) -> Option<Running> {
        let agent = self.session.agent();
        let (active, slot) = (agent.active()?, agent.active_slot()?);
        Some(Running {
            slot,
            offset: agent.region(slot).offset,
            model: active.model_size,
            set: active.set_size,
        })
    }

    /// For the test harness: how each update's payloads come.
    fn say_transfer(&mut self) {
        let transfer = self.session.agent().transfer();
        if transfer.map(|t| t.0) == self.fetching {
            return;
        }
        self.fetching = transfer.map(|t| t.0);
        if let Some((release, how)) = transfer {
            self.board.console(
                Line::new()
                    .text(b"agent: fetching release ")
                    .num(count(release))
                    .text(match how {
                        Transfer::Plain => b" in full",
                        Transfer::Delta => b" as a delta",
                        Transfer::Compressed => b" compressed",
                    })
                    .end(),
            );
        }
    }

    fn say_count(&self, what: &[u8], app: &impl Inference) {
        self.board
            .console(Line::new().text(what).num(count(app.inferences())).end());
    }

    /// Follows a switch (once: the agent says it after a validation and as its next step).
    fn switched(&mut self, app: &mut impl Inference) {
        let running = self.find_running();
        if running == self.running {
            return;
        }
        self.running = running;
        self.generation = self.generation.wrapping_add(1);
        app.model_changed(map(&self.board, self.running, self.generation).as_ref());
    }

    /// What only the platform can do: validate a downloaded model, check a firmware on trial,
    /// follow a switch, reset.
    fn act(&mut self, action: Next, app: &mut impl Inference) {
        let (running, generation) = (self.running, self.generation);
        match action {
            Next::Validate => {
                let agent = self.session.agent();
                let region = agent.region(agent.inactive_slot());
                let (m, s) = agent.pending_sizes().unwrap_or((0, 0));
                self.say_count(b"agent: validating, inferences ", app);
                // A slot the board cannot map fails to parse: the agent reports it and keeps
                // the model it has.
                let result = {
                    let board = &self.board;
                    let candidate = board.map(region.offset, m + s).unwrap_or(&[]);
                    let clock = validation_clock(board, app, running, generation);
                    self.session
                        .agent()
                        .validate(candidate, self.check_arena, clock)
                };
                let switched = matches!(result, Ok(Next::Switched(_)));
                let _ = self.session.after_action(result);
                if switched {
                    self.switched(app);
                    self.say_count(b"agent: switched model, inferences ", app);
                } else {
                    self.say_count(b"agent: kept model, inferences ", app);
                }
            }
            Next::CheckFirmware => {
                self.board.console(b"agent: checking firmware on trial\n");
                let result = {
                    let board = &self.board;
                    let active = running
                        .and_then(|r| board.map(r.offset, r.model + r.set))
                        .unwrap_or(&[]);
                    let clock = validation_clock(board, app, running, generation);
                    self.session
                        .agent()
                        .confirm_firmware(active, self.check_arena, clock)
                };
                if matches!(result, Ok(Next::Idle)) {
                    self.board.console(b"agent: firmware confirmed\n");
                    self.session.set_firmware(Firmware {
                        version: self.boot.version,
                        status: BootStatus::Confirmed,
                    });
                }
                let _ = self.session.after_action(result);
            }
            Next::Switched(_) => {
                self.board.console(b"agent: switched model\n");
                self.switched(app);
            }
            Next::Reboot => {
                self.board.console(b"agent: resetting\n");
                self.board.reset();
            }
            Next::Idle | Next::Fetch(_) => {}
        }
    }
}

/// The running model's bytes, mapped from flash.
fn map<'b>(
    board: &'b impl Board,
    running: Option<Running>,
    generation: u32,
) -> Option<ActiveModel<'b>> {
    let r = running?;
    let bytes = board.map(r.offset, r.model + r.set)?;
    let (model, set) = bytes.split_at_checked(r.model as usize)?;
    Some(ActiveModel {
        slot: r.slot,
        model,
        set,
        generation,
    })
}

/// Runs the application's inference if it is due, and says every tenth on the console.
fn infer_if_due(
    board: &impl Board,
    app: &mut impl Inference,
    running: Option<Running>,
    generation: u32,
    now_ms: u64,
) {
    if now_ms < app.next_ms() {
        return;
    }
    let Some(model) = map(board, running, generation) else {
        return;
    };
    let before = app.inferences();
    app.infer(now_ms, &model);
    let after = app.inferences();
    if after != before && after % 10 == 0 {
        // For the test harness: the line's work goes on.
        board.console(
            Line::new()
                .text(b"agent: inferences ")
                .num(count(after))
                .end(),
        );
    }
}

/// The clock a validation measures with. `model::validation::run` reads it at the start and at
/// the end of each sample; before each start the line's inference runs when it is due, so the
/// line's work goes on through a validation and is never inside a measured sample. It feeds
/// the watchdog too: a trial's validation may outlast its timeout.
fn validation_clock<'a>(
    board: &'a impl Board,
    app: &'a mut impl Inference,
    running: Option<Running>,
    generation: u32,
) -> impl FnMut() -> u64 + 'a {
    let mut calls = 0u32;
    move || {
        board.feed_watchdog();
        if calls % 2 == 0 {
            infer_if_due(board, app, running, generation, board.now_ms());
        }
        calls = calls.wrapping_add(1);
        board.now_ns()
    }
}
