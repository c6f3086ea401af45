//! `fleetctl keys` and `fleetctl artifact` run as a user runs them: keys to a verified bundle.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fleetctl(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fleetctl"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run fleetctl")
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = fleetctl(dir, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../model/fixtures")
        .join(name)
}

/// Keys r1..r3 (root), s1, s2 (signing), a root needing 2 of 3 and 2 of 2, and payload files.
fn setup() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().to_owned();
    for n in ["r1", "r2", "r3", "s1", "s2"] {
        ok(&d, &["keys", "generate", "--out", "keys", "--name", n]);
    }
    ok(
        &d,
        &[
            "keys",
            "root",
            "--threshold",
            "2",
            "--root-key",
            "keys/r1.pub",
            "--root-key",
            "keys/r2.pub",
            "--root-key",
            "keys/r3.pub",
            "--signing-key",
            "keys/s1.pub",
            "--signing-key",
            "keys/s2.pub",
            "--signing-threshold",
            "2",
            "--sign-with",
            "keys/r1.key",
            "--sign-with",
            "keys/r3.key",
            "--out",
            "root.cbor",
        ],
    );
    // A model the runtime loads and its validation set: `sign` parses both before signing.
    std::fs::copy(fixture("good.tflite"), d.join("model.tflite")).unwrap();
    std::fs::copy(fixture("good.vset"), d.join("val.bin")).unwrap();
    std::fs::write(d.join("fw.bin"), vec![0xAAu8; 4096]).unwrap();
    (tmp, d)
}

const SIGN_MODEL: &[&str] = &[
    "artifact",
    "sign",
    "--kind",
    "model",
    "--name",
    "vibration",
    "--version",
    "1.4.0",
    "--security-counter",
    "12",
    "--board",
    "mps2-an386",
    "--board",
    "nrf52840-dk",
    "--model",
    "model.tflite",
    "--validation-set",
    "val.bin",
    "--min-accuracy",
    "0.9",
    "--max-latency-us",
    "8000",
    "--max-accuracy-drop",
    "2%",
    "--key",
    "keys/s1.key",
    "--key",
    "keys/s2.key",
    "--out",
    "m.bundle",
];

#[test]
fn keys_generate_writes_a_private_secret_and_never_prints_it() {
    let tmp = tempfile::tempdir().unwrap();
    let out = ok(
        tmp.path(),
        &["keys", "generate", "--out", "k", "--name", "ops"],
    );
    let secret = std::fs::read_to_string(tmp.path().join("k/ops.key")).unwrap();
    let mode = std::fs::metadata(tmp.path().join("k/ops.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let body: String = secret.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(!out.contains(&body), "secret key printed: {out}");
    assert!(out.starts_with("key id "), "{out}");
    assert!(tmp.path().join("k/ops.pub").exists());
    // A second generate under the same name keeps the first key.
    let again = fleetctl(
        tmp.path(),
        &["keys", "generate", "--out", "k", "--name", "ops"],
    );
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("refusing to overwrite"));
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("k/ops.key")).unwrap(),
        secret
    );
}

