//! The fixed test keys: one signing key and the trust root that lists it, for emulated boards,
//! simulators and tests only (the secret key is in this file: never a fleet's).

use artifact::{DocumentType, Envelope, PublicKey, TrustRoot};
use ed25519_dalek::SigningKey;

/// The fixed test signing key.
pub fn signing_key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

/// The trust root simulated devices and test servers carry: version 1, the test key alone.
pub fn trust_root() -> TrustRoot {
    TrustRoot::single_key(
        1,
        PublicKey::from_bytes(signing_key().verifying_key().to_bytes()).expect("valid key"),
    )
}

/// The trust root as a signed document, as bootloaders bake it in (`FLEET_TRUST_ROOT`).
pub fn signed_trust_root() -> Vec<u8> {
    let body = trust_root().to_vec().expect("valid root");
    Envelope::sign(DocumentType::Root, &body, &[signing_key()]).expect("signs")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_signed_root_is_the_trust_root() {
        let root = artifact::TrustRoot::from_self_signed(&super::signed_trust_root()).unwrap();
        assert_eq!(root, super::trust_root());
    }
}
