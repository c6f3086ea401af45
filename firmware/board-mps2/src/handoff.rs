//! What the bootloader tells the application of this boot, in RAM outside both of their
//! linker regions (0x2020_0000): the decision, the running image's version and counter, and a
//! boot count that survives resets (QEMU keeps RAM across a system reset, not across a restart,
//! which is a power cycle).

const AT: usize = 0x2020_0000;
const MAGIC: u32 = 0xB007_1AF0;
const WORDS: usize = 8;

/// The bootloader's decision, as numbers the application maps to its protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootInfo {
    /// 0 confirmed, 1 trial, 2 reverted, 3 fallback.
    pub outcome: u32,
    pub version: (u32, u32, u32),
    pub counter: u32,
    /// Boots since power-on, this one included.
    pub boots: u32,
}

fn word(i: usize) -> *mut u32 {
    (AT + 4 * i) as *mut u32
}

fn check(w: &[u32; WORDS]) -> u32 {
    w[..WORDS - 1]
        .iter()
        .fold(0x811C_9DC5u32, |h, &x| (h ^ x).wrapping_mul(0x0100_0193))
}

fn load() -> [u32; WORDS] {
    let mut w = [0u32; WORDS];
    for (i, slot) in w.iter_mut().enumerate() {
        // SAFETY: RAM of the board reserved for the handoff.
        *slot = unsafe { core::ptr::read_volatile(word(i)) };
    }
    w
}

/// Reads what the bootloader left; `None` when it left nothing valid.
pub fn read() -> Option<BootInfo> {
    let w = load();
    if w[0] != MAGIC || w[WORDS - 1] != check(&w) {
        return None;
    }
    Some(BootInfo {
        outcome: w[1],
        version: (w[2], w[3], w[4]),
        counter: w[5],
        boots: w[6],
    })
}

/// Written by the bootloader before it jumps; the boot count carries on from the last boot.
pub fn write(outcome: u32, version: (u32, u32, u32), counter: u32) {
    let boots = read().map_or(1, |b| b.boots.wrapping_add(1));
    let mut w = [
        MAGIC, outcome, version.0, version.1, version.2, counter, boots, 0,
    ];
    w[WORDS - 1] = check(&w);
    for (i, v) in w.iter().enumerate() {
        // SAFETY: RAM of the board reserved for the handoff.
        unsafe { core::ptr::write_volatile(word(i), *v) };
    }
}