#[test]
fn signed_model_bundle_verifies_and_inspects() {
    let (_tmp, d) = setup();
    let out = ok(&d, SIGN_MODEL);
    assert!(
        out.starts_with("model vibration 1.4.0 (counter 12; boards mps2-an386, nrf52840-dk)"),
        "{out}"
    );
    let out = ok(
        &d,
        &["artifact", "verify", "--root", "root.cbor", "m.bundle"],
    );
    assert!(out.starts_with("valid: model vibration 1.4.0"), "{out}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&d, &["artifact", "inspect", "m.bundle", "--json"])).unwrap();
    assert_eq!(json["security_counter"], 12);
    assert_eq!(json["components"][0]["kind"], "model");
    assert_eq!(
        json["components"][0]["size"],
        std::fs::metadata(fixture("good.tflite")).unwrap().len()
    );
    assert_eq!(json["components"][1]["kind"], "validation-set");
    assert_eq!(json["components"][1]["digest_ok"], true);
    assert_eq!(json["policy"]["min_accuracy"], 0.9);
    assert_eq!(json["policy"]["max_p99_latency_us"], 8000);
    assert_eq!(json["policy"]["max_accuracy_drop"], 0.02);
    assert_eq!(json["signatures"].as_array().unwrap().len(), 2);
    let text = ok(&d, &["artifact", "inspect", "m.bundle"]);
    assert!(
        text.contains("policy: accuracy >= 90.00%, p99 latency <= 8000 us"),
        "{text}"
    );
}

#[test]
fn sign_refuses_a_model_the_runtime_cannot_load_and_names_why() {
    let (_tmp, d) = setup();
    let sign_with = |model: &str, set: &str, extra: &[&str]| {
        let mut args: Vec<&str> = SIGN_MODEL.to_vec();
        let at = args.iter().position(|a| *a == "model.tflite").unwrap();
        args[at] = model;
        args[at + 2] = set;
        args.extend(extra);
        let out = fleetctl(&d, &args);
        assert_eq!(out.status.code(), Some(1), "{model}");
        assert!(!d.join("m.bundle").exists(), "{model}: nothing is written");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{err}");
        err
    };
    for name in ["unsupported_op.tflite", "float32.tflite"] {
        std::fs::copy(fixture(name), d.join(name)).unwrap();
    }
    // An operator the runtime does not implement: named.
    let err = sign_with("unsupported_op.tflite", "val.bin", &[]);
    assert!(
        err.starts_with(
            "fleetctl: error: unsupported_op.tflite: the model runtime cannot load this model: operator 2: unsupported operator SQUARED_DIFFERENCE"
        ),
        "{err}"
    );
    // Not quantized.
    let err = sign_with("float32.tflite", "val.bin", &[]);
    assert!(
        err.starts_with(
            "fleetctl: error: float32.tflite: the model runtime cannot load this model: "
        ),
        "{err}"
    );
    // A bound: more arena than the release declares.
    let err = sign_with("model.tflite", "val.bin", &["--arena-size", "1024"]);
    assert!(
        err.starts_with("fleetctl: error: model.tflite: needs ")
            && err.contains("bytes of tensor arena, more than --arena-size 1024"),
        "{err}"
    );
    // An operator of runtime ABI 2 in a release declared for ABI 1.
    std::fs::copy(fixture("ops/add.tflite"), d.join("add.tflite")).unwrap();
    let err = sign_with("add.tflite", "val.bin", &["--runtime-abi", "1"]);
    assert!(
        err.starts_with("fleetctl: error: add.tflite: needs model-runtime ABI 2")
            && err.contains("more than --runtime-abi 1"),
        "{err}"
    );
    // A validation set that is not one, and one for another model.
    std::fs::write(d.join("junk.vset"), [1u8; 500]).unwrap();
    let err = sign_with("model.tflite", "junk.vset", &[]);
    assert!(
        err.starts_with("fleetctl: error: junk.vset: not a validation set: bad_validation_set"),
        "{err}"
    );
    let mut other = std::fs::read(fixture("good.vset")).unwrap();
    other[16] = 12; // twelve classes where the model gives ten
    std::fs::write(d.join("other.vset"), other).unwrap();
    let err = sign_with("model.tflite", "other.vset", &[]);
    assert!(
        err.contains("other.vset: int8 inputs of 64 values and 12 classes, but the model takes int8 inputs of 64 values and gives 10 outputs"),
        "{err}"
    );
}

/// A validation set of one all-zero int8 sample for `model` (shaped as its input and output).
fn zero_set(model: &[u8]) -> Vec<u8> {
    let m = model::Model::parse(model).unwrap();
    let mut set = b"VSET".to_vec();
    set.extend([1, 9, 0, 0]);
    set.extend(1u32.to_le_bytes());
    set.extend((m.input_len() as u32).to_le_bytes());
    set.extend((m.output_len() as u16).to_le_bytes());
    set.extend([0, 0, 0]);
    set.extend(vec![0u8; m.input_len()]);
    set
}

#[test]
fn sign_requires_the_models_own_runtime_abi_unless_told_a_later_one() {
    let (_tmp, d) = setup();
    let resnet8 = std::fs::read(fixture("bench/resnet8.tflite")).unwrap();
    std::fs::write(d.join("resnet8.tflite"), &resnet8).unwrap();
    std::fs::write(d.join("resnet8.vset"), zero_set(&resnet8)).unwrap();
    let arena = model::Model::parse(&resnet8)
        .unwrap()
        .arena_size
        .to_string();
    let required = |model: &str, set: &str, extra: &[&str]| {
        let mut args: Vec<&str> = SIGN_MODEL.to_vec();
        let at = args.iter().position(|a| *a == "model.tflite").unwrap();
        args[at] = model;
        args[at + 2] = set;
        args.extend(extra);
        ok(&d, &args);
        let json: serde_json::Value =
            serde_json::from_str(&ok(&d, &["artifact", "inspect", "m.bundle", "--json"])).unwrap();
        std::fs::remove_file(d.join("m.bundle")).unwrap();
        json["required_abi"].clone()
    };
    // Without --runtime-abi: the model's own (the digits network 1, ResNet-8's ADDs 2).
    assert_eq!(required("model.tflite", "val.bin", &[]), 1);
    let big = ["--arena-size", arena.as_str()];
    assert_eq!(required("resnet8.tflite", "resnet8.vset", &big), 2);
    // A later ABI may be asked for; a lower one is refused.
    assert_eq!(
        required("model.tflite", "val.bin", &["--runtime-abi", "2"]),
        2
    );
    let mut args: Vec<&str> = SIGN_MODEL.to_vec();
    let at = args.iter().position(|a| *a == "model.tflite").unwrap();
    args[at] = "resnet8.tflite";
    args[at + 2] = "resnet8.vset";
    args.extend(big);
    args.extend(["--runtime-abi", "1"]);
    let out = fleetctl(&d, &args);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "fleetctl: error: resnet8.tflite: needs model-runtime ABI 2 (its operators or float32 \
         input/output), more than --runtime-abi 1\n"
    );
    assert!(!d.join("m.bundle").exists());
}

