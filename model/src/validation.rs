//! Validation sets (docs/validation-set-format.md) and the runner that judges a model on one.

use crate::Error;
use crate::graph::ElemType;
use crate::interpreter::Interpreter;
use artifact::Policy;

/// Most samples in one validation set (the runner keeps one latency per sample on the stack).
pub const MAX_SAMPLES: usize = 1024;
const HEADER_LEN: usize = 20;
const MAGIC: &[u8; 4] = b"VSET";
/// Input types, as TFLite's tensor types: INT8, and FLOAT32 for models that quantize their
/// input themselves.
const INPUT_INT8: u8 = 9;
const INPUT_FLOAT32: u8 = 0;

/// A parsed validation set; borrows its bytes.
#[derive(Debug, Clone, Copy)]
pub struct ValidationSet<'a> {
    pub count: usize,
    /// Elements per input.
    pub input_len: usize,
    /// The inputs' type: int8, or float32 (little-endian).
    pub input_type: ElemType,
    pub classes: usize,
    labels: &'a [u8],
    inputs: &'a [u8],
}

impl<'a> ValidationSet<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        let header: &[u8; HEADER_LEN] = bytes
            .get(..HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or(Error::BadValidationSet)?;
        let [
            m0,
            m1,
            m2,
            m3,
            version,
            ty,
            r0,
            r1,
            c0,
            c1,
            c2,
            c3,
            l0,
            l1,
            l2,
            l3,
            k0,
            k1,
            r2,
            r3,
        ] = *header;
        if [m0, m1, m2, m3] != *MAGIC
            || version != 1
            || !(ty == INPUT_INT8 || ty == INPUT_FLOAT32)
            || [r0, r1, r2, r3] != [0; 4]
        {
            return Err(Error::BadValidationSet);
        }
        let count = u32::from_le_bytes([c0, c1, c2, c3]) as usize;
        let input_len = u32::from_le_bytes([l0, l1, l2, l3]) as usize;
        let classes = usize::from(u16::from_le_bytes([k0, k1]));
        if count == 0 || count > MAX_SAMPLES || input_len == 0 || classes < 2 {
            return Err(Error::BadValidationSet);
        }
        let body = bytes.get(HEADER_LEN..).ok_or(Error::BadValidationSet)?;
        let input_type = if ty == INPUT_INT8 {
            ElemType::Int8
        } else {
            ElemType::Float32
        };
        let inputs_len = count
            .checked_mul(input_len)
            .and_then(|n| n.checked_mul(input_type.size()))
            .ok_or(Error::BadValidationSet)?;
        if Some(body.len()) != count.checked_add(inputs_len) {
            return Err(Error::BadValidationSet);
        }
        let (labels, inputs) = body.split_at(count);
        if labels.iter().any(|&l| usize::from(l) >= classes) {
            return Err(Error::BadValidationSet);
        }
        Ok(ValidationSet {
            count,
            input_len,
            input_type,
            classes,
            labels,
            inputs,
        })
    }

    /// Sample `i`: its label and its input's bytes (int8, or float32 little-endian).
    pub fn sample(&self, i: usize) -> Option<(usize, &'a [u8])> {
        let label = *self.labels.get(i)?;
        let n = self.input_len * self.input_type.size();
        let input = self.inputs.get(i * n..(i + 1) * n)?;
        Some((usize::from(label), input))
    }
}

/// What a model showed on a validation set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Report {
    pub samples: u32,
    pub correct: u32,
    /// Top-1 accuracy in basis points, rounded down.
    pub accuracy_bp: u16,
    /// Latency percentiles (nearest rank) and maximum, in microseconds.
    pub p50_us: u32,
    pub p99_us: u32,
    pub max_us: u32,
}

