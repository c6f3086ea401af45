//! Fuzz target: every decoder of the artifact format (bundle, envelope, manifest, root) on
//! arbitrary bytes, without an allocator, as on the device. Run: `cargo xtask fuzz`.
#![no_main]

use artifact::{Bundle, Envelope, Manifest, PublicKey, TrustRoot};
use libfuzzer_sys::fuzz_target;

fn root() -> TrustRoot {
    // Any valid key will do: the target explores parsing, and verification up to the signature.
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    TrustRoot::single_key(
        1,
        PublicKey::from_bytes(key.verifying_key().to_bytes()).unwrap(),
    )
}

fuzz_target!(|data: &[u8]| {
    let root = root();
    let _ = Manifest::decode(data);
    let _ = Envelope::decode(data);
    let _ = TrustRoot::decode_body(data);
    let _ = TrustRoot::from_self_signed(data);
    let _ = root.rotate(data);
    let _ = root.verify_manifest(data);
    let _ = Bundle::parse(data).and_then(|b| b.verify(&root));
});
