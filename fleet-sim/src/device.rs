//! One virtual device: the real agent and session over a strict NOR flash on a thread of its
//! own, speaking HTTP, with an inference counter, a speed class and injected faults.

use agent::{Agent, Identity, Next, Outgoing, Session};
use artifact::{TrustRoot, Version};
use bootloader::SharedFlash;
use core::cell::RefCell;
use embassy_sync::blocking_mutex::Mutex;
use layout::{Layout, MPS2_AN386};
use model::validation::{EMULATED_M4_NS_PER_MAC, mac_clock};
use norsim::{Fault, FaultKind, NorSim, Rng};
use protocol::{BootStatus, Firmware, ServerFrame};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

/// The flash of a virtual device: the emulated board's, with its write and erase sizes.
pub type Flash = NorSim<4, 4096>;
pub const LAYOUT: &Layout = &MPS2_AN386;
/// The board of the emulated devices.
pub const BOARD: &str = "mps2-an386";
/// The runtime ABI the virtual devices provide: they run today's `model` runtime.
pub const RUNTIME_ABI: u32 = model::RUNTIME_ABI;
/// Inferences a device runs per second while it has a model (the line's work).
const INFERENCES_PER_S: u64 = 100;
/// How long an idle check-in may wait at the server for a command (the server bounds it by its
/// poll interval); under the HTTP client's 5 s timeout.
const LONG_POLL_MS: u32 = 4_000;

/// Faults to inject, per device, drawn from a seeded generator (runs repeat).
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// Chance per chunk answer that the link drops it, per mille.
    pub link_cut_per_mille: u16,
    /// Chance per exchange that power is cut within the next flash operations, per mille.
    pub reset_per_mille: u16,
    pub seed: u64,
}

/// One virtual device.
#[derive(Debug, Clone)]
pub struct DeviceConfig {
    pub id: String,
    pub credential: String,
    pub board: &'static str,
    /// Speed class: 1 is the emulated Cortex-M4 at 62.5 MIPS, 2 twice as slow.
    pub slowdown: u64,
    /// The model-runtime ABI its firmware provides ([`RUNTIME_ABI`], or older firmware's).
    pub runtime_abi: u32,
    pub faults: Faults,
}

/// What a device shows to the outside (for the demo's console and for tests).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    pub model_version: Option<String>,
    pub inferences: u64,
    pub power_cuts: u32,
    pub link_cuts: u32,
    pub requests: u64,
    pub http_errors: u64,
}

/// The virtual devices of one process.
#[derive(Debug)]
pub struct Fleet {
    base: String,
    root: TrustRoot,
    client: reqwest::blocking::Client,
    stop: AtomicBool,
    status: StdMutex<BTreeMap<String, Status>>,
    threads: StdMutex<Vec<std::thread::JoinHandle<()>>>,
}

impl Fleet {
    /// A fleet that talks to the server at `base` (`http://host:port`) and trusts `root`.
    pub fn new(base: &str, root: TrustRoot) -> anyhow::Result<Arc<Fleet>> {
        Fleet::with_ca(base, root, None)
    }

    /// A fleet of an `https://` server whose certificate chains to `ca` (PEM; only it is
    /// trusted then), or to the public roots when `ca` is `None`.
    pub fn with_ca(
        base: &str,
        root: TrustRoot,
        ca: Option<&std::path::Path>,
    ) -> anyhow::Result<Arc<Fleet>> {
        let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(5));
        Ok(Arc::new(Fleet {
            base: base.trim_end_matches('/').to_owned(),
            root,
            client: crate::tls::trust(client, ca)?.build()?,
            stop: AtomicBool::new(false),
            status: StdMutex::new(BTreeMap::new()),
            threads: StdMutex::new(Vec::new()),
        }))
    }

    /// Starts a device on a thread of its own.
    pub fn spawn(self: &Arc<Self>, cfg: DeviceConfig) -> anyhow::Result<()> {
        let fleet = self.clone();
        let handle = std::thread::Builder::new()
            .name(format!("dev-{}", cfg.id))
            .stack_size(512 * 1024)
            .spawn(move || run(&fleet, &cfg))?;
        self.threads
            .lock()
            .map_err(|_| anyhow::anyhow!("fleet lock"))?
            .push(handle);
        Ok(())
    }

    /// Every device's status, by id.
    pub fn status(&self) -> BTreeMap<String, Status> {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Stops every device and waits for their threads.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        let threads = self
            .threads
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default();
        for t in threads {
            let _ = t.join();
        }
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut Status)) {
        if let Ok(mut s) = self.status.lock() {
            f(s.entry(id.to_owned()).or_default());
        }
    }

    /// Sends one message; `None` when the link or the server failed (the session retries).
    fn exchange(&self, credential: &str, path: &str, body: Vec<u8>) -> Option<Vec<u8>> {
        let resp = self
            .client
            .post(format!("{}/api/device/{path}", self.base))
            .bearer_auth(credential)
            .header("content-type", "application/cbor")
            .body(body)
            .send()
            .ok()?;
        if !resp.status().is_success() {
            return None;
        }
        resp.bytes().ok().map(|b| b.to_vec())
    }
}

/// The device's fault generator: the fleet's seed mixed with the device id (runs repeat).
fn device_rng(seed: u64, id: &str) -> Rng {
    let mut h = seed ^ 0x9E37_79B9_7F4A_7C15;
    for b in id.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3);
    }
    Rng::new(h)
}

/// True with a chance of `p` per mille.
fn per_mille(rng: &mut Rng, p: u16) -> bool {
    p > 0 && rng.below(1000) < u64::from(p)
}