/// Runs every sample through the interpreter, timing each inference with `now_ns`
/// (the device's timer; a test's fake clock).
pub fn run(
    interp: &mut Interpreter<'_, '_>,
    set: &ValidationSet<'_>,
    mut now_ns: impl FnMut() -> u64,
) -> Result<Report, Error> {
    if set.input_len != interp.model().input_len()
        || set.classes != interp.model().output_len()
        || set.input_type != interp.input_type()?
    {
        return Err(Error::ValidationSetMismatch);
    }
    let mut latencies = [0u32; MAX_SAMPLES];
    let mut correct = 0u32;
    for i in 0..set.count {
        let (label, input) = set.sample(i).ok_or(Error::BadValidationSet)?;
        let start = now_ns();
        interp.set_input(input)?;
        interp.invoke()?;
        let predicted = interp.argmax()?;
        let elapsed = now_ns().saturating_sub(start);
        *latencies.get_mut(i).ok_or(Error::BadValidationSet)? =
            u32::try_from(elapsed / 1000).unwrap_or(u32::MAX);
        correct += u32::from(predicted == label);
    }
    let lat = latencies
        .get_mut(..set.count)
        .ok_or(Error::BadValidationSet)?;
    insertion_sort(lat);
    let n = set.count;
    let rank = |pct: usize| {
        lat.get((pct * n).div_ceil(100).max(1) - 1)
            .copied()
            .unwrap_or(0)
    };
    Ok(Report {
        samples: n as u32,
        correct,
        accuracy_bp: (u64::from(correct) * 10_000 / n as u64) as u16,
        p50_us: rank(50),
        p99_us: rank(99),
        max_us: lat.last().copied().unwrap_or(0),
    })
}

/// Sorts a validation's latencies in place. At most `MAX_SAMPLES` of them, sorted once per
/// validation: about 1.8 KB of code less than `sort_unstable`'s quicksort on thumbv7em,
/// for time that is nothing next to the inferences that made them.
fn insertion_sort(v: &mut [u32]) {
    for i in 1..v.len() {
        let mut j = i;
        while j > 0 && v[j - 1] > v[j] {
            v.swap(j - 1, j);
            j -= 1;
        }
    }
}

/// Nanoseconds per multiply-accumulate on the emulated Cortex-M4 (QEMU `mps2-an386` at
/// 62.5 MIPS, `-icount shift=4`), as `cargo xtask bench-model` measured it: about 111 ns, so
/// the slow fixture's 460 k MACs take 51 ms there.
pub const EMULATED_M4_NS_PER_MAC: u64 = 111;

/// A clock for [`run`] under which every inference of `model` (its bytes) takes `ns_per_mac`
/// nanoseconds per multiply-accumulate: how a host simulator makes a model as slow as a device
/// would run it. `run` reads the clock at the start and at the end of each sample; time
/// advances at the ends. A model that does not parse takes no time.
pub fn mac_clock(model: &[u8], ns_per_mac: u64) -> impl FnMut() -> u64 + use<> {
    let macs = crate::Model::parse(model).map(|m| m.macs()).unwrap_or(0);
    let mut calls = 0u64;
    let mut t = 0u64;
    move || {
        calls += 1;
        if calls % 2 == 0 {
            t += macs * ns_per_mac;
        }
        t
    }
}

/// Which parts of a policy a report meets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub accuracy_ok: bool,
    pub latency_ok: bool,
    /// Accuracy drop against the model being replaced is within bounds (true when there is none).
    pub drop_ok: bool,
}

impl Verdict {
    pub fn passed(&self) -> bool {
        self.accuracy_ok && self.latency_ok && self.drop_ok
    }
}

/// Judges a report against a policy; `replaced_accuracy_bp` is what the running model scored
/// on its own validation set, when a model is being replaced.
pub fn judge(report: &Report, policy: &Policy, replaced_accuracy_bp: Option<u16>) -> Verdict {
    Verdict {
        accuracy_ok: report.accuracy_bp >= policy.min_accuracy_bp,
        latency_ok: report.p99_us <= policy.max_p99_latency_us,
        drop_ok: replaced_accuracy_bp.is_none_or(|old| {
            old.saturating_sub(report.accuracy_bp) <= policy.max_accuracy_drop_bp
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::insertion_sort;

    /// The same order as the standard sort, on ties, runs and scrambles.
    #[test]
    fn insertion_sort_is_sort() {
        let mut x = 0x9e37_79b9u32;
        let cases: [&[u32]; 5] = [&[], &[7], &[3, 3, 1, 3], &[5, 4, 3, 2, 1], &[1, 2, 3]];
        let mut all: std::vec::Vec<std::vec::Vec<u32>> = cases.iter().map(|c| c.to_vec()).collect();
        all.push(
            (0..1024)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x % 5000
                })
                .collect(),
        );
        for case in all {
            let mut want = case.clone();
            want.sort_unstable();
            let mut got = case;
            insertion_sort(&mut got);
            assert_eq!(got, want);
        }
    }
}
