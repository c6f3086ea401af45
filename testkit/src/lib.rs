//! The test kit: fixtures shared by the workspace's tests, simulators and tools.
//!
//! - [`keys`]: the fixed test signing key and the trust root that lists it.
//! - [`release`]: the model fixtures and firmware images as signed releases (envelope and
//!   payload), built with `artifact::ManifestBuilder`.
//! - [`image`]: signed firmware images as they sit in a slot, behind their header.
//! - [`device`]: the emulated board as the host simulates it: flash, layout, the agent's
//!   identity, and the clock that makes a model as slow as the board runs it.
//! - [`qemu`]: the QEMU command line of the emulated board (`mps2-an386`).
//! - [`server`]: a scripted server that offers one release to a device under test.
//! - [`tls`]: throw-away certificate authorities and certificates for the TLS tests.
//!
//! Only for tests, simulators of the test suites and automation: the keys are public, so no
//! program that ships links this crate (the fleet server and `fleet-sim` do not).

pub mod device;
pub mod image;
pub mod keys;
pub mod qemu;
pub mod release;
pub mod server;
pub mod tls;
