//! Property tests: manifests round-trip byte for byte, any mutation of a signed bundle is
//! refused, and arbitrary bytes never panic any decoder.

mod common;

use artifact::{
    Bundle, Component, ComponentKind, Envelope, Manifest, Policy, TrustRoot, Version, bundle,
};
use common::*;
use proptest::prelude::*;

const NAME_CHARS: &str = "[A-Za-z0-9._-]{1,32}";

fn version() -> impl Strategy<Value = Version> {
    (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(a, b, c)| Version::new(a, b, c))
}

fn component(kind: ComponentKind) -> impl Strategy<Value = Component<'static>> {
    (
        NAME_CHARS,
        version(),
        0..=artifact::MAX_COMPONENT_SIZE,
        any::<[u8; 32]>(),
    )
        .prop_map(move |(name, version, size, digest)| Component {
            kind,
            // Leaked: the manifest borrows its names, as it does from a decode buffer.
            name: Box::leak(name.into_boxed_str()),
            version,
            size,
            digest,
        })
}

fn manifest() -> impl Strategy<Value = Manifest<'static>> {
    let boards = prop::collection::btree_set(NAME_CHARS, 1..=artifact::MAX_BOARDS);
    let policy = (0..=10_000u16, 1..=u32::MAX, 0..=10_000u16).prop_map(|(a, l, d)| Policy {
        min_accuracy_bp: a,
        max_p99_latency_us: l,
        max_accuracy_drop_bp: d,
    });
    (
        any::<u64>(),
        boards,
        0..3u8,
        component(ComponentKind::Firmware),
        component(ComponentKind::Model),
        component(ComponentKind::ValidationSet),
        any::<u32>(),
        0..=artifact::MAX_ARENA_SIZE,
        policy,
    )
        .prop_map(
            |(counter, boards, shape, fw, model, valset, abi, arena, policy)| {
                let has_fw = shape != 1;
                let has_model = shape != 0;
                let mut components = heapless::Vec::new();
                if has_fw {
                    components.push(fw).unwrap();
                }
                if has_model {
                    components.push(model).unwrap();
                    components.push(valset).unwrap();
                }
                Manifest {
                    security_counter: counter,
                    boards: boards
                        .into_iter()
                        .map(|b| &*Box::leak(b.into_boxed_str()))
                        .collect(),
                    components,
                    runtime_abi: has_fw.then_some(abi),
                    required_abi: has_model.then_some(abi),
                    arena_size: has_model.then_some(arena),
                    policy: has_model.then_some(policy),
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn manifest_round_trips_byte_for_byte(m in manifest()) {
        let bytes = m.to_vec().unwrap();
        let back = Manifest::decode(&bytes).unwrap();
        prop_assert_eq!(&back, &m);
        prop_assert_eq!(&back.to_vec().unwrap(), &bytes);
    }

    #[test]
    fn any_mutation_of_a_signed_bundle_is_rejected(
        edits in prop::collection::vec((any::<prop::sample::Index>(), 1..=255u8), 1..4)
    ) {
        let root = TrustRoot::from_self_signed(&signed_root(&root_v1(2), &[1, 2])).unwrap();
        let good = model_bundle();
        let mut bad = good.clone();
        for (at, xor) in &edits {
            bad[at.index(good.len())] ^= xor;
        }
        prop_assume!(bad != good);
        prop_assert!(bundle::open(&bad, &root).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic_a_decoder(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let root = root_v1(1);
        let _ = Manifest::decode(&bytes);
        let _ = Envelope::decode(&bytes);
        let _ = TrustRoot::decode_body(&bytes);
        let _ = TrustRoot::from_self_signed(&bytes);
        let _ = root.rotate(&bytes);
        let _ = root.verify_manifest(&bytes);
        let _ = Bundle::parse(&bytes).and_then(|b| b.verify(&root));
    }

    #[test]
    fn cut_or_extended_envelopes_are_rejected(cut in 0usize..2000, extra in prop::collection::vec(any::<u8>(), 1..8)) {
        let root = TrustRoot::from_self_signed(&signed_root(&root_v1(1), &[1, 2])).unwrap();
        let env = sign_manifest(&model_manifest(), &[10]);
        let cut = cut % env.len();
        prop_assert!(root.verify_manifest(&env[..cut]).is_err());
        let mut longer = env.clone();
        longer.extend_from_slice(&extra);
        prop_assert_eq!(root.verify_manifest(&longer).unwrap_err(), artifact::Error::TrailingBytes);
    }
}
