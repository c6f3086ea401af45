//! Models and validation sets that must be refused, each with its own error, never a panic.

use model::{Error, Interpreter, Model, ValidationSet};
use proptest::prelude::*;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[test]
fn every_truncation_of_a_model_is_an_error() {
    let good = fixture("good.tflite");
    for len in 0..good.len() {
        assert!(Model::parse(&good[..len]).is_err(), "prefix {len} parsed");
    }
    assert_eq!(Model::parse(&good[..3]).unwrap_err(), Error::OutOfBounds);
    assert_eq!(
        Model::parse(&good[..good.len() / 2]).unwrap_err(),
        Error::OutOfBounds
    );
}

#[test]
fn offsets_out_of_range_are_refused() {
    let mut m = fixture("good.tflite");
    m[..4].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    assert_eq!(Model::parse(&m).unwrap_err(), Error::OutOfBounds);
    let mut m = fixture("good.tflite");
    let len = m.len() as u32;
    m[..4].copy_from_slice(&len.to_le_bytes());
    assert_eq!(Model::parse(&m).unwrap_err(), Error::OutOfBounds);
}

#[test]
fn not_a_tflite_file_is_refused() {
    let mut m = fixture("good.tflite");
    m[4..8].copy_from_slice(b"PNG!");
    assert_eq!(Model::parse(&m).unwrap_err(), Error::BadIdentifier);
    assert_eq!(
        Model::parse(&fixture("good.vset")).unwrap_err(),
        Error::BadIdentifier
    );
}

#[test]
fn an_unsupported_operator_is_refused() {
    // Real converter output with an int8 SQUARED_DIFFERENCE (builtin 99).
    let refusal = Model::parse_explained(&fixture("unsupported_op.tflite")).unwrap_err();
    assert_eq!(refusal.error, Error::UnsupportedOperator { code: 99 });
    let (index, code) = refusal.operator.unwrap();
    assert_eq!(code, 99);
    assert_eq!(
        refusal.to_string(),
        format!("operator {index}: unsupported operator SQUARED_DIFFERENCE (builtin code 99)")
    );
}

#[test]
fn a_float_model_is_refused_for_its_tensor_types() {
    assert_eq!(
        Model::parse(&fixture("float32.tflite")).unwrap_err(),
        Error::UnsupportedType
    );
}

#[test]
fn a_too_small_arena_is_refused_with_the_size_needed() {
    let bytes = fixture("good.tflite");
    let model = Model::parse(&bytes).unwrap();
    let mut arena = vec![0u8; model.arena_size - 1];
    assert_eq!(
        Interpreter::new(&model, &mut arena).unwrap_err(),
        Error::ArenaTooSmall {
            needed: model.arena_size
        }
    );
    let mut arena = vec![0u8; model.arena_size];
    let mut interp = Interpreter::new(&model, &mut arena).unwrap();
    assert_eq!(interp.set_input(&[0; 63]).unwrap_err(), Error::InputLength);
}

#[test]
fn arena_plan_reuses_memory_across_lifetimes() {
    let bytes = fixture("good.tflite");
    let model = Model::parse(&bytes).unwrap();
    let activations: usize = model
        .tensors
        .iter()
        .filter(|t| t.data.is_none())
        .map(|t| t.len)
        .sum();
    let per_channel = model::graph::CHANNEL_PARAM_BYTES;
    let params: usize = model.ops.iter().map(|o| o.param_bytes()).sum();
    // All activations together are 1 316 bytes; the plan needs only the peak pair, the two
    // 8x8x8 tensors around the depthwise convolution, then 42 channels of parameters
    // (multiplier, shift, folded bias, short requantization path) and the softmax's table of
    // exponentials (256 words), then the DSP kernels' scratch, as much as the largest call takes: the last CONV_2D's tile of four 3x3x8
    // patches and 4 bytes of slack (292), its input padded and 4 bytes of slack (132), four
    // channels' weights widened (576) and a word's alignment (3).
    assert_eq!(activations, 1_316);
    assert_eq!(model.scratch_offset - params, 1_024);
    assert_eq!(
        params,
        42 * per_channel + model::kernels::softmax::TABLE_BYTES
    );
    assert_eq!(per_channel, 16);
    assert_eq!(model.arena_size - model.scratch_offset, 1_004); // 1 003, aligned
    let scratch = model.ops.iter().map(model::kernels::dsp::scratch_bytes);
    assert_eq!(scratch.collect::<Vec<_>>(), [975, 398, 0, 1003, 0, 35, 0]);
}

#[test]
fn malformed_validation_sets_are_refused() {
    let good = fixture("good.vset");
    for len in [0, 19, 20, good.len() - 1] {
        assert_eq!(
            ValidationSet::parse(&good[..len]).unwrap_err(),
            Error::BadValidationSet,
            "{len}"
        );
    }
    let mut longer = good.clone();
    longer.push(0);
    assert_eq!(
        ValidationSet::parse(&longer).unwrap_err(),
        Error::BadValidationSet
    );
    let mut bad_label = good.clone();
    bad_label[20] = 10; // 10 classes: labels 0..=9
    assert_eq!(
        ValidationSet::parse(&bad_label).unwrap_err(),
        Error::BadValidationSet
    );
    let mut huge = good;
    huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(
        ValidationSet::parse(&huge).unwrap_err(),
        Error::BadValidationSet
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    /// Any corruption of a real model, of every operator this runtime has, parses to an error
    /// or runs to an output: never a panic.
    #[test]
    fn corrupted_models_never_panic(
        which in any::<prop::sample::Index>(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6)
    ) {
        const MODELS: [&str; 12] = [
            "good.tflite",
            "ops/add_broadcast.tflite",
            "ops/concatenation.tflite",
            "ops/strided_slice.tflite",
            "ops/mean_keepdims.tflite",
            "ops/hard_swish.tflite",
            "ops/logistic.tflite",
            "ops/float_io.tflite",
            "ops/quantize_int8.tflite",
            "ops/pad_spatial.tflite",
            "ops/mul_broadcast.tflite",
            "ops/leaky_relu.tflite",
        ];
        let mut m = fixture(MODELS[which.index(MODELS.len())]);
        let len = m.len();
        for (at, v) in &edits {
            m[at.index(len)] = *v;
        }
        if let Ok(model) = Model::parse(&m) {
            if model.arena_size <= 1 << 20 {
                let mut arena = vec![0u8; model.arena_size];
                if let Ok(mut interp) = Interpreter::new(&model, &mut arena) {
                    interp.input_mut().unwrap().fill(0x5a);
                    let _ = interp.invoke();
                }
            }
        }
    }
}
