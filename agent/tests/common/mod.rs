//! A simulated device and server for the agent tests: real fixtures, signed releases, a strict
//! NOR flash, and a clock that makes a model as slow as its multiply-accumulates.
#![allow(dead_code)]

use agent::{Agent, Identity, Next};
use artifact::{Component, ComponentKind, DocumentType, Envelope, Manifest, Policy, PublicKey, TrustRoot, Version, sha256};
use bootloader::SharedFlash;
use core::cell::RefCell;
use embassy_sync::blocking_mutex::Mutex;
use layout::{Layout, MPS2_AN386};
use norsim::NorSim;
use protocol::Command;

pub type Flash = NorSim<4, 4096>;
pub const LAYOUT: &Layout = &MPS2_AN386;

pub fn key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[42; 32])
}

pub fn root() -> TrustRoot {
    TrustRoot::single_key(1, PublicKey::from_bytes(key().verifying_key().to_bytes()).unwrap())
}

pub fn identity() -> Identity<'static> {
    Identity { device_id: "node-1", board: "mps2-an386", runtime_abi: 1, arena_capacity: 64 * 1024 }
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/../model/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// A signed model release: envelope and payloads (model then validation set).
pub struct Release {
    pub id: u64,
    pub envelope: Vec<u8>,
    pub payload: Vec<u8>,
    pub version: Version,
}

pub fn release(id: u64, name: &str, version: Version, counter: u64, board: &'static str) -> Release {
    let model = fixture(&format!("{name}.tflite"));
    let set = fixture(&format!("{name}.vset"));
    let c = |kind, bytes: &[u8]| Component { kind, name: "digits", version, size: bytes.len() as u32, digest: sha256(bytes) };
    let manifest = Manifest {
        security_counter: counter,
        boards: [board].into_iter().collect(),
        components: [c(ComponentKind::Model, &model), c(ComponentKind::ValidationSet, &set)].into_iter().collect(),
        runtime_abi: None,
        required_abi: Some(1),
        arena_size: Some(8 * 1024),
        policy: Some(Policy { min_accuracy_bp: 9_000, max_p99_latency_us: 10_000, max_accuracy_drop_bp: 200 }),
    };
    let envelope = Envelope::sign(DocumentType::Manifest, &manifest.to_vec().unwrap(), &[key()]).unwrap();
    let mut payload = model;
    payload.extend_from_slice(&set);
    Release { id, envelope, payload, version }
}

pub fn new_flash() -> SharedFlash<Flash> {
    Mutex::new(RefCell::new(Flash::new(LAYOUT.flash_size as usize)))
}

/// Inference latency as the emulated Cortex-M4 measured it: about 111 ns per MAC at 62.5 MIPS
/// (the slow fixture's 460 k MACs take 51 ms there).
pub fn clock_for(slot: &[u8], model_size: usize) -> impl FnMut() -> u64 {
    let macs = model::Model::parse(&slot[..model_size]).map(|m| m.macs()).unwrap_or(0);
    let mut calls = 0u64;
    let mut t = 0u64;
    move || {
        calls += 1;
        if calls % 2 == 0 {
            t += macs * 111;
        }
        t
    }
}

pub fn command(r: &Release) -> Command<'_> {
    Command::Update { release: r.id, envelope: &r.envelope, url: "/artifacts/1" }
}

/// Runs an update to its end: command, every chunk, validation. Returns the last `Next`.
pub fn run_update(agent: &mut Agent<'_, Flash>, flash: &SharedFlash<Flash>, r: &Release) -> Result<Next, agent::Error> {
    let mut next = agent.on_command(&command(r))?;
    loop {
        match next {
            Next::Fetch(req) => {
                let end = (req.offset + req.len) as usize;
                next = agent.on_chunk(req.release, req.offset, &r.payload[req.offset as usize..end])?;
            }
            Next::Validate => {
                let region = agent.region(agent.inactive_slot());
                let slot = flash.lock(|f| f.borrow().bytes()[region.offset as usize..region.end() as usize].to_vec());
                let model_size = model_size(r);
                let mut arena = vec![0u8; 64 * 1024];
                next = agent.validate(&slot, &mut arena, clock_for(&slot, model_size))?;
            }
            other => return Ok(other),
        }
    }
}

pub fn model_size(r: &Release) -> usize {
    let m = root().verify_manifest(&r.envelope).unwrap().manifest;
    m.component(ComponentKind::Model).unwrap().size as usize
}

/// The active model's slot content matches its record (the invariant of every power cut).
pub fn active_is_intact(agent: &Agent<'_, Flash>, flash: &SharedFlash<Flash>) -> bool {
    let Some(a) = agent.active() else { return false };
    let region = agent.region(agent.active_slot().unwrap());
    flash.lock(|f| {
        let flash = f.borrow();
        let bytes = &flash.bytes()[region.offset as usize..region.end() as usize];
        let model = &bytes[..a.model_size as usize];
        let set = &bytes[a.model_size as usize..(a.model_size + a.set_size) as usize];
        sha256(model) == a.model_digest && sha256(set) == a.set_digest
    })
}
