//! Every operator fixture (model/fixtures/ops, real converter output) gives exactly the bytes
//! TensorFlow Lite's reference kernels gave for the same inputs.

use model::{Interpreter, Model};
use std::path::PathBuf;

fn dir(group: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(group)
}

/// The cases of a `.io` file: (input bytes, output bytes) as the interpreter sees them.
pub fn cases(io: &[u8], input_bytes: usize, output_bytes: usize) -> Vec<(&[u8], &[u8])> {
    let count = u32::from_le_bytes(io[..4].try_into().unwrap()) as usize;
    let step = input_bytes + output_bytes;
    assert_eq!(io.len(), 4 + count * step, "io file length");
    (0..count)
        .map(|i| {
            let at = 4 + i * step;
            (&io[at..at + input_bytes], &io[at + input_bytes..at + step])
        })
        .collect()
}

/// Runs every case of `name` and returns the number of output bytes that differ.
fn mismatches(group: &str, name: &str) -> (usize, usize) {
    let bytes = std::fs::read(dir(group).join(format!("{name}.tflite"))).unwrap();
    let io = std::fs::read(dir(group).join(format!("{name}.io"))).unwrap();
    let model = Model::parse_explained(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut arena = vec![0u8; model.arena_size];
    let mut interp = Interpreter::new(&model, &mut arena).unwrap();
    let in_bytes = interp.input_mut().unwrap().len();
    let out_bytes = interp.output().unwrap().len();
    let mut bad = 0;
    let mut total = 0;
    for (input, want) in cases(&io, in_bytes, out_bytes) {
        interp.set_input(input).unwrap();
        interp.invoke().unwrap();
        let got = interp.output().unwrap();
        bad += got.iter().zip(want).filter(|(a, b)| a != b).count();
        total += want.len();
    }
    (bad, total)
}

fn names(group: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir(group))
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            (p.extension()? == "tflite").then(|| p.file_stem().unwrap().to_string_lossy().into())
        })
        .collect();
    v.sort();
    v
}

#[test]
fn every_operator_fixture_matches_tflite_byte_for_byte() {
    let mut failed = Vec::new();
    let all = names("ops");
    assert!(all.len() >= 20, "operator fixtures: {all:?}");
    for name in &all {
        let (bad, total) = mismatches("ops", name);
        if bad != 0 {
            failed.push(format!("{name}: {bad} of {total} bytes differ"));
        }
    }
    assert!(failed.is_empty(), "{failed:#?}");
}

#[test]
fn models_need_the_abi_of_their_newest_operator() {
    let abi = |group: &str, name: &str| {
        let bytes = std::fs::read(dir(group).join(format!("{name}.tflite"))).unwrap();
        Model::parse(&bytes).unwrap().required_abi()
    };
    assert_eq!(abi(".", "good"), 1);
    assert_eq!(abi(".", "slow"), 1);
    assert_eq!(abi("ops", "add"), 2);
    assert_eq!(abi("ops", "float_io"), 2);
    assert_eq!(model::RUNTIME_ABI, 2);
}

/// No two tensors that are live at once share arena bytes, in every fixture: a tensor read by
/// two operators (the residual branch of an ADD) stays live until its last reader.
#[test]
fn arena_plans_never_overlap_live_tensors() {
    let mut checked = 0;
    for (group, name) in names("ops")
        .into_iter()
        .map(|n| ("ops", n))
        .chain(["good", "slow"].map(|n| (".", n.to_string())))
    {
        let bytes = std::fs::read(dir(group).join(format!("{name}.tflite"))).unwrap();
        let m = Model::parse(&bytes).unwrap();
        let n = m.tensors.len();
        let (mut first, mut last) = (vec![usize::MAX; n], vec![0; n]);
        let mut live = |t: usize, at: usize| {
            first[t] = first[t].min(at);
            last[t] = last[t].max(at);
        };
        live(m.input, 0);
        live(m.output, m.ops.len());
        for (i, op) in m.ops.iter().enumerate() {
            for k in 0..op.n_inputs {
                if let Some(t) = op.input_at(k).filter(|&t| m.tensors[t].data.is_none()) {
                    live(t, i);
                }
            }
            live(op.output, i);
        }
        let span = |t: usize| (m.offsets[t], m.offsets[t] + m.tensors[t].bytes());
        for a in 0..n {
            for b in a + 1..n {
                if first[a] == usize::MAX || first[b] == usize::MAX {
                    continue;
                }
                let together = first[a] <= last[b] && first[b] <= last[a];
                let ((a0, a1), (b0, b1)) = (span(a), span(b));
                assert!(
                    !(together && a0 < b1 && b0 < a1),
                    "{name}: tensors {a} and {b} overlap while both live"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 100, "{checked} pairs");
}

/// A float32 validation set (input type 0) runs a model with float32 input and output; an int8
/// set against it is a mismatch.
#[test]
fn float_models_validate_on_float_sets() {
    use model::{ValidationSet, validation};
    let bytes = std::fs::read(dir("ops").join("float_io.tflite")).unwrap();
    let io = std::fs::read(dir("ops").join("float_io.io")).unwrap();
    let model = Model::parse(&bytes).unwrap();
    let (n_in, n_out) = (model.input_len(), model.output_len());
    let cases = cases(&io, n_in * 4, n_out * 4);
    let argmax = |out: &[u8]| {
        let v: Vec<f32> = out
            .chunks(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        (0..v.len()).fold(0, |best, i| if v[i] > v[best] { i } else { best })
    };
    let header = |ty: u8| {
        let mut h = b"VSET".to_vec();
        h.extend([1, ty, 0, 0]);
        h.extend((cases.len() as u32).to_le_bytes());
        h.extend((n_in as u32).to_le_bytes());
        h.extend((n_out as u16).to_le_bytes());
        h.extend([0, 0]);
        h.extend(cases.iter().map(|(_, out)| argmax(out) as u8));
        h
    };
    let mut set = header(0);
    for (input, _) in &cases {
        set.extend_from_slice(input);
    }
    let set = ValidationSet::parse(&set).unwrap();
    let mut arena = vec![0u8; model.arena_size];
    let mut interp = Interpreter::new(&model, &mut arena).unwrap();
    let mut t = 0;
    let report = validation::run(&mut interp, &set, || {
        t += 1000;
        t
    })
    .unwrap();
    assert_eq!(
        (report.samples, report.correct),
        (cases.len() as u32, cases.len() as u32)
    );

    let mut int8 = header(9);
    int8.resize(int8.len() + cases.len() * n_in, 0);
    let int8 = ValidationSet::parse(&int8).unwrap();
    assert_eq!(
        validation::run(&mut interp, &int8, || 0).unwrap_err(),
        model::Error::ValidationSetMismatch
    );
}

/// The four MLPerf Tiny shaped benchmark models parse (MobileNetV1's 89 tensors among them) and
/// give TFLite's bytes.
#[test]
fn benchmark_models_match_tflite_byte_for_byte() {
    let all = names("bench");
    assert_eq!(all, ["autoencoder", "kws", "resnet8", "vww"]);
    for name in &all {
        let (bad, total) = mismatches("bench", name);
        assert!(total > 0, "{name}: no reference cases");
        assert_eq!(bad, 0, "{name}: {bad} of {total} output bytes differ");
    }
}
