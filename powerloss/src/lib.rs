//! Power-loss simulator for the bootloader, after MCUboot's: the real boot code (`bootloader`)
//! over a strict NOR model (`norsim`), with a power cut before every flash operation of an
//! update (swap), a revert and a confirm, torn writes, interrupted erases, and random runs of
//! several faults. After every fault the device reboots and must run a valid signed image, the
//! old or the new one, and the update must then complete or revert cleanly.

pub mod device;
pub mod device_update;
pub mod firmware_delta;
pub mod host_board;
pub mod model_update;
pub mod scenarios;

pub use scenarios::{
    Geometry, ScenarioResult, SwapCost, UpdateCost, run_all, swap_costs, update_cost,
};
