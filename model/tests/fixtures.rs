//! The committed fixtures (trained on scikit-learn's digits, converted by TensorFlow) run here
//! and match TensorFlow Lite's own outputs, sample by sample.

use model::graph::OpKind;
use model::{Interpreter, Model, ValidationSet, judge, validation};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

struct Outcome {
    correct: usize,
    samples: usize,
    max_diff: i32,
    argmax_mismatches: usize,
}

fn run_against_reference(name: &str) -> Outcome {
    let bytes = fixture(&format!("{name}.tflite"));
    let set_bytes = fixture(&format!("{name}.vset"));
    let reference = fixture(&format!("{name}.ref"));
    let model = Model::parse(&bytes).unwrap();
    let set = ValidationSet::parse(&set_bytes).unwrap();
    let mut arena = vec![0u8; model.arena_size];
    let mut interp = Interpreter::new(&model, &mut arena).unwrap();
    let classes = set.classes;
    let mut out = Outcome {
        correct: 0,
        samples: set.count,
        max_diff: 0,
        argmax_mismatches: 0,
    };
    for i in 0..set.count {
        let (label, input) = set.sample(i).unwrap();
        interp.set_input(input).unwrap();
        interp.invoke().unwrap();
        let got: Vec<i8> = interp.output().unwrap().iter().map(|&b| b as i8).collect();
        let want: Vec<i8> = reference[i * classes..(i + 1) * classes]
            .iter()
            .map(|&b| b as i8)
            .collect();
        for (g, w) in got.iter().zip(&want) {
            out.max_diff = out.max_diff.max((i32::from(*g) - i32::from(*w)).abs());
        }
        let want_argmax = want
            .iter()
            .enumerate()
            .fold(0, |b, (j, &v)| if v > want[b] { j } else { b });
        if interp.argmax().unwrap() != want_argmax {
            out.argmax_mismatches += 1;
        }
        out.correct += usize::from(interp.argmax().unwrap() == label);
    }
    out
}

#[test]
fn every_fixture_matches_tensorflow_lite_sample_by_sample() {
    for name in ["good", "regressed", "slow", "per_tensor"] {
        let o = run_against_reference(name);
        // The issue allows one quantization step; the runtime is in fact bit-exact.
        assert_eq!(
            o.max_diff, 0,
            "{name}: output differs from TFLite by {}",
            o.max_diff
        );
        assert_eq!(
            o.argmax_mismatches, 0,
            "{name}: predicted class differs from TFLite"
        );
    }
}

#[test]
fn fixture_accuracies_are_what_tensorflow_lite_measured() {
    let json = String::from_utf8(fixture("reference.json")).unwrap();
    for (name, low, high) in [
        ("good", 9_000, 10_000),
        ("regressed", 0, 8_000),
        ("slow", 9_000, 10_000),
    ] {
        let o = run_against_reference(name);
        let bp = o.correct * 10_000 / o.samples;
        // reference.json holds TFLite's accuracy rounded to 4 places: the same count.
        let tflite = json.split(&format!("\"{name}\"")).nth(1).unwrap();
        let acc: f64 = tflite
            .split("\"tflite_int8_accuracy\": ")
            .nth(1)
            .unwrap()
            .split(',')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            o.correct,
            (acc * o.samples as f64).round() as usize,
            "{name}"
        );
        assert!((low..=high).contains(&bp), "{name}: {bp} bp");
    }
    let good = run_against_reference("good");
    let bad = run_against_reference("regressed");
    assert!(
        good.correct - bad.correct >= good.samples / 10,
        "regressed is at least 10 points worse"
    );
}

