//! The emulated board (`mps2-an386`) as the host simulates it: its flash and layout, the
//! identity its agent reports, and the clock under which a model is as slow as the board runs it.

use agent::Identity;
use bootloader::SharedFlash;
use core::cell::RefCell;
use embassy_sync::blocking_mutex::Mutex;
use layout::{Layout, MPS2_AN386};
use model::validation::{EMULATED_M4_NS_PER_MAC, mac_clock};
use norsim::NorSim;

/// The board's flash: 4-byte words, 4 KiB sectors.
pub type Flash = NorSim<4, 4096>;
pub const LAYOUT: &Layout = &MPS2_AN386;

/// An erased flash of the board's size.
pub fn new_flash() -> SharedFlash<Flash> {
    Mutex::new(RefCell::new(Flash::new(LAYOUT.flash_size as usize)))
}

/// The agent's identity on device "node-1": board, the runtime ABI of today's `model`
/// runtime ([`model::RUNTIME_ABI`]), a 64 KiB tensor arena.
pub fn identity() -> Identity<'static> {
    Identity {
        device_id: "node-1",
        board: "mps2-an386",
        runtime_abi: model::RUNTIME_ABI,
        arena_capacity: 64 * 1024,
    }
}

/// The runtime ABI of firmware built before the operators of ABI 2 (a device in the field).
pub const OLD_RUNTIME_ABI: u32 = 1;

/// [`identity`] on firmware that provides runtime ABI `runtime_abi`.
pub fn identity_on_abi(runtime_abi: u32) -> Identity<'static> {
    Identity {
        runtime_abi,
        ..identity()
    }
}

/// [`identity`] on device `device_id`.
pub fn identity_of(device_id: &'static str) -> Identity<'static> {
    Identity {
        device_id,
        ..identity()
    }
}

/// The clock for validating the model at the start of `slot` (`model_size` bytes) as the
/// emulated Cortex-M4 runs it: about 111 ns per multiply-accumulate.
pub fn clock_for(slot: &[u8], model_size: usize) -> impl FnMut() -> u64 + use<> {
    mac_clock(&slot[..model_size], EMULATED_M4_NS_PER_MAC)
}

/// [`clock_for`] on a board `factor` times slower (or a firmware that slows the model).
pub fn slowed_clock(slot: &[u8], model_size: usize, factor: u64) -> impl FnMut() -> u64 + use<> {
    mac_clock(&slot[..model_size], EMULATED_M4_NS_PER_MAC * factor)
}
