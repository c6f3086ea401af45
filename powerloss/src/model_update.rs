//! Model updates through the real agent core on a simulated device (testkit's signed fixtures,
//! flash and clock): an update driven to its end, the invariant every power cut must keep, and
//! the power-loss matrix over a whole model update.

use agent::{Agent, Next};
use artifact::{Version, sha256};
use bootloader::SharedFlash;
use core::cell::RefCell;
use embassy_sync::blocking_mutex::Mutex;
use norsim::NorSim;
use protocol::Command;
use testkit::device::{Flash, LAYOUT, clock_for, identity, new_flash};
use testkit::keys::trust_root;
use testkit::release::{Release, model_size, release};

pub fn command(r: &Release) -> Command<'_> {
    command_via(r, &Wire::Plain)
}

/// How a release's payloads travel: whole, or as a stream (`delta`) the server offers.
#[derive(Debug, Clone)]
pub enum Wire {
    Plain,
    Stream {
        bytes: Vec<u8>,
        base_sha256: Option<[u8; 32]>,
    },
}

/// The stream id the simulated server gives its one stream.
const STREAM_ID: u64 = 77;

impl Wire {
    /// `to`'s payloads as a delta from `from`'s (what a device running `from` holds).
    pub fn delta(from: &[u8], to: &Release) -> Wire {
        Wire::Stream {
            bytes: delta::encode::delta(from, &to.payload).expect("delta"),
            base_sha256: Some(sha256(from)),
        }
    }

    /// `to`'s payloads compressed.
    pub fn compressed(to: &Release) -> Wire {
        Wire::Stream {
            bytes: delta::encode::compress(&to.payload).expect("compress"),
            base_sha256: None,
        }
    }
}

pub fn command_via<'a>(r: &'a Release, wire: &Wire) -> Command<'a> {
    Command::Update {
        release: r.id,
        envelope: &r.envelope,
        url: "/artifacts/1",
        stream: match wire {
            Wire::Plain => None,
            Wire::Stream { bytes, base_sha256 } => Some(protocol::StreamOffer {
                id: STREAM_ID,
                len: bytes.len() as u32,
                base_sha256: *base_sha256,
            }),
        },
    }
}

/// Opens the agent with a stream decoder (a device that decodes deltas), leaked for the test.
pub fn open_with_decoder<'f>(
    flash: &'f SharedFlash<Flash>,
) -> Result<Agent<'f, Flash>, agent::Error> {
    let mut agent = Agent::open(flash, LAYOUT, trust_root(), identity())?;
    agent.set_stream_decoder(Box::leak(Box::new(delta::Decoder::new())));
    Ok(agent)
}

/// Answers a fetch: the plain payloads, or the stream's bytes.
pub fn answer<const W: usize, const E: usize>(
    agent: &mut Agent<'_, NorSim<W, E>>,
    r: &Release,
    wire: &Wire,
    req: protocol::ChunkRequest,
) -> Result<Next, agent::Error> {
    let (from, to) = (req.offset as usize, (req.offset + req.len) as usize);
    match (req.stream, wire) {
        (Some(id), Wire::Stream { bytes, .. }) => {
            let end = to.min(bytes.len());
            agent.on_stream_chunk(req.release, id, req.offset, &bytes[from.min(end)..end])
        }
        _ => agent.on_chunk(req.release, req.offset, &r.payload[from..to]),
    }
}

/// Runs an update to its end: command, every chunk, validation. Returns the last `Next`.
pub fn run_update<const W: usize, const E: usize>(
    agent: &mut Agent<'_, NorSim<W, E>>,
    flash: &SharedFlash<NorSim<W, E>>,
    r: &Release,
) -> Result<Next, agent::Error> {
    run_update_via(agent, flash, r, &Wire::Plain)
}

