//! The artifact format end to end: sign, bundle, verify, and every way a bundle is refused.

mod common;

use artifact::{
    Bundle, ComponentKind, DeviceState, DocumentType, Envelope, Error, Manifest, SignatureEntry,
    TrustRoot, Version, bundle,
};
use common::*;

fn device() -> DeviceState<'static> {
    DeviceState {
        board: "mps2-an386",
        runtime_abi: 1,
        firmware_counter: 3,
        model_counter: 7,
    }
}

#[test]
fn signed_model_bundle_verifies_and_yields_its_payloads() {
    let root = TrustRoot::from_self_signed(&signed_root(&root_v1(2), &[1, 2])).unwrap();
    let bytes = model_bundle();
    let v = bundle::open(&bytes, &root).unwrap();
    assert_eq!(v.verified.manifest, model_manifest());
    assert_eq!(v.payloads.as_slice(), &[MODEL, VALSET]);
    assert_eq!(v.verified.envelope.signatures.len(), 2);
    v.verified.manifest.check_device(&device()).unwrap();
    let model = v.verified.manifest.component(ComponentKind::Model).unwrap();
    assert_eq!(
        (model.name, model.version),
        ("vibration", Version::new(1, 2, 3))
    );
}

#[test]
fn firmware_bundle_verifies() {
    let root = TrustRoot::from_self_signed(&signed_root(&root_v1(1), &[1, 3])).unwrap();
    let env = sign_manifest(&firmware_manifest(), &[11]);
    let bytes = bundle::write(&env, &[FIRMWARE]).unwrap();
    let v = bundle::open(&bytes, &root).unwrap();
    assert_eq!(v.verified.manifest, firmware_manifest());
    v.verified.manifest.check_device(&device()).unwrap();
}

#[test]
fn every_flipped_bit_of_a_bundle_is_rejected_with_an_error() {
    let root = TrustRoot::from_self_signed(&signed_root(&root_v1(2), &[1, 2])).unwrap();
    let good = model_bundle();
    let mut seen = std::collections::BTreeMap::new();
    for i in 0..good.len() {
        for bit in 0..8 {
            let mut bad = good.clone();
            bad[i] ^= 1 << bit;
            let err = bundle::open(&bad, &root).expect_err(&format!("byte {i} bit {bit} accepted"));
            *seen.entry(err.code()).or_insert(0) += 1;
        }
    }
    // The header, the CBOR framing, the signed body and the payloads each fail in their own way.
    for code in [
        "bad_magic",
        "unsupported_version",
        "unsupported_flags",
        "bad_signature",
        "digest_mismatch",
        "unknown_key",
    ] {
        assert!(seen.contains_key(code), "no flip produced {code}: {seen:?}");
    }
}

#[test]
fn every_truncation_is_rejected() {
    let root = TrustRoot::from_self_signed(&signed_root(&root_v1(2), &[1, 2])).unwrap();
    let good = model_bundle();
    for len in 0..good.len() {
        let err = bundle::open(&good[..len], &root).unwrap_err();
        assert!(
            matches!(err, Error::Truncated | Error::Malformed),
            "prefix {len} gave {err:?}"
        );
    }
    let payload_start = good.len() - MODEL.len() - VALSET.len();
    assert_eq!(
        bundle::open(&good[..payload_start + 3], &root),
        Err(Error::Truncated)
    );
    assert_eq!(bundle::open(&good[..5], &root), Err(Error::Truncated));
}

#[test]
fn trailing_bytes_after_the_payloads_are_rejected() {
    let root = TrustRoot::from_self_signed(&signed_root(&root_v1(2), &[1, 2])).unwrap();
    let mut bytes = model_bundle();
    bytes.push(0);
    assert_eq!(bundle::open(&bytes, &root), Err(Error::TrailingBytes));
}

#[test]
fn unknown_signing_key_is_rejected() {
    let root = TrustRoot::from_self_signed(&signed_root(&root_v1(1), &[1, 2])).unwrap();
    let env = sign_manifest(&model_manifest(), &[42]);
    assert_eq!(root.verify_manifest(&env).unwrap_err(), Error::UnknownKey);
}

#[test]
fn fewer_signatures_than_the_threshold_are_rejected() {
    let root = TrustRoot::from_self_signed(&signed_root(&root_v1(2), &[1, 2])).unwrap();
    let env = sign_manifest(&model_manifest(), &[10]);
    assert_eq!(
        root.verify_manifest(&env).unwrap_err(),
        Error::BelowThreshold
    );
    // An unknown key does not make up for a missing trusted one.
    let env = sign_manifest(&model_manifest(), &[10, 42]);
    assert_eq!(root.verify_manifest(&env).unwrap_err(), Error::UnknownKey);
}

