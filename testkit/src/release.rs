//! Signed releases as a server hands them to a device (the manifest envelope and the payload):
//! the model fixtures of `model/fixtures` and firmware images, signed with the test key.

use crate::keys::{signing_key, trust_root};
use artifact::{ComponentKind, ManifestBuilder, Policy, Version};

/// The policy the model fixtures are signed with: 90 % accuracy, 10 ms p99, a drop of 2 %.
pub const POLICY: Policy = Policy {
    min_accuracy_bp: 9_000,
    max_p99_latency_us: 10_000,
    max_accuracy_drop_bp: 200,
};

/// A signed release: envelope and payloads (firmware image, or model then validation set).
#[derive(Debug, Clone)]
pub struct Release {
    pub id: u64,
    pub envelope: Vec<u8>,
    pub payload: Vec<u8>,
    pub version: Version,
}

/// A file of `model/fixtures`.
pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/../model/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("test fixture")
}

/// Fixture `name` (NAME.tflite and NAME.vset) as model "digits" `version` for `board`, with
/// security counter `counter` and [`POLICY`], requiring runtime ABI 1 (what the digits
/// fixtures need).
pub fn release(id: u64, name: &str, version: Version, counter: u64, board: &str) -> Release {
    release_requiring(id, name, version, counter, board, 1)
}

/// [`release`] whose signed manifest requires runtime ABI `required_abi`.
pub fn release_requiring(
    id: u64,
    name: &str,
    version: Version,
    counter: u64,
    board: &str,
    required_abi: u32,
) -> Release {
    let model = fixture(&format!("{name}.tflite"));
    let set = fixture(&format!("{name}.vset"));
    let envelope = ManifestBuilder::new(counter)
        .board(board)
        .model("digits", version, &model, &set)
        .requires(required_abi, 8 * 1024)
        .policy(POLICY)
        .sign(&[signing_key()])
        .expect("test fixture");
    let mut payload = model;
    payload.extend_from_slice(&set);
    Release {
        id,
        envelope,
        payload,
        version,
    }
}

/// `image` as firmware "agent" `version` for mps2-an386 (the raw image is the payload).
/// It provides today's runtime ABI ([`model::RUNTIME_ABI`]).
pub fn firmware_release(id: u64, version: Version, counter: u64, image: &[u8]) -> Release {
    firmware_release_on_abi(id, version, counter, image, model::RUNTIME_ABI)
}

/// [`firmware_release`] providing runtime ABI `runtime_abi`.
pub fn firmware_release_on_abi(
    id: u64,
    version: Version,
    counter: u64,
    image: &[u8],
    runtime_abi: u32,
) -> Release {
    Release {
        id,
        envelope: firmware_envelope_on_abi("mps2-an386", version, counter, image, runtime_abi),
        payload: image.to_vec(),
        version,
    }
}

/// The signed manifest of firmware "agent" `version` (`image`, today's runtime ABI) for
/// `board`.
pub fn firmware_envelope(board: &str, version: Version, counter: u64, image: &[u8]) -> Vec<u8> {
    firmware_envelope_on_abi(board, version, counter, image, model::RUNTIME_ABI)
}

/// [`firmware_envelope`] providing runtime ABI `runtime_abi`.
pub fn firmware_envelope_on_abi(
    board: &str,
    version: Version,
    counter: u64,
    image: &[u8],
    runtime_abi: u32,
) -> Vec<u8> {
    ManifestBuilder::new(counter)
        .board(board)
        .firmware("agent", version, image, runtime_abi)
        .sign(&[signing_key()])
        .expect("test fixture")
}

/// The size of a model release's model (its payload starts with it).
pub fn model_size(r: &Release) -> usize {
    let m = trust_root()
        .verify_manifest(&r.envelope)
        .expect("test fixture")
        .manifest;
    m.component(ComponentKind::Model)
        .expect("test fixture")
        .size as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_verify_against_the_test_root() {
        let r = release(1, "good", Version::new(1, 0, 0), 1, "mps2-an386");
        let m = trust_root().verify_manifest(&r.envelope).unwrap().manifest;
        assert_eq!(m.policy, Some(POLICY));
        assert_eq!(m.payload_len(), r.payload.len() as u64);
        assert_eq!(model_size(&r), fixture("good.tflite").len());
        let f = firmware_release(2, Version::new(2, 0, 0), 3, b"image");
        let m = trust_root().verify_manifest(&f.envelope).unwrap().manifest;
        let fw = m.component(ComponentKind::Firmware).unwrap();
        assert_eq!((m.security_counter, fw.name, fw.size), (3, "agent", 5));
    }
}