/// `run_update` with the payloads sent as `wire` offers them.
pub fn run_update_via<const W: usize, const E: usize>(
    agent: &mut Agent<'_, NorSim<W, E>>,
    flash: &SharedFlash<NorSim<W, E>>,
    r: &Release,
    wire: &Wire,
) -> Result<Next, agent::Error> {
    let mut next = agent.on_command(&command_via(r, wire))?;
    loop {
        match next {
            Next::Fetch(req) => next = answer(agent, r, wire, req)?,
            Next::Validate => {
                let region = agent.region(agent.inactive_slot());
                let slot = flash.lock(|f| {
                    f.borrow().bytes()[region.offset as usize..region.end() as usize].to_vec()
                });
                let model_size = model_size(r);
                let mut arena = vec![0u8; 64 * 1024];
                next = agent.validate(&slot, &mut arena, clock_for(&slot, model_size))?;
            }
            other => return Ok(other),
        }
    }
}

/// The active model's slot content matches its record (the invariant of every power cut).
pub fn active_is_intact<const W: usize, const E: usize>(
    agent: &Agent<'_, NorSim<W, E>>,
    flash: &SharedFlash<NorSim<W, E>>,
) -> bool {
    let Some(a) = agent.active() else {
        return false;
    };
    let region = agent.region(agent.active_slot().expect("test fixture"));
    flash.lock(|f| {
        let flash = f.borrow();
        let bytes = &flash.bytes()[region.offset as usize..region.end() as usize];
        let model = &bytes[..a.model_size as usize];
        let set = &bytes[a.model_size as usize..(a.model_size + a.set_size) as usize];
        sha256(model) == a.model_digest && sha256(set) == a.set_digest
    })
}

/// Power-loss matrix of a model update (`model-update...` scenarios of powerloss.json): a
/// device running `good` 1.0.0 receives `to`; power is cut (or the operation torn) at every
/// flash operation of the update. After each fault the agent restarts; the active model must
/// be the old or the new one and intact, never neither; the server then repeats the command
/// and the update must end where a fault-free one ends.
pub fn matrix(name: &str, to: &str, expect_switch: bool) -> crate::ScenarioResult {
    matrix_via(name, to, expect_switch, WireKind::Plain)
}

/// How `matrix_via` sends the new release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireKind {
    Plain,
    /// A delta from the installed release's payloads.
    Delta,
    Compressed,
}

fn open_as(kind: WireKind, f: &SharedFlash<Flash>) -> Result<Agent<'_, Flash>, agent::Error> {
    match kind {
        WireKind::Plain => Agent::open(f, LAYOUT, trust_root(), identity()),
        _ => open_with_decoder(f),
    }
}