#[test]
fn two_signatures_by_one_key_count_once() {
    let root = TrustRoot::from_self_signed(&signed_root(&root_v1(2), &[1, 2])).unwrap();
    let env_bytes = sign_manifest(&model_manifest(), &[10]);
    let mut env = Envelope::decode(&env_bytes).unwrap();
    let first: SignatureEntry = env.signatures[0];
    env.signatures.push(first).unwrap();
    let doubled = env.to_vec();
    assert_eq!(
        root.verify_manifest(&doubled).unwrap_err(),
        Error::DuplicateSignature
    );
    // With threshold 1 the duplicate is harmless: the key still counts once.
    let root1 = TrustRoot::from_self_signed(&signed_root(&root_v1(1), &[1, 2])).unwrap();
    root1.verify_manifest(&doubled).unwrap();
    // Signing twice with one key is refused at the source too.
    assert_eq!(
        Envelope::sign(DocumentType::Manifest, b"x", &[key(10), key(10)]).unwrap_err(),
        Error::DuplicateKey
    );
}

#[test]
fn a_signature_from_a_trusted_key_over_other_bytes_is_a_bad_signature() {
    let root = TrustRoot::from_self_signed(&signed_root(&root_v1(1), &[1, 2])).unwrap();
    let env_bytes = sign_manifest(&model_manifest(), &[10]);
    let env = Envelope::decode(&env_bytes).unwrap();
    let mut other = model_manifest();
    other.security_counter = 8;
    let other_body = other.to_vec().unwrap();
    let forged = Envelope {
        body: &other_body,
        ..env
    }
    .to_vec();
    assert_eq!(
        root.verify_manifest(&forged).unwrap_err(),
        Error::BadSignature
    );
}

#[test]
fn a_root_signature_never_passes_for_a_manifest() {
    let root = TrustRoot::from_self_signed(&signed_root(&root_v1(1), &[1, 2])).unwrap();
    let body = model_manifest().to_vec().unwrap();
    let as_root = Envelope::sign(DocumentType::Root, &body, &[key(10)]).unwrap();
    assert_eq!(
        root.verify_manifest(&as_root).unwrap_err(),
        Error::WrongDocument
    );
    // Relabelled as a manifest, the domain tag no longer matches.
    let mut env = Envelope::decode(&as_root).unwrap();
    env.doc_type = DocumentType::Manifest;
    assert_eq!(
        root.verify_manifest(&env.to_vec()).unwrap_err(),
        Error::BadSignature
    );
}

#[test]
fn wrong_board_is_rejected() {
    let m = model_manifest();
    let other = DeviceState {
        board: "stm32f4-disco",
        ..device()
    };
    assert_eq!(m.check_device(&other), Err(Error::WrongBoard));
}

#[test]
fn security_counter_below_the_trusted_one_is_rejected() {
    let m = model_manifest(); // counter 7
    assert_eq!(
        m.check_device(&DeviceState {
            model_counter: 8,
            ..device()
        }),
        Err(Error::SecurityCounter)
    );
    // The firmware counter does not gate a model-only release.
    m.check_device(&DeviceState {
        firmware_counter: 99,
        ..device()
    })
    .unwrap();
    let f = firmware_manifest(); // counter 3
    assert_eq!(
        f.check_device(&DeviceState {
            firmware_counter: 4,
            ..device()
        }),
        Err(Error::SecurityCounter)
    );
}

#[test]
fn a_model_runs_on_its_runtime_abi_or_a_later_one() {
    let mut m = model_manifest();
    m.required_abi = Some(2);
    let on = |abi| {
        m.check_device(&DeviceState {
            runtime_abi: abi,
            ..device()
        })
    };
    // Older firmware than the model needs: refused; the same ABI or a later one runs it.
    assert_eq!(on(1), Err(Error::AbiMismatch));
    assert_eq!(on(2), Ok(()));
    assert_eq!(on(3), Ok(()));
}

#[test]
fn a_firmware_release_is_not_judged_by_the_device_runtime_abi() {
    // The agent compares a firmware's ABI with the running one itself (it knows whether a
    // model is active); check_device leaves it alone in both directions.
    let f = firmware_manifest();
    for abi in [0, 1, 2] {
        assert_eq!(
            f.check_device(&DeviceState {
                runtime_abi: abi,
                ..device()
            }),
            Ok(())
        );
    }
}

