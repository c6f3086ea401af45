//! The device library on a host board (simulated flash, a clock that jumps, a console that
//! records lines) against the scripted server, every byte through the link framing: a model
//! update from check-in to the application running the new model, an identity that is missing
//! or damaged, garbage on the transport.

use agent::provisioning::{self, MAX_RECORD, Provisioned};
use artifact::Version;
use bootloader::SharedFlash;
use device::{ActiveModel, Board, BootInfo, Device, Inference, Parts, SampleLine};
use embedded_storage::nor_flash::NorFlash;
use protocol::link::{Deframer, MAX_ENCODED};
use protocol::{BootStatus, Step};
use std::cell::{Cell, RefCell};
use testkit::device::{Flash, LAYOUT, new_flash};
use testkit::release::{model_size, release};
use testkit::server::Scripted;

/// The host board: the flash is simulated, mapping copies a range out of it.
struct HostBoard<'f> {
    flash: &'f SharedFlash<Flash>,
    now: Cell<u64>,
    lines: RefCell<Vec<String>>,
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
        let bytes = self.flash.lock(|f| {
            f.borrow()
                .bytes()
                .get(offset as usize..(offset + len) as usize)
                .map(<[u8]>::to_vec)
        })?;
        // A copy that lives as long as the test: this flash is not memory-mapped.
        Some(Box::leak(bytes.into_boxed_slice()))
    }
    fn console(&self, line: &[u8]) {
        let line = String::from_utf8(line.to_vec()).expect("text");
        assert!(line.ends_with('\n'), "a whole line: {line:?}");
        self.lines.borrow_mut().push(line.trim_end().to_owned());
    }
}

/// The application: the sample line every 100 ms, and what it was told and ran with.
struct Line {
    line: SampleLine<'static>,
    /// (generation, model bytes) of each model told.
    told: Vec<Option<(u32, usize)>>,
    /// Generations inferred with.
    ran: Vec<u32>,
    inferences: u64,
}

impl Line {
    fn new() -> Self {
        Line {
            line: SampleLine::new(100, vec![0; 64 * 1024].leak()),
            told: vec![],
            ran: vec![],
            inferences: 0,
        }
    }
}