#[test]
fn verify_names_the_reason_in_one_line_and_exits_1() {
    let (_tmp, d) = setup();
    ok(&d, SIGN_MODEL);
    let good = std::fs::read(d.join("m.bundle")).unwrap();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            {
                let mut b = good.clone();
                let n = b.len();
                b[n - 1] ^= 1;
                b
            },
            "digest_mismatch",
        ),
        (good[..good.len() - 10].to_vec(), "truncated"),
        (
            {
                let mut b = good.clone();
                b[0] = 0;
                b
            },
            "bad_magic",
        ),
    ];
    for (bytes, code) in cases {
        std::fs::write(d.join("bad.bundle"), bytes).unwrap();
        let out = fleetctl(
            &d,
            &["artifact", "verify", "--root", "root.cbor", "bad.bundle"],
        );
        assert_eq!(out.status.code(), Some(1));
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert_eq!(stdout.lines().count(), 1, "{stdout}");
        assert!(
            stdout.starts_with("invalid: bad.bundle: ") && stdout.contains(code),
            "{stdout}"
        );
    }
    // One signature where the root wants two.
    let mut args = SIGN_MODEL.to_vec();
    let at = args.iter().position(|a| *a == "keys/s2.key").unwrap();
    args.drain(at - 1..=at);
    ok(&d, &args);
    let out = fleetctl(
        &d,
        &["artifact", "verify", "--root", "root.cbor", "m.bundle"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("below_threshold"));
    // Wrong board.
    ok(&d, SIGN_MODEL);
    let out = fleetctl(
        &d,
        &[
            "artifact",
            "verify",
            "--root",
            "root.cbor",
            "m.bundle",
            "--board",
            "stm32f4",
        ],
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("wrong_board"));
    // Signed by a key the root does not list.
    ok(
        &d,
        &["keys", "generate", "--out", "keys", "--name", "rogue"],
    );
    let mut args = SIGN_MODEL.to_vec();
    for a in args.iter_mut() {
        if *a == "keys/s2.key" {
            *a = "keys/rogue.key";
        }
    }
    ok(&d, &args);
    let out = fleetctl(
        &d,
        &["artifact", "verify", "--root", "root.cbor", "m.bundle"],
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("unknown_key"));
}

