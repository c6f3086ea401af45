//! The DSP kernels (SMLAD over 16-bit lanes, emulated on the host) against the portable ones
//! and TensorFlow Lite's reference outputs: every operator's output bytes, every sample.

use model::kernels::Kernels;
use model::{Interpreter, Model, ValidationSet};

fn read(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every operator's output bytes of one inference with the given kernels.
fn trace(model: &Model<'_>, kernels: Kernels, input: &[u8]) -> (Vec<Vec<u8>>, Vec<u8>) {
    let mut arena = vec![0u8; model.arena_size];
    let mut interp = Interpreter::new(model, &mut arena)
        .unwrap()
        .with_kernels(kernels);
    interp.set_input(input).unwrap();
    let mut ops = Vec::new();
    interp
        .invoke_observed(|_, _, out| ops.push(out.to_vec()))
        .unwrap();
    let out = interp.output().unwrap().to_vec();
    (ops, out)
}

#[test]
fn dsp_and_portable_kernels_give_the_same_bytes_and_tflite_outputs() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");
    for name in ["good", "regressed", "slow", "per_tensor"] {
        let bytes = read(&format!("{dir}/{name}.tflite"));
        let set_bytes = read(&format!("{dir}/{name}.vset"));
        let reference = read(&format!("{dir}/{name}.ref"));
        let model = Model::parse(&bytes).unwrap();
        let set = ValidationSet::parse(&set_bytes).unwrap();
        for i in 0..set.count {
            let (_, input) = set.sample(i).unwrap();
            let (portable, _) = trace(&model, Kernels::Portable, input);
            let (dsp, out) = trace(&model, Kernels::Dsp, input);
            for (k, (p, d)) in portable.iter().zip(&dsp).enumerate() {
                assert_eq!(p, d, "{name} sample {i}: op {k} differs");
            }
            let c = set.classes;
            assert_eq!(out, reference[i * c..(i + 1) * c], "{name} sample {i}");
        }
    }
}

/// The operator fixtures and the benchmark models (when present) on pseudo-random inputs, op
/// by op.
#[test]
fn dsp_and_portable_kernels_agree_on_the_other_models() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for group in ["ops", "bench"] {
        let dir = format!("{}/fixtures/{group}", env!("CARGO_MANIFEST_DIR"));
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let checked = check_models(entries, &mut seed);
        // The benchmark models (kws, resnet8, vww, autoencoder) all load.
        if group == "bench" {
            assert!(checked >= 4, "{checked} benchmark models checked");
        }
    }
}

/// Returns how many models were compared.
fn check_models(entries: std::fs::ReadDir, seed: &mut u64) -> usize {
    let mut checked = 0;
    for entry in entries {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "tflite") {
            continue;
        }
        let bytes = read(path.to_str().unwrap());
        // Models with operators or types this runtime does not take yet are someone else's.
        let Ok(model) = Model::parse(&bytes) else {
            continue;
        };
        for _ in 0..3 {
            let mut arena = vec![0u8; model.arena_size];
            let len = Interpreter::new(&model, &mut arena)
                .unwrap()
                .input_mut()
                .unwrap()
                .len();
            let input: Vec<u8> = (0..len)
                .map(|_| {
                    *seed ^= *seed << 13;
                    *seed ^= *seed >> 7;
                    *seed ^= *seed << 17;
                    *seed as u8
                })
                .collect();
            let (portable, _) = trace(&model, Kernels::Portable, &input);
            let (dsp, _) = trace(&model, Kernels::Dsp, &input);
            for (k, (p, d)) in portable.iter().zip(&dsp).enumerate() {
                assert_eq!(p, d, "{}: op {k} differs", path.display());
            }
        }
        checked += 1;
    }
    checked
}