impl Inference for Line {
    fn next_ms(&self) -> u64 {
        self.line.next_ms()
    }
    fn infer(&mut self, now_ms: u64, model: &ActiveModel<'_>) {
        let before = self.line.inferences();
        self.line.infer(now_ms, model);
        assert_eq!(self.line.inferences(), before + 1, "the model runs");
        self.inferences = self.line.inferences();
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

fn provision(flash: &SharedFlash<Flash>, device_id: &str) {
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

const BOOT: BootInfo = BootInfo {
    status: BootStatus::Confirmed,
    version: Version::new(1, 0, 0),
    boots: 1,
};

struct Bench {
    root: Vec<u8>,
    identity: [u8; MAX_RECORD],
    arena: Vec<u8>,
}

impl Bench {
    fn new() -> Self {
        Bench {
            root: testkit::keys::signed_trust_root(),
            identity: [0; MAX_RECORD],
            arena: vec![0; 64 * 1024],
        }
    }

    fn device<'f>(&'f mut self, flash: &'f SharedFlash<Flash>) -> Device<'f, Flash, HostBoard<'f>> {
        let board = HostBoard {
            flash,
            now: Cell::new(0),
            lines: RefCell::new(vec![]),
        };
        let parts = Parts {
            flash,
            layout: LAYOUT,
            trust_root: &self.root,
            boot: BOOT,
            build: "test",
            identity: &mut self.identity,
            decoder: None,
            check_arena: &mut self.arena,
        };
        Device::new(parts, board).expect("starts")
    }
}

/// Polls the device, carries its frames to the server and the answers back, until `done` or
/// `limit` polls; the clock jumps to each wake. `garbage` goes over the link before each answer.
fn exchange(
    dev: &mut Device<'_, Flash, HostBoard<'_>>,
    app: &mut Line,
    server: &mut Scripted,
    garbage: &[u8],
    limit: usize,
    done: impl Fn(&Line, &Scripted) -> bool,
) {
    let mut deframer = Deframer::<MAX_ENCODED>::new();
    for _ in 0..limit {
        if done(app, server) {
            return;
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
    panic!(
        "not done after {limit} polls: {:?}, {:?}",
        dev.board().lines.borrow(),
        server.steps()
    );
}

#[test]
fn a_model_update_reaches_the_application_in_place() {
    let flash = new_flash();
    provision(&flash, "node-7");
    let mut bench = Bench::new();
    let mut dev = bench.device(&flash);
    let mut app = Line::new();
    let good = release(1, "good", Version::new(1, 0, 0), 1, "mps2-an386");
    let model_bytes = model_size(&good);
    let mut server = Scripted::new(Some(good));
    exchange(
        &mut dev,
        &mut app,
        &mut server,
        &[],
        5_000,
        |app, server| {
            app.ran.contains(&1) && app.inferences >= 3 && server.steps().contains(&Step::Confirmed)
        },
    );
    // No model at first, then the new one, switched to once and run in place.
    assert_eq!(app.told, vec![None, Some((1, model_bytes))]);
    assert_eq!(app.ran, vec![1]);
    assert!(matches!(
        server.steps().as_slice(),
        [Step::Downloaded, Step::Validated(f), Step::Confirmed] if f.samples > 0
    ));
    assert!(server.hellos.iter().all(|h| h == "node-7") && !server.hellos.is_empty());
    let lines = dev.board().lines.borrow().clone();
    let expected = [
        "agent: up, firmware 1.0.0 confirmed, boot 1, build test",
        "agent: fetching release 1 in full",
        "agent: validating, inferences 0",
        "agent: switched model, inferences 0",
    ];
    assert_eq!(lines[..4], expected);
}

#[test]
fn without_a_good_identity_the_active_model_runs_offline() {
    let flash = new_flash();
    provision(&flash, "node-8");
    let good = release(1, "good", Version::new(1, 0, 0), 1, "mps2-an386");
    {
        let mut bench = Bench::new();
        let mut dev = bench.device(&flash);
        let mut app = Line::new();
        let mut server = Scripted::new(Some(good.clone()));
        exchange(&mut dev, &mut app, &mut server, &[], 5_000, |app, _| {
            app.ran.contains(&1)
        });
    }
    // The record damaged (one bit of the credential): after a reset the device says why,
    // sends nothing, and its line runs the model it had.
    flash.lock(|f| {
        let at = LAYOUT.identity.offset as usize + 8 + 6;
        let mut f = f.borrow_mut();
        let word = at / 4 * 4;
        let mut w = f.bytes()[word..word + 4].to_vec();
        w[at - word] &= 0xFE;
        f.write(word as u32, &w).expect("write");
    });
    let mut bench = Bench::new();
    let mut dev = bench.device(&flash);
    let mut app = Line::new();
    for _ in 0..20 {
        let wake = dev.poll(&mut app);
        assert_eq!(
            dev.transmit(),
            None,
            "an unprovisioned device sends nothing"
        );
        dev.board().now.set(wake.max(dev.board().now_ms() + 1));
    }
    assert_eq!(app.told, vec![Some((0, model_size(&good)))]);
    assert_eq!(app.ran, vec![0]);
    assert!(app.inferences >= 3);
    assert_eq!(
        dev.board().lines.borrow()[0],
        "agent: no identity: identity record is damaged (check digest); running the active model offline"
    );
}

#[test]
fn garbage_on_the_link_is_dropped_and_the_update_completes() {
    let flash = new_flash();
    provision(&flash, "node-9");
    let mut bench = Bench::new();
    let mut dev = bench.device(&flash);
    let mut app = Line::new();
    let good = release(1, "good", Version::new(1, 0, 0), 1, "mps2-an386");
    let mut server = Scripted::new(Some(good));
    server.drop_every = 7;
    // Bytes of every value, a frame delimiter among them, before every answer.
    let garbage: Vec<u8> = (0..=255u8).rev().chain([0, 1, 2, 0]).collect();
    exchange(
        &mut dev,
        &mut app,
        &mut server,
        &garbage,
        20_000,
        |app, server| app.ran.contains(&1) && server.steps().contains(&Step::Confirmed),
    );
    assert_eq!(
        app.told.last(),
        Some(&Some((1, model_size(&server.offer.clone().unwrap()))))
    );
    assert!(server.steps().contains(&Step::Confirmed));
}
