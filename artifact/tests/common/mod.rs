//! Test fixtures: deterministic keys, a trust root, and signed model and firmware bundles.
#![allow(dead_code)]

use artifact::{
    DocumentType, Envelope, Manifest, ManifestBuilder, Policy, PublicKey, TrustRoot, Version,
    bundle,
};
use ed25519_dalek::SigningKey;

/// Key number `n`, from a fixed seed so failures reproduce.
pub fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

pub fn public(k: &SigningKey) -> PublicKey {
    PublicKey::from_bytes(k.verifying_key().to_bytes()).unwrap()
}

pub fn publics(ns: &[u8]) -> heapless::Vec<PublicKey, { artifact::MAX_KEYS }> {
    ns.iter().map(|&n| public(&key(n))).collect()
}

/// Root v1: root keys 1,2,3 (2 of 3), signing keys 10,11 (`signing_threshold` of 2).
pub fn root_v1(signing_threshold: u8) -> TrustRoot {
    TrustRoot {
        version: 1,
        root_keys: publics(&[1, 2, 3]),
        root_threshold: 2,
        signing_keys: publics(&[10, 11]),
        signing_threshold,
    }
}

pub fn signed_root(root: &TrustRoot, signers: &[u8]) -> Vec<u8> {
    let keys: Vec<SigningKey> = signers.iter().map(|&n| key(n)).collect();
    Envelope::sign(DocumentType::Root, &root.to_vec().unwrap(), &keys).unwrap()
}

pub const MODEL: &[u8] = b"int8 model bytes, small for tests";
pub const VALSET: &[u8] = b"validation set";
pub const FIRMWARE: &[u8] = b"firmware image bytes";

const POLICY: Policy = Policy {
    min_accuracy_bp: 9_000,
    max_p99_latency_us: 10_000,
    max_accuracy_drop_bp: 200,
};

pub fn model_manifest() -> Manifest<'static> {
    ManifestBuilder::new(7)
        .board("mps2-an386")
        .board("nrf52840-dk")
        .model("vibration", Version::new(1, 2, 3), MODEL, VALSET)
        .requires(1, 16 * 1024)
        .policy(POLICY)
        .build()
        .unwrap()
}

pub fn firmware_manifest() -> Manifest<'static> {
    ManifestBuilder::new(3)
        .board("mps2-an386")
        .firmware("agent", Version::new(1, 2, 3), FIRMWARE, 1)
        .build()
        .unwrap()
}

pub fn sign_manifest(m: &Manifest<'_>, signers: &[u8]) -> Vec<u8> {
    let keys: Vec<SigningKey> = signers.iter().map(|&n| key(n)).collect();
    Envelope::sign(DocumentType::Manifest, &m.to_vec().unwrap(), &keys).unwrap()
}

/// A model bundle signed by both signing keys.
pub fn model_bundle() -> Vec<u8> {
    let env = sign_manifest(&model_manifest(), &[10, 11]);
    bundle::write(&env, &[MODEL, VALSET]).unwrap()
}
