//! The releases the scenarios roll out, signed with the emulated boards' test key: model
//! bundles from the model fixtures, firmware bundles from the agent firmware's raw binaries,
//! and the tampered manifests a board must refuse.

use anyhow::Result;
use artifact::{Policy, Version};
use fleet_sim::fixtures::Fixture;
use fleet_sim::release::model_bundle;
use testkit::keys::signing_key;

pub const BOARD: &str = "mps2-an386";

/// A model release as a bundle.
pub fn model(fixture: &Fixture, version: Version, counter: u64, policy: Policy) -> Result<Vec<u8>> {
    model_bundle(
        fixture,
        "digits",
        version,
        counter,
        BOARD,
        policy,
        &[signing_key()],
    )
}

/// A firmware release (the agent firmware's raw binary) as a bundle.
pub fn firmware(image: &[u8], version: Version, counter: u64) -> Result<Vec<u8>> {
    let r = testkit::release::firmware_release(0, version, counter, image);
    artifact::bundle::write(&r.envelope, &[&r.payload]).map_err(|e| anyhow::anyhow!("bundle: {e}"))
}

/// The manifest envelope of a bundle.
pub fn envelope_of(bundle: &[u8]) -> Result<Vec<u8>> {
    let b = artifact::bundle::Bundle::parse(bundle).map_err(|e| anyhow::anyhow!("bundle: {e}"))?;
    Ok(b.envelope.to_vec())
}