/// `matrix` with the new release sent as `kind` (the device decodes streams).
pub fn matrix_via(
    name: &str,
    to: &str,
    expect_switch: bool,
    wire_kind: WireKind,
) -> crate::ScenarioResult {
    use norsim::{Fault, FaultKind};
    let old = release(1, "good", Version::new(1, 0, 0), 1, "mps2-an386");
    let new = release(2, to, Version::new(1, 1, 0), 2, "mps2-an386");
    let wire = match wire_kind {
        WireKind::Plain => Wire::Plain,
        WireKind::Delta => Wire::delta(&old.payload, &new),
        WireKind::Compressed => Wire::compressed(&new),
    };
    let installed = new_flash();
    {
        let mut agent = Agent::open(&installed, LAYOUT, trust_root(), identity()).expect("open");
        run_update(&mut agent, &installed, &old).expect("install the old model");
    }
    let snapshot = |f: &SharedFlash<Flash>| -> SharedFlash<Flash> {
        Mutex::new(RefCell::new(f.lock(|c| c.borrow().clone())))
    };
    let final_version = if expect_switch { (1, 1, 0) } else { (1, 0, 0) };
    let probe = snapshot(&installed);
    probe.lock(|f| f.borrow_mut().power_on());
    let ops = {
        let mut agent = open_as(wire_kind, &probe).expect("open");
        let before = probe.lock(|f| f.borrow().ops());
        run_update_via(&mut agent, &probe, &new, &wire).expect("fault-free update");
        probe.lock(|f| f.borrow().ops()) - before
    };
    let mut result = crate::ScenarioResult {
        name: name.into(),
        geometry: "mps2-an386 layout, 4KiB/4B".into(),
        cut_points: 0,
        failures: 0,
        first_failure: None,
        known_limitation: false,
    };
    for k in 0..ops {
        for kind in [FaultKind::Cut, FaultKind::Tear] {
            let flash = snapshot(&installed);
            flash.lock(|f| {
                let mut f = f.borrow_mut();
                *f = f.clone().with_seed(k * 2 + kind as u64 + 1);
                f.power_on();
            });
            let outcome = (|| -> Result<(), String> {
                {
                    let mut agent =
                        open_as(wire_kind, &flash).map_err(|e| format!("open: {e:?}"))?;
                    flash.lock(|f| f.borrow_mut().plan(Fault { at: k, kind }));
                    let _ = run_update_via(&mut agent, &flash, &new, &wire);
                }
                flash.lock(|f| f.borrow_mut().power_on());
                let mut agent = open_as(wire_kind, &flash).map_err(|e| format!("reopen: {e:?}"))?;
                if !active_is_intact(&agent, &flash) {
                    return Err("no intact active model".into());
                }
                let v = agent.active().map(|a| a.version);
                if v != Some((1, 0, 0)) && v != Some((1, 1, 0)) {
                    return Err(format!("active version {v:?}"));
                }
                // The server repeats the command while the device does not run the release, or
                // says it is still installing it (as `command_for` decides from a check-in).
                let runs_new = agent.active().map(|a| a.version) == Some((1, 1, 0));
                let installing = agent.progress().is_some_and(|p| p.release == 2);
                if !runs_new || installing {
                    let _ = run_update_via(&mut agent, &flash, &new, &wire);
                }
                let mut agent =
                    open_as(wire_kind, &flash).map_err(|e| format!("final open: {e:?}"))?;
                if !active_is_intact(&agent, &flash)
                    || agent.active().map(|a| a.version) != Some(final_version)
                {
                    return Err(format!("ended on {:?}", agent.active().map(|a| a.version)));
                }
                // And the server learns the outcome: the reports kept for it include it.
                let mut outcome = false;
                while let Some(r) = agent.report() {
                    outcome |= r.release == 2
                        && match r.step {
                            protocol::Step::Confirmed => expect_switch,
                            protocol::Step::Reverted(_) => !expect_switch,
                            _ => false,
                        };
                    agent
                        .delivered(r.seq)
                        .map_err(|e| format!("delivered: {e:?}"))?;
                }
                if !outcome {
                    return Err("the outcome was never reported".into());
                }
                Ok(())
            })();
            result.record(format_args!("{kind:?} at operation {k}"), outcome);
        }
    }
    result
}

/// Flash work of one model update (agent records included): (erases, writes, bytes written).
pub fn update_cost() -> (u64, u64, u64) {
    let flash = new_flash();
    let mut agent = Agent::open(&flash, LAYOUT, trust_root(), identity()).expect("open");
    run_update(
        &mut agent,
        &flash,
        &release(1, "good", Version::new(1, 0, 0), 1, "mps2-an386"),
    )
    .expect("install");
    let before = flash.lock(|f| f.borrow().counters());
    run_update(
        &mut agent,
        &flash,
        &release(2, "per_tensor", Version::new(1, 1, 0), 2, "mps2-an386"),
    )
    .expect("update");
    let after = flash.lock(|f| f.borrow().counters());
    (
        after.erases - before.erases,
        after.writes - before.writes,
        after.bytes_written - before.bytes_written,
    )
}

/// Downloads a firmware release to its end (the agent then asks for a reboot).
pub fn download_firmware(agent: &mut Agent<'_, Flash>, r: &Release) -> Result<Next, agent::Error> {
    let mut next = agent.on_command(&command(r))?;
    while let Next::Fetch(req) = next {
        let end = (req.offset + req.len) as usize;
        next = agent.on_chunk(
            req.release,
            req.offset,
            &r.payload[req.offset as usize..end],
        )?;
    }
    Ok(next)
}

/// The active model slot's bytes (what `confirm_firmware` validates).
pub fn active_slot_bytes(agent: &Agent<'_, Flash>, flash: &SharedFlash<Flash>) -> Vec<u8> {
    let region = agent.region(agent.active_slot().expect("a model"));
    flash.lock(|f| f.borrow().bytes()[region.offset as usize..region.end() as usize].to_vec())
}
