//! The model fixtures (`model/fixtures`), built into the binary so that the demo needs no
//! files: a good model, a less accurate one, a slow one, each with its validation set.

/// A model and the validation set it is proven on.
#[derive(Debug, Clone, Copy)]
pub struct Fixture {
    pub name: &'static str,
    pub model: &'static [u8],
    pub set: &'static [u8],
}

/// 92.8 % on its validation set, 5.6 ms p99 on the emulated M4.
pub const GOOD: Fixture = Fixture {
    name: "good",
    model: include_bytes!("../../model/fixtures/good.tflite"),
    set: include_bytes!("../../model/fixtures/good.vset"),
};

/// 59.7 %: two pairs of classes swapped in training.
pub const REGRESSED: Fixture = Fixture {
    name: "regressed",
    model: include_bytes!("../../model/fixtures/regressed.tflite"),
    set: include_bytes!("../../model/fixtures/regressed.vset"),
};

/// 98.9 %, but 460 k multiply-accumulates: 51 ms p99 on the emulated M4.
pub const SLOW: Fixture = Fixture {
    name: "slow",
    model: include_bytes!("../../model/fixtures/slow.tflite"),
    set: include_bytes!("../../model/fixtures/slow.vset"),
};