#[test]
fn declared_sizes_beyond_the_bound_are_rejected() {
    let mut m = model_manifest();
    m.components[0].size = artifact::MAX_COMPONENT_SIZE + 1;
    assert_eq!(m.to_vec().unwrap_err(), Error::TooLarge);
    // Hand-encode the oversized body, as an attacker would, and see the decoder refuse it.
    m.components[0].size = 0x00AB_CDEF;
    let body = m.to_vec().unwrap();
    let at = body
        .windows(4)
        .position(|w| w == [0x1a, 0x00, 0xAB, 0xCD])
        .unwrap();
    let mut big = body.clone();
    big[at + 1] = 0x7f; // 0x7FABCDEF bytes
    assert_eq!(Manifest::decode(&big).unwrap_err(), Error::TooLarge);
    // A bundle header announcing an enormous envelope is refused before anything is read.
    let mut bytes = model_bundle();
    bytes[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(Bundle::parse(&bytes).unwrap_err(), Error::TooLarge);
}

#[test]
fn root_rotation_needs_both_thresholds_and_the_next_version() {
    let v1 = root_v1(1);
    let trusted = TrustRoot::from_self_signed(&signed_root(&v1, &[1, 2])).unwrap();
    // v2 replaces root keys 1,2,3 with 4,5,6 (2 of 3).
    let v2 = TrustRoot {
        version: 2,
        root_keys: publics(&[4, 5, 6]),
        ..v1.clone()
    };
    let rotated = trusted.rotate(&signed_root(&v2, &[1, 2, 4, 5])).unwrap();
    assert_eq!(rotated, v2);
    assert_eq!(
        trusted.rotate(&signed_root(&v2, &[4, 5, 6])),
        Err(Error::RotationOldThreshold)
    );
    assert_eq!(
        trusted.rotate(&signed_root(&v2, &[1, 4])),
        Err(Error::RotationOldThreshold)
    );
    assert_eq!(
        trusted.rotate(&signed_root(&v2, &[1, 2, 3])),
        Err(Error::RotationNewThreshold)
    );
    assert_eq!(
        trusted.rotate(&signed_root(&v2, &[1, 2, 4])),
        Err(Error::RotationNewThreshold)
    );
    let v3 = TrustRoot {
        version: 3,
        ..v2.clone()
    };
    assert_eq!(
        trusted.rotate(&signed_root(&v3, &[1, 2, 4, 5])),
        Err(Error::RootVersion)
    );
    let v1_again = TrustRoot { version: 1, ..v2 };
    assert_eq!(
        trusted.rotate(&signed_root(&v1_again, &[1, 2, 4, 5])),
        Err(Error::RootVersion)
    );
    // A self-signed root below its own threshold is not trusted either.
    assert_eq!(
        TrustRoot::from_self_signed(&signed_root(&v1, &[1])),
        Err(Error::BelowThreshold)
    );
}

#[test]
fn roots_with_bad_thresholds_or_repeated_keys_are_refused() {
    let mut r = root_v1(1);
    r.root_threshold = 4;
    assert_eq!(r.to_vec().unwrap_err(), Error::InvalidValue);
    let mut r = root_v1(1);
    r.signing_threshold = 0;
    assert_eq!(r.to_vec().unwrap_err(), Error::InvalidValue);
    let mut r = root_v1(1);
    r.signing_keys = publics(&[10, 10]);
    assert_eq!(r.to_vec().unwrap_err(), Error::DuplicateKey);
}

#[test]
fn unknown_optional_fields_are_skipped_and_unknown_critical_ones_refused() {
    let body = model_manifest().to_vec().unwrap();
    assert_eq!(body[0], 0xa7, "7-entry map");
    // Key 99 with a nested value: an optional field from a newer writer.
    let mut optional = body.clone();
    optional[0] = 0xa8;
    optional.extend_from_slice(&[0x18, 99, 0x82, 0x01, 0xa1, 0x00, 0x40]);
    assert_eq!(Manifest::decode(&optional).unwrap(), model_manifest());
    // Key -1: a critical field this version does not know.
    let mut critical = body.clone();
    critical[0] = 0xa8;
    critical.extend_from_slice(&[0x20, 0x01]);
    assert_eq!(
        Manifest::decode(&critical).unwrap_err(),
        Error::UnknownCriticalField
    );
    // Key 7 again after key 7: duplicate keys never pass.
    let mut duplicate = body.clone();
    duplicate[0] = 0xa8;
    duplicate.extend_from_slice(&[0x07, 0xa1, 0x00, 0x00]);
    assert_eq!(Manifest::decode(&duplicate).unwrap_err(), Error::KeyOrder);
}

#[test]
fn inconsistent_releases_are_refused() {
    let mut m = model_manifest();
    m.components.pop(); // model without its validation set
    assert_eq!(m.to_vec().unwrap_err(), Error::InconsistentComponents);
    let mut m = model_manifest();
    m.policy = None;
    assert_eq!(m.to_vec().unwrap_err(), Error::MissingField);
    let mut m = model_manifest();
    m.components.swap(0, 1);
    assert_eq!(m.to_vec().unwrap_err(), Error::InconsistentComponents);
    let mut m = model_manifest();
    m.policy.as_mut().unwrap().min_accuracy_bp = 10_001;
    assert_eq!(m.to_vec().unwrap_err(), Error::InvalidValue);
    let mut m = firmware_manifest();
    m.boards = ["bad board"].into_iter().collect();
    assert_eq!(m.to_vec().unwrap_err(), Error::InvalidName);
    // A combined release whose model needs a later ABI than its firmware provides; an older
    // or the same one is consistent.
    let mut m = model_manifest();
    m.components
        .insert(0, firmware_manifest().components[0])
        .unwrap();
    m.runtime_abi = Some(1);
    m.required_abi = Some(2);
    assert_eq!(m.to_vec().unwrap_err(), Error::AbiMismatch);
    for (provided, needed) in [(2, 2), (2, 1)] {
        m.runtime_abi = Some(provided);
        m.required_abi = Some(needed);
        assert_eq!(Manifest::decode(&m.to_vec().unwrap()).unwrap(), m);
    }
}

#[test]
fn versions_parse_strictly() {
    assert_eq!("1.20.3".parse::<Version>(), Ok(Version::new(1, 20, 3)));
    for bad in [
        "",
        "1",
        "1.2",
        "1.2.3.4",
        "01.2.3",
        "1.-2.3",
        "1.2.x",
        "4294967296.0.0",
        " 1.2.3",
    ] {
        assert_eq!(bad.parse::<Version>(), Err(Error::InvalidValue), "{bad:?}");
    }
    assert!(Version::new(1, 10, 0) > Version::new(1, 9, 9));
}

#[test]
fn wrong_magic_format_and_flags_have_their_own_errors() {
    let good = model_bundle();
    let mut b = good.clone();
    b[0] = b'P';
    assert_eq!(Bundle::parse(&b).unwrap_err(), Error::BadMagic);
    let mut b = good.clone();
    b[8] = 2;
    assert_eq!(Bundle::parse(&b).unwrap_err(), Error::UnsupportedVersion);
    let mut b = good;
    b[10] = 1;
    assert_eq!(Bundle::parse(&b).unwrap_err(), Error::UnsupportedFlags);
}

/// A root rebuilt from its fields (a bootloader's baked-in constants) is the decoded root, and
/// the fields are checked as a decoder checks them.
#[test]
fn root_from_parts_is_the_decoded_root() {
    let root = root_v1(2);
    let raw = |keys: &[artifact::PublicKey]| keys.iter().map(|k| *k.as_bytes()).collect::<Vec<_>>();
    let (root_keys, signing_keys) = (raw(&root.root_keys), raw(&root.signing_keys));
    let parts = |root_threshold, signing: &[[u8; 32]], signing_threshold| {
        TrustRoot::from_parts(
            root.version,
            &root_keys,
            root_threshold,
            signing,
            signing_threshold,
        )
    };
    assert_eq!(
        parts(root.root_threshold, &signing_keys, 2),
        Ok(root.clone())
    );
    assert_eq!(parts(0, &signing_keys, 2), Err(Error::InvalidValue));
    assert_eq!(
        parts(
            root.root_threshold,
            &signing_keys,
            signing_keys.len() as u8 + 1
        ),
        Err(Error::InvalidValue)
    );
    let twice = [signing_keys[0], signing_keys[0]];
    assert_eq!(
        parts(root.root_threshold, &twice, 1),
        Err(Error::DuplicateKey)
    );
    let mut identity = [0u8; 32];
    identity[0] = 1;
    assert_eq!(
        parts(root.root_threshold, &[identity], 1),
        Err(Error::InvalidPublicKey)
    );
    let nine = [signing_keys[0]; 9];
    assert_eq!(parts(root.root_threshold, &nine, 1), Err(Error::TooMany));
}
