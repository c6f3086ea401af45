//! Test fixtures: deterministic keys, a trust root, and signed model and firmware bundles.
#![allow(dead_code)]

use artifact::{
    Component, ComponentKind, DocumentType, Envelope, Manifest, Policy, PublicKey, TrustRoot,
    Version, bundle, sha256,
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

pub fn component(kind: ComponentKind, name: &'static str, payload: &[u8]) -> Component<'static> {
    Component {
        kind,
        name,
        version: Version::new(1, 2, 3),
        size: payload.len() as u32,
        digest: sha256(payload),
    }
}

pub fn model_manifest() -> Manifest<'static> {
    Manifest {
        security_counter: 7,
        boards: ["mps2-an386", "nrf52840-dk"].into_iter().collect(),
        components: [
            component(ComponentKind::Model, "vibration", MODEL),
            component(ComponentKind::ValidationSet, "vibration", VALSET),
        ]
        .into_iter()
        .collect(),
        runtime_abi: None,
        required_abi: Some(1),
        arena_size: Some(16 * 1024),
        policy: Some(Policy {
            min_accuracy_bp: 9_000,
            max_p99_latency_us: 10_000,
            max_accuracy_drop_bp: 200,
        }),
    }
}

pub fn firmware_manifest() -> Manifest<'static> {
    Manifest {
        security_counter: 3,
        boards: ["mps2-an386"].into_iter().collect(),
        components: [component(ComponentKind::Firmware, "agent", FIRMWARE)]
            .into_iter()
            .collect(),
        runtime_abi: Some(1),
        required_abi: None,
        arena_size: None,
        policy: None,
    }
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
