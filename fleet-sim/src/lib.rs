//! The fleet simulator: N virtual devices in one process, each the real agent core and
//! session over its own strict NOR flash (the bootloader tests' model), speaking the device
//! protocol over HTTP to a real fleet server. Inference latency comes from the model's
//! multiply-accumulates at the emulated Cortex-M4's measured speed times the device's speed
//! class, so a slow model is slow here too. Faults: cut links mid-download, power cuts at
//! random flash operations, slower classes of devices.

pub mod device;
pub mod fixtures;
pub mod operator;
pub mod release;

pub use device::{DeviceConfig, Faults, Fleet, Status};
