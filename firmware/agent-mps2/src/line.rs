//! The line's work: the active model runs on a stream of inputs (its own validation samples,
//! round and round) at a fixed rate, and counts its inferences; the model's bytes are copied
//! from its flash slot to RAM, where the interpreter reads them.

use agent::Agent;
use board_mps2::SemihostingFlash;
use core::cell::RefCell;
use embassy_sync::blocking_mutex::Mutex;
use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use embedded_storage::nor_flash::ReadNorFlash;
use protocol::ModelSlot;

pub type Flash = Mutex<NoopRawMutex, RefCell<SemihostingFlash>>;
/// Bytes of a model slot the firmware can hold in RAM (the slots are this big).
pub const SLOT: usize = 224 * 1024;
/// One inference every this many milliseconds of the emulated clock (a line of 40 emulated
/// boards shares two host cores).
const PERIOD_MS: u64 = 500;

/// Index of a slot's RAM copy.
pub fn index(slot: ModelSlot) -> usize {
    match slot {
        ModelSlot::A => 0,
        ModelSlot::B => 1,
    }
}

/// Copies `len` bytes of a model slot to RAM.
pub fn copy_slot(
    agent: &Agent<'_, SemihostingFlash>,
    flash: &Flash,
    slot: ModelSlot,
    len: u32,
    ram: &mut [u8; SLOT],
) -> bool {
    let region = agent.region(slot);
    let Some(dst) = ram.get_mut(..len as usize) else {
        return false;
    };
    flash
        .lock(|f| f.borrow_mut().read(region.offset, dst))
        .is_ok()
}

/// The running model and its counter.
#[derive(Debug, Default)]
pub struct Line {
    /// Slot, model bytes and validation-set bytes of the model in RAM.
    loaded: Option<(ModelSlot, u32, u32)>,
    pub inferences: u64,
    next_ms: u64,
    sample: usize,
}

impl Line {
    /// Loads the agent's active model (after boot, or after a switch).
    pub fn load(
        &mut self,
        agent: &Agent<'_, SemihostingFlash>,
        flash: &Flash,
        ram: &mut [[u8; SLOT]; 2],
    ) {
        self.loaded = None;
        let (Some(active), Some(slot)) = (agent.active(), agent.active_slot()) else {
            return;
        };
        let (m, s) = (active.model_size, active.set_size);
        if copy_slot(agent, flash, slot, m + s, &mut ram[index(slot)]) {
            self.loaded = Some((slot, m, s));
            self.sample = 0;
        }
    }

    /// The RAM copy of the running model's slot, if one runs.
    pub fn slot(&self) -> Option<ModelSlot> {
        self.loaded.map(|(slot, _, _)| slot)
    }

    /// When the next inference is due.
    pub fn next_ms(&self) -> u64 {
        if self.loaded.is_some() {
            self.next_ms
        } else {
            u64::MAX
        }
    }

    /// Runs one inference if one is due.
    pub fn tick(&mut self, now_ms: u64, ram: &[[u8; SLOT]; 2], arena: &mut [u8]) {
        let Some((slot, m, s)) = self.loaded else {
            return;
        };
        if now_ms < self.next_ms {
            return;
        }
        self.next_ms = self.next_ms.max(now_ms.saturating_sub(PERIOD_MS)) + PERIOD_MS;
        let bytes = &ram[index(slot)];
        let (model, set) = bytes[..(m + s) as usize].split_at(m as usize);
        let ran = (|| {
            let model = model::Model::parse(model).ok()?;
            let set = model::validation::ValidationSet::parse(set).ok()?;
            let (_, input) = set.sample(self.sample % set.count)?;
            let mut interp = model::interpreter::Interpreter::new(&model, arena).ok()?;
            interp.set_input(input).ok()?;
            interp.invoke().ok()?;
            interp.argmax().ok()
        })();
        if ran.is_some() {
            self.inferences += 1;
            self.sample = self.sample.wrapping_add(1);
        }
    }
}
