//! Signed model releases as bundles: what a release pipeline would upload.

use crate::fixtures::Fixture;
use artifact::{ManifestBuilder, Policy, Version};
use ed25519_dalek::SigningKey;

/// The device-side policy of a release (what each device checks on its own validation set).
pub const STRICT: Policy = Policy {
    min_accuracy_bp: 9_000,
    max_p99_latency_us: 10_000,
    max_accuracy_drop_bp: 200,
};

/// A policy that lets a device take nearly anything: the server's gates must catch it.
pub const LENIENT: Policy = Policy {
    min_accuracy_bp: 1_000,
    max_p99_latency_us: 1_000_000,
    max_accuracy_drop_bp: 10_000,
};

/// A bundle of `fixture` as model `name` `version`, signed by `keys`, requiring runtime ABI 1
/// (what the digits fixtures need).
pub fn model_bundle(
    fixture: &Fixture,
    name: &str,
    version: Version,
    counter: u64,
    board: &str,
    policy: Policy,
    keys: &[SigningKey],
) -> anyhow::Result<Vec<u8>> {
    model_bundle_requiring(fixture, name, version, counter, board, policy, keys, 1)
}

/// [`model_bundle`] whose manifest requires runtime ABI `required_abi`.
#[allow(clippy::too_many_arguments)] // each is one field of the signed manifest
pub fn model_bundle_requiring(
    fixture: &Fixture,
    name: &str,
    version: Version,
    counter: u64,
    board: &str,
    policy: Policy,
    keys: &[SigningKey],
    required_abi: u32,
) -> anyhow::Result<Vec<u8>> {
    let envelope = ManifestBuilder::new(counter)
        .board(board)
        .model(name, version, fixture.model, fixture.set)
        .requires(required_abi, 8 * 1024)
        .policy(policy)
        .sign(keys)
        .map_err(|e| anyhow::anyhow!("manifest: {e}"))?;
    artifact::bundle::write(&envelope, &[fixture.model, fixture.set])
        .map_err(|e| anyhow::anyhow!("bundle: {e}"))
}