/// The device's life: power on, run the session until stopped or the power is cut, again.
fn run(fleet: &Fleet, cfg: &DeviceConfig) {
    let flash: SharedFlash<Flash> =
        Mutex::new(RefCell::new(Flash::new(LAYOUT.flash_size as usize)));
    let mut rng = device_rng(cfg.faults.seed, &cfg.id);
    let started = Instant::now();
    let mut boots = 0u32;
    let mut inferences = 0u64;
    // The device's RAM for decoding delta and compressed downloads, lent to each boot's agent.
    let mut decoder = Box::new(delta::Decoder::new());
    while !fleet.stop.load(Ordering::Relaxed) {
        boots += 1;
        flash.lock(|f| f.borrow_mut().power_on());
        power_cycle(
            fleet,
            cfg,
            (&flash, &mut decoder),
            &mut rng,
            started,
            boots,
            &mut inferences,
        );
        if !flash.lock(|f| f.borrow().powered()) {
            fleet.update(&cfg.id, |s| s.power_cuts += 1);
        }
    }
}

fn now_ms(started: Instant) -> u64 {
    started.elapsed().as_millis() as u64
}

/// One power cycle: returns when the device is stopped or its power is cut.
fn power_cycle(
    fleet: &Fleet,
    cfg: &DeviceConfig,
    (flash, decoder): (&SharedFlash<Flash>, &mut delta::Decoder),
    rng: &mut Rng,
    started: Instant,
    boots: u32,
    inferences: &mut u64,
) {
    let identity = Identity {
        device_id: &cfg.id,
        board: cfg.board,
        runtime_abi: cfg.runtime_abi,
        arena_capacity: 64 * 1024,
    };
    let powered = || flash.lock(|f| f.borrow().powered());
    let Ok(mut agent) = Agent::open(flash, LAYOUT, fleet.root.clone(), identity) else {
        // Power cut while the agent read its records: power on again.
        return;
    };
    agent.set_stream_decoder(decoder);
    let firmware = Firmware {
        version: Version::new(1, 0, 0),
        status: BootStatus::Confirmed,
    };
    let mut session = Session::new(agent, firmware, boots, now_ms(started));
    let mut last_tick = now_ms(started);
    let mut buf = vec![0u8; 4096];
    let mut arena = vec![0u8; 64 * 1024];
    while !fleet.stop.load(Ordering::Relaxed) {
        if !powered() {
            return;
        }
        let now = now_ms(started);
        if session.agent().active().is_some() {
            *inferences += (now - last_tick) * INFERENCES_PER_S / 1000;
        }
        last_tick = now;
        session.set_inferences(*inferences);
        let model = session
            .agent()
            .active()
            .map(|a| format!("{}.{}.{}", a.version.0, a.version.1, a.version.2));
        let n = *inferences;
        fleet.update(&cfg.id, |s| {
            s.model_version = model;
            s.inferences = n;
        });
        if let Some(action) = session.take_action() {
            if action == Next::Validate {
                let result = validate(&mut session, flash, &mut arena, cfg.slowdown);
                let _ = session.after_action(result);
            }
            // Switched: the interpreter reloads from the new slot (nothing to keep here).
            continue;
        }
        if per_mille(rng, cfg.faults.reset_per_mille) {
            let at = rng.below(40);
            flash.lock(|f| {
                f.borrow_mut().plan(Fault {
                    at,
                    kind: FaultKind::Tear,
                })
            });
        }
        let (path, len) = match session.poll_transmit(now) {
            // Long-poll (protocol 1.2): an idle device hears of a stage or a halt at once.
            Some(Outgoing::CheckIn(c)) => (
                "checkin",
                protocol::encode(
                    &protocol::CheckIn {
                        wait_ms: Some(LONG_POLL_MS),
                        ..c
                    },
                    &mut buf,
                ),
            ),
            Some(Outgoing::ChunkRequest(c)) => ("chunk", protocol::encode(&c, &mut buf)),
            Some(Outgoing::Report(r)) => ("reports", protocol::encode(&r, &mut buf)),
            None => {
                let wake = session.next_wake_ms().max(now + 1);
                std::thread::sleep(Duration::from_millis((wake - now).min(100)));
                continue;
            }
        };
        let Ok(len) = len else {
            continue;
        };
        fleet.update(&cfg.id, |s| s.requests += 1);
        let Some(answer) = fleet.exchange(&cfg.credential, path, buf[..len].to_vec()) else {
            fleet.update(&cfg.id, |s| s.http_errors += 1);
            continue;
        };
        if path == "chunk" && per_mille(rng, cfg.faults.link_cut_per_mille) {
            // The answer is lost on the way: the session asks again after its timeout.
            fleet.update(&cfg.id, |s| s.link_cuts += 1);
            continue;
        }
        if let Ok(frame) = ServerFrame::decode(&answer) {
            // Errors are reported to the server by the agent itself.
            let _ = session.handle(&frame, now_ms(started));
        }
    }
}

/// Runs the new model in the inactive slot on its validation set, at the device's speed
/// (1: the emulated Cortex-M4's).
pub fn validate(
    session: &mut Session<'_, Flash>,
    flash: &SharedFlash<Flash>,
    arena: &mut [u8],
    slowdown: u64,
) -> Result<Next, agent::Error> {
    let agent = session.agent();
    let region = agent.region(agent.inactive_slot());
    let model_size = agent.pending_sizes().map_or(0, |(m, _)| m as usize);
    let slot =
        flash.lock(|f| f.borrow().bytes()[region.offset as usize..region.end() as usize].to_vec());
    let clock = mac_clock(
        &slot[..model_size],
        EMULATED_M4_NS_PER_MAC * slowdown.max(1),
    );
    session.agent().validate(&slot, arena, clock)
}
