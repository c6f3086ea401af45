//! The device library (`device`) on a host board: simulated flash, a clock that jumps, a
//! console that records lines, and the scripted server at the other end of the link, every
//! byte through the link framing. Shared by the device tests and the `device-model-update`
//! power-loss matrix.

use agent::provisioning::{self, MAX_RECORD, Provisioned};
use artifact::Version;
use bootloader::SharedFlash;
use device::{ActiveModel, Board, BootInfo, Device, Inference, Parts, SampleLine};
use embedded_storage::nor_flash::NorFlash;
use protocol::BootStatus;
use protocol::link::{Deframer, MAX_ENCODED};
use std::cell::{Cell, RefCell};
use testkit::device::{Flash, LAYOUT};
use testkit::server::Scripted;

/// The host board: the flash is simulated; mapping hands out a copy of a range.
#[allow(missing_debug_implementations)] // holds the flash mutex
pub struct HostBoard<'f> {
    pub flash: &'f SharedFlash<Flash>,
    pub now: Cell<u64>,
    pub lines: RefCell<Vec<String>>,
    /// Every distinct content this board mapped, leaked (a few per update): a slice handed
    /// out stays valid, as mapped flash does while nobody writes it.
    views: RefCell<Vec<&'static [u8]>>,
}

impl<'f> HostBoard<'f> {
    pub fn new(flash: &'f SharedFlash<Flash>) -> Self {
        HostBoard {
            flash,
            now: Cell::new(0),
            lines: RefCell::new(vec![]),
            views: RefCell::new(vec![]),
        }
    }

    /// The flash lost its power (a planned fault happened).
    pub fn cut(&self) -> bool {
        self.flash.lock(|f| !f.borrow().powered())
    }
}

impl Board for HostBoard<'_> {
    fn now_ms(&self) -> u64 {
        self.now.get()
    }
    fn now_ns(&self) -> u64 {
        // 1 ms per reading: every sample measures 1 ms, within the fixtures' 10 ms policy.
        self.now.set(self.now.get() + 1);
        self.now.get() * 1_000_000
    }
    fn feed_watchdog(&self) {}
    fn reset(&self) -> ! {
        panic!("reset")
    }
    fn map(&self, offset: u32, len: u32) -> Option<&[u8]> {
        let now = self.flash.lock(|f| {
            f.borrow()
                .bytes()
                .get(offset as usize..(offset + len) as usize)
                .map(<[u8]>::to_vec)
        })?;
        let mut views = self.views.borrow_mut();
        if let Some(v) = views.iter().find(|v| ***v == now[..]) {
            return Some(v);
        }
        let v: &'static [u8] = Box::leak(now.into_boxed_slice());
        views.push(v);
        Some(v)
    }
    fn console(&self, line: &[u8]) {
        let line = String::from_utf8(line.to_vec()).expect("text");
        assert!(line.ends_with('\n'), "a whole line: {line:?}");
        self.lines.borrow_mut().push(line.trim_end().to_owned());
    }
}

/// The application: the sample line every 100 ms, and what it was told and ran with.
#[derive(Debug)]
pub struct TestLine {
    line: SampleLine<'static>,
    /// (generation, model bytes) of each model told.
    pub told: Vec<Option<(u32, usize)>>,
    /// Generations inferred with.
    pub ran: Vec<u32>,
}

impl Default for TestLine {
    fn default() -> Self {
        TestLine {
            line: SampleLine::new(100, vec![0; 64 * 1024].leak()),
            told: vec![],
            ran: vec![],
        }
    }
}

impl Inference for TestLine {
    fn next_ms(&self) -> u64 {
        self.line.next_ms()
    }
    fn infer(&mut self, now_ms: u64, model: &ActiveModel<'_>) {
        let before = self.line.inferences();
        self.line.infer(now_ms, model);
        assert_eq!(self.line.inferences(), before + 1, "the model runs");
        if self.ran.last() != Some(&model.generation) {
            self.ran.push(model.generation);
        }
    }
    fn model_changed(&mut self, model: Option<&ActiveModel<'_>>) {
        self.line.model_changed(model);
        self.told.push(model.map(|m| (m.generation, m.model.len())));
    }
    fn inferences(&self) -> u64 {
        self.line.inferences()
    }
}

/// Writes the identity record of `device_id` as a factory would.
pub fn provision(flash: &SharedFlash<Flash>, device_id: &str) {
    let mut record = [0xFF; MAX_RECORD];
    let n = provisioning::encode(
        Provisioned {
            device_id,
            credential: "secret-1",
        },
        &mut record,
    )
    .expect("record");
    let padded = n.div_ceil(4) * 4;
    flash.lock(|f| {
        f.borrow_mut()
            .write(LAYOUT.identity.offset, &record[..padded])
            .expect("write")
    });
}

/// What a device borrows for its life: the trust root, the identity buffer, the check arena.
#[derive(Debug)]
pub struct Bench {
    root: Vec<u8>,
    identity: [u8; MAX_RECORD],
    arena: Vec<u8>,
}

impl Default for Bench {
    fn default() -> Self {
        Bench {
            root: testkit::keys::signed_trust_root(),
            identity: [0; MAX_RECORD],
            arena: vec![0; 64 * 1024],
        }
    }
}

pub type HostDevice<'f> = Device<'f, Flash, HostBoard<'f>>;

impl Bench {
    /// The device after a boot of firmware 1.0.0, confirmed.
    pub fn device<'f>(&'f mut self, flash: &'f SharedFlash<Flash>) -> HostDevice<'f> {
        let parts = Parts {
            flash,
            layout: LAYOUT,
            trust_root: &self.root,
            boot: BootInfo {
                status: BootStatus::Confirmed,
                version: Version::new(1, 0, 0),
                boots: 1,
            },
            build: "test",
            identity: &mut self.identity,
            decoder: None,
            check_arena: &mut self.arena,
        };
        Device::new(parts, HostBoard::new(flash)).expect("starts")
    }
}

/// How an exchange ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Done,
    /// The flash lost its power.
    Cut,
    /// Not done after the polls allowed.
    Exhausted,
}

/// Polls the device, carries its frames to the server and the answers back, until `done`, a
/// power cut, or `limit` polls; the clock jumps to each wake. `garbage` goes over the link
/// before each answer.
pub fn exchange(
    dev: &mut HostDevice<'_>,
    app: &mut TestLine,
    server: &mut Scripted,
    garbage: &[u8],
    limit: usize,
    done: impl Fn(&TestLine, &Scripted) -> bool,
) -> Ended {
    let mut deframer = Deframer::<MAX_ENCODED>::new();
    for _ in 0..limit {
        if done(app, server) {
            return Ended::Done;
        }
        if dev.board().cut() {
            return Ended::Cut;
        }
        let wake = dev.poll(app);
        let mut answers = vec![];
        while let Some(bytes) = dev.transmit() {
            for &b in bytes {
                if let Some(Ok(frame)) = deframer.push(b)
                    && let Some(answer) = server.answer(frame)
                {
                    answers.push(answer);
                }
            }
        }
        for answer in answers {
            let mut wire = vec![0u8; MAX_ENCODED];
            let n = protocol::link::encode(&answer, &mut wire).expect("frames");
            dev.receive(garbage);
            dev.receive(&wire[..n]);
        }
        let board = dev.board();
        board.now.set(board.now.get().max(wake));
    }
    Ended::Exhausted
}