#[test]
fn fixtures_use_every_supported_operator_and_fit_the_budget() {
    let mut seen = std::collections::BTreeSet::new();
    for name in ["good", "regressed", "slow"] {
        let bytes = fixture(&format!("{name}.tflite"));
        assert!(bytes.len() <= 256 * 1024, "{name} is {} bytes", bytes.len());
        let m = Model::parse(&bytes).unwrap();
        for op in &m.ops {
            seen.insert(op.kind.name());
        }
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        [
            "AVERAGE_POOL_2D",
            "CONV_2D",
            "DEPTHWISE_CONV_2D",
            "FULLY_CONNECTED",
            "MAX_POOL_2D",
            "RESHAPE",
            "SOFTMAX"
        ]
    );
    let (good_bytes, slow_bytes) = (fixture("good.tflite"), fixture("slow.tflite"));
    let good = Model::parse(&good_bytes).unwrap();
    let slow = Model::parse(&slow_bytes).unwrap();
    assert_eq!(good.macs(), 13_984);
    assert_eq!(slow.macs(), 460_416);
    assert!(matches!(good.ops[0].kind, OpKind::Conv2d(_)));
}

#[test]
fn per_tensor_fixture_has_one_scale_per_weight_tensor() {
    let bytes = fixture("per_tensor.tflite");
    let m = Model::parse(&bytes).unwrap();
    let weights: Vec<_> = m.ops.iter().filter_map(|op| op.weights).collect();
    assert_eq!(weights.len(), 4);
    for w in weights {
        assert!(
            m.tensors[w].channel_scales.is_empty(),
            "tensor {w} is per-channel"
        );
    }
    let good_bytes = fixture("good.tflite");
    let good = Model::parse(&good_bytes).unwrap();
    assert!(
        good.ops
            .iter()
            .filter_map(|op| op.weights)
            .all(|w| !good.tensors[w].channel_scales.is_empty())
    );
}

#[test]
fn runner_reports_accuracy_and_latency_percentiles_from_the_clock() {
    let bytes = fixture("good.tflite");
    let set_bytes = fixture("good.vset");
    let model = Model::parse(&bytes).unwrap();
    let set = ValidationSet::parse(&set_bytes).unwrap();
    let mut arena = vec![0u8; model.arena_size];
    let mut interp = Interpreter::new(&model, &mut arena).unwrap();
    // A fake clock: inference k takes (k % 100 + 1) ms, so percentiles are known exactly.
    let mut calls = 0u64;
    let mut t = 0u64;
    let report = validation::run(&mut interp, &set, || {
        calls += 1;
        if calls % 2 == 0 {
            t += ((calls / 2 - 1) % 100 + 1) * 1_000_000;
        }
        t
    })
    .unwrap();
    assert_eq!(report.samples, 360);
    assert_eq!(
        report.correct as usize,
        run_against_reference("good").correct
    );
    assert_eq!(report.max_us, 100_000);
    // 360 samples: three cycles of 1..=100 ms, then 1..=60 ms. At most v ms (v <= 60): 4v
    // samples, so rank 180 (p50) is 45 ms; at most 99 ms: 357 samples = rank 357 (p99).
    assert_eq!(report.p50_us, 45_000);
    assert_eq!(report.p99_us, 99_000);
    let policy = artifact::Policy {
        min_accuracy_bp: 9_000,
        max_p99_latency_us: 10_000,
        max_accuracy_drop_bp: 200,
    };
    let v = judge(&report, &policy, Some(report.accuracy_bp + 100));
    assert!(v.accuracy_ok && !v.latency_ok && v.drop_ok && !v.passed());
    let v = judge(&report, &policy, Some(report.accuracy_bp + 201));
    assert!(!v.drop_ok);
}

#[test]
fn a_validation_set_for_another_model_shape_is_refused() {
    let bytes = fixture("good.tflite");
    let model = Model::parse(&bytes).unwrap();
    let mut arena = vec![0u8; model.arena_size];
    let mut interp = Interpreter::new(&model, &mut arena).unwrap();
    let mut set_bytes = fixture("good.vset");
    // Same samples, declared with 11 classes.
    set_bytes[16] = 11;
    let set = ValidationSet::parse(&set_bytes).unwrap();
    assert_eq!(
        validation::run(&mut interp, &set, || 0).unwrap_err(),
        model::Error::ValidationSetMismatch
    );
}
