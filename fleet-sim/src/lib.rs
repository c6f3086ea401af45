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
pub mod tls;

pub use device::{DeviceConfig, Faults, Fleet, Status};

/// Enrols `n` devices `PREFIX-01`... on board mps2-an386, spread over the tags line-1 ..
/// line-`lines`, and starts them on `fleet`.
pub fn enroll_and_start(
    fleet: &std::sync::Arc<Fleet>,
    op: &operator::Operator,
    prefix: &str,
    n: usize,
    lines: usize,
    faults: Faults,
) -> anyhow::Result<()> {
    enroll_and_start_on(fleet, op, prefix, n, lines, device::BOARD, faults, |_| 1)
}

/// `enroll_and_start` on `board`, device `i` (from 0) of speed class `slowdown(i)`.
#[allow(clippy::too_many_arguments)] // each is one knob of the simulated line
pub fn enroll_and_start_on(
    fleet: &std::sync::Arc<Fleet>,
    op: &operator::Operator,
    prefix: &str,
    n: usize,
    lines: usize,
    board: &'static str,
    faults: Faults,
    slowdown: impl Fn(usize) -> u64,
) -> anyhow::Result<()> {
    for i in 0..n {
        let id = format!("{prefix}-{:02}", i + 1);
        let tag = format!("line-{}", i % lines.max(1) + 1);
        let credential = op.enroll(&id, board, &[&tag])?;
        fleet.spawn(DeviceConfig {
            id,
            credential,
            board,
            slowdown: slowdown(i),
            runtime_abi: device::RUNTIME_ABI,
            faults,
        })?;
    }
    Ok(())
}