#[test]
fn firmware_bundle_and_a_root_rotation() {
    let (_tmp, d) = setup();
    ok(
        &d,
        &[
            "artifact",
            "sign",
            "--kind",
            "firmware",
            "--name",
            "agent",
            "--version",
            "2.0.1",
            "--security-counter",
            "3",
            "--board",
            "mps2-an386",
            "--payload",
            "fw.bin",
            "--key",
            "keys/s1.key",
            "--key",
            "keys/s2.key",
            "--root",
            "root.cbor",
            "--out",
            "fw.bundle",
        ],
    );
    ok(
        &d,
        &["artifact", "verify", "--root", "root.cbor", "fw.bundle"],
    );
    ok(&d, &["keys", "generate", "--out", "keys", "--name", "r4"]);
    let rotate = |signers: &[&str], out: &str| {
        let mut args = vec![
            "keys",
            "root",
            "--version",
            "2",
            "--threshold",
            "2",
            "--previous",
            "root.cbor",
            "--root-key",
            "keys/r2.pub",
            "--root-key",
            "keys/r3.pub",
            "--root-key",
            "keys/r4.pub",
            "--signing-key",
            "keys/s1.pub",
            "--signing-key",
            "keys/s2.pub",
            "--signing-threshold",
            "2",
            "--out",
            out,
        ];
        for s in signers {
            args.extend(["--sign-with", s]);
        }
        fleetctl(&d, &args)
    };
    // Old keys r1, r2 and new keys r2, r4: both thresholds met.
    assert!(
        rotate(&["keys/r1.key", "keys/r2.key", "keys/r4.key"], "root2.cbor")
            .status
            .success()
    );
    // Only the new keys: the old root did not agree.
    let out = rotate(&["keys/r4.key", "keys/r3.key"], "root3.cbor");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("rotation_old_threshold") && err.lines().count() == 1,
        "{err}"
    );
    assert!(!d.join("root3.cbor").exists());
    // The bundle still verifies under the rotated root (same signing keys).
    ok(
        &d,
        &["artifact", "verify", "--root", "root2.cbor", "fw.bundle"],
    );
}

#[test]
fn usage_errors_are_one_line() {
    let (_tmp, d) = setup();
    let out = fleetctl(
        &d,
        &[
            "artifact",
            "sign",
            "--kind",
            "firmware",
            "--name",
            "agent",
            "--version",
            "2.0",
            "--security-counter",
            "3",
            "--board",
            "b",
            "--payload",
            "fw.bin",
            "--key",
            "keys/s1.key",
            "--out",
            "x.bundle",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "fleetctl: error: --version \"2.0\": expected MAJOR.MINOR.PATCH\n"
    );
    let out = fleetctl(
        &d,
        &["artifact", "verify", "--root", "missing.cbor", "x.bundle"],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.starts_with("fleetctl: error: missing.cbor: No such file") && err.lines().count() == 1,
        "{err}"
    );
}

#[test]
fn delta_shows_what_a_device_on_the_old_release_receives_and_writes_the_stream() {
    let (_tmp, d) = setup();
    let old: Vec<u8> = (0..30_000u32)
        .map(|i| ((i / 2) as u8).wrapping_mul(13))
        .collect();
    let mut new = old.clone();
    new.splice(12_000..12_000, [7u8; 100]);
    std::fs::write(d.join("old.bin"), &old).unwrap();
    std::fs::write(d.join("new.bin"), &new).unwrap();
    for (version, payload, out) in [
        ("1.0.0", "old.bin", "old.bundle"),
        ("1.1.0", "new.bin", "new.bundle"),
    ] {
        ok(
            &d,
            &[
                "artifact",
                "sign",
                "--kind",
                "firmware",
                "--name",
                "agent",
                "--version",
                version,
                "--security-counter",
                "3",
                "--board",
                "mps2-an386",
                "--payload",
                payload,
                "--key",
                "keys/s1.key",
                "--key",
                "keys/s2.key",
                "--root",
                "root.cbor",
                "--out",
                out,
            ],
        );
    }
    let json = ok(
        &d,
        &[
            "artifact",
            "delta",
            "--from",
            "old.bundle",
            "new.bundle",
            "--out",
            "new.fdl",
            "--json",
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["from"], "agent 1.0.0");
    assert_eq!(v["to"], "agent 1.1.0");
    assert_eq!(v["full_bytes"], new.len());
    let stream = std::fs::read(d.join("new.fdl")).unwrap();
    assert_eq!(v["delta_bytes"], stream.len());
    assert!(
        stream.len() < new.len() / 20,
        "{} of {}",
        stream.len(),
        new.len()
    );
    assert_eq!(delta::decode::apply(&old, &stream).unwrap(), new);
    let text = ok(
        &d,
        &["artifact", "delta", "--from", "old.bundle", "new.bundle"],
    );
    assert!(
        text.starts_with("agent 1.1.0 from agent 1.0.0: 30100 bytes in full"),
        "{text}"
    );
    // Not a bundle: one line, exit 1.
    let out = fleetctl(
        &d,
        &["artifact", "delta", "--from", "old.bin", "new.bundle"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("old.bin: not a bundle"));
}
