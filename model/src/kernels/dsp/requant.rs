//! The DSP kernels' channel records and requantization: TFLite's arithmetic (double rounding
//! for CONV_2D and DEPTHWISE_CONV_2D, single rounding for FULLY_CONNECTED) in a few Cortex-M4
//! instructions where the record says it is exact, the reference arithmetic elsewhere.
//!
//! A record (`CHANNEL_PARAM_BYTES`, native-endian words) is written once, when the interpreter
//! is built: multiplier, shift, the bias with the input offset folded in, and `short`, the
//! right shift of the short path (0: take the reference path). The short paths:
//!
//! - double rounding, `rdbpot(srdhm(acc, m), right)`: `srdhm` is `floor((acc * m + 2^30) /
//!   2^31)` (gemmlowp's nudge and truncation give the same value when `m` is not `i32::MIN`),
//!   which is SMMULR of `2 * acc` when `|acc| < 2^30`; rounding half away from zero is then
//!   `(h + round - (h < 0)) >> right` with `round = 2^(right - 1)`. Exact when the channel's
//!   accumulators are bounded below 2^30 (`|bias| + 128 * sum |w|`, checked when the record is
//!   written), the shift is a right shift of 1 to 30 and `m` is not `i32::MIN`.
//! - single rounding, `(acc * m + 2^(31 + k)) >> (32 + k)` for a right shift of `k + 1`: the
//!   low word of the product cannot carry into the rounding bit, so it is SMMUL's high word
//!   plus `2^(k - 1)`, shifted right by `k`. Exact for every accumulator when `k` is 1 to 30.

use super::simd::{ShortQuad, smmul, smmulr};
use crate::Error;
use crate::graph::{CHANNEL_PARAM_BYTES, Op, OpKind};
use crate::kernels::ChannelQuant;

/// One output channel's record, as a kernel reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Channel {
    pub multiplier: i32,
    pub shift: i32,
    /// The short path's right shift (see the module doc), 0 for the reference path.
    pub short: u32,
    /// Its rounding term, `2^(short - 1)` (0 without a short path).
    pub round: i32,
}

/// The record of channel `c`: requantization and short path, and the folded bias.
#[inline(always)]
pub fn record(params: &[u8], c: usize) -> Result<(Channel, i32), Error> {
    let at = c * CHANNEL_PARAM_BYTES;
    let r = params
        .get(at..at + CHANNEL_PARAM_BYTES)
        .ok_or(Error::OutOfBounds)?;
    // Whole words (one load each), not bytes put together.
    let int = |i: usize| {
        r.get(i..i + 4)
            .and_then(|b| b.try_into().ok())
            .map(i32::from_ne_bytes)
            .ok_or(Error::OutOfBounds)
    };
    let short = int(12)? as u32;
    Ok((
        Channel {
            multiplier: int(0)?,
            shift: int(4)?,
            short,
            round: 1i32.checked_shl(short).unwrap_or(0) >> 1,
        },
        int(8)?,
    ))
}

/// Writes channel `c`'s record: multiplier `m`, shift `s`, the folded bias and the short path
/// when it is exact for this channel (`weights` and `bias` are the operator's constants).
pub fn write_record(
    op: &Op,
    weights: &[u8],
    bias: i32,
    c: usize,
    (m, s): (i32, i32),
    slot: &mut [u8],
) -> Result<(), Error> {
    let folded = folded_bias(op, weights, bias, c);
    let right = u32::try_from(-i64::from(s)).unwrap_or(0);
    let short = match op.kind {
        OpKind::FullyConnected { .. } if (2..=31).contains(&right) => right - 1,
        OpKind::Conv2d(_) | OpKind::DepthwiseConv2d(_)
            if (1..=30).contains(&right)
                && m != i32::MIN
                && i64::from(folded).abs() + 128 * weight_magnitude(op, weights, c) < 1 << 30 =>
        {
            right
        }
        _ => 0,
    };
    let slot = slot
        .get_mut(..CHANNEL_PARAM_BYTES)
        .ok_or(Error::OutOfBounds)?;
    for (w, v) in slot.chunks_exact_mut(4).zip([m, s, folded, short as i32]) {
        w.copy_from_slice(&v.to_ne_bytes());
    }
    Ok(())
}

/// The weights of channel `c` (a row of CONV_2D or FULLY_CONNECTED, a strided column of
/// DEPTHWISE_CONV_2D) as int8 values.
fn channel_weights<'w>(op: &Op, weights: &'w [u8], c: usize) -> impl Iterator<Item = i32> + 'w {
    let (skip, step, take) = match op.kind {
        OpKind::Conv2d(g) => {
            let k = g.k_h * g.k_w * g.in_c;
            (c * k, 1, k)
        }
        OpKind::DepthwiseConv2d(g) => (c, g.out_c.max(1), g.k_h * g.k_w),
        OpKind::FullyConnected { depth, .. } => (c * depth, 1, depth),
        _ => (0, 1, 0),
    };
    weights
        .iter()
        .skip(skip)
        .step_by(step)
        .take(take)
        .map(|&w| i32::from(w as i8))
}

/// `sum |w|` over channel `c`'s weights.
fn weight_magnitude(op: &Op, weights: &[u8], c: usize) -> i64 {
    channel_weights(op, weights, c)
        .map(|w| i64::from(w.abs()))
        .sum()
}

/// A channel's bias with the input offset folded in: `bias + input_offset * sum(weights)`,
/// wrapping like the accumulators it starts.
pub fn folded_bias(op: &Op, weights: &[u8], bias: i32, c: usize) -> i32 {
    let s = channel_weights(op, weights, c).fold(0i32, |s, w| s.wrapping_add(w));
    bias.wrapping_add(op.input_offset.wrapping_mul(s))
}

/// The output offset added and the fused activation's clamp applied: full-range layers clamp
/// with one SSAT.
#[inline(always)]
fn finish(v: i32, op: &Op) -> u8 {
    let v = v.saturating_add(op.output_offset);
    let v = if op.act_min <= -128 && op.act_max >= 127 {
        v.clamp(-128, 127)
    } else {
        v.clamp(op.act_min, op.act_max)
    };
    v as i8 as u8
}

/// Double rounding (CONV_2D, DEPTHWISE_CONV_2D): the short path when the record has one.
#[inline(always)]
pub fn requant(acc: i32, ch: Channel, op: &Op) -> u8 {
    let v = if ch.short != 0 {
        let h = smmulr(acc << 1, ch.multiplier);
        (h + (h >> 31) + ch.round) >> ch.short
    } else {
        reference(acc, ch.multiplier, ch.shift)
    };
    finish(v, op)
}

/// Largest short-path shift whose rounding term can carry the output offset (`short_quad`).
const MAX_FOLDED_SHORT: u32 = 21;

/// Four channels' requantization (double rounding), decided once for a pass over many
/// pixels: when all four records have a short path and the layer clamps to the whole int8
/// range, outputs take it without any per-output test.
#[derive(Debug, Clone, Copy)]
pub struct Quad {
    qs: [Channel; 4],
    short: bool,
}

impl Quad {
    #[cfg_attr(target_os = "none", optimize(speed))]
    pub fn new(qs: [Channel; 4], op: &Op) -> Self {
        let full = op.act_min <= -128 && op.act_max >= 127;
        Quad {
            qs,
            short: full && qs.iter().all(|q| q.short != 0),
        }
    }

    /// The whole short path's parameters for the asm walks (`simd::pointwise_short`,
    /// `simd::depthwise3_short`), when these four channels take it. The output offset is
    /// folded into the rounding term, `(x >> s) + k == (x + (k << s)) >> s`, which is exact
    /// while the sum stays in range: `|h| < 2^30` (the short path's bound), the rounding term
    /// below 2^29 and `|offset| << short` below 2^29, so for shifts up to `MAX_FOLDED_SHORT`.
    #[cfg_attr(target_os = "none", optimize(speed))]
    pub fn short_quad(&self, bias: [i32; 4], op: &Op) -> Option<ShortQuad> {
        let folds = (-128..=128).contains(&op.output_offset)
            && self.qs.iter().all(|q| q.short <= MAX_FOLDED_SHORT);
        (self.short && folds).then(|| ShortQuad {
            bias,
            scale: self
                .qs
                .map(|q| [q.multiplier, q.round + (op.output_offset << q.short)]),
            short: self.qs.map(|q| q.short),
        })
    }

    /// The four output bytes of accumulators `acc`.
    #[inline(always)]
    pub fn apply(&self, acc: [i32; 4], op: &Op) -> [u8; 4] {
        let mut out = [0u8; 4];
        if self.short {
            for ((o, a), q) in out.iter_mut().zip(acc).zip(self.qs) {
                // In the bound the short path was granted for, `|v| < 2^30`: no saturation.
                let h = smmulr(a << 1, q.multiplier);
                let v = (h + (h >> 31) + q.round) >> q.short;
                *o = (v + op.output_offset).clamp(-128, 127) as i8 as u8;
            }
        } else {
            for ((o, a), q) in out.iter_mut().zip(acc).zip(self.qs) {
                *o = requant(a, q, op);
            }
        }
        out
    }
}

/// Single rounding (FULLY_CONNECTED): the short path when the record has one.
#[inline(always)]
pub fn requant_single(acc: i32, ch: Channel, op: &Op) -> u8 {
    let v = if ch.short != 0 {
        (smmul(acc, ch.multiplier) + ch.round) >> ch.short
    } else {
        reference_single(acc, ch.multiplier, ch.shift)
    };
    finish(v, op)
}

/// The records without a short path: kept out of line so the kernels' loops do not carry
/// the reference arithmetic.
#[cold]
#[inline(never)]
fn reference(acc: i32, m: i32, s: i32) -> i32 {
    crate::quant::multiply_by_quantized_multiplier(acc, m, s)
}

/// As `reference`, single rounding.
#[cold]
#[inline(never)]
fn reference_single(acc: i32, m: i32, s: i32) -> i32 {
    crate::quant::multiply_by_quantized_multiplier_single(acc, m, s)
}

/// The portable kernels' view of a record.
impl From<Channel> for ChannelQuant {
    fn from(ch: Channel) -> Self {
        ChannelQuant {
            multiplier: ch.multiplier,
            shift: ch.shift,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{MAX_INPUTS, NO_TENSOR};

    /// xorshift64: deterministic test values.
    fn next(s: &mut u64) -> u64 {
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        *s
    }

    fn op(kind: OpKind) -> Op {
        Op {
            kind,
            input: 0,
            weights: None,
            bias: None,
            output: 0,
            inputs: [NO_TENSOR; MAX_INPUTS],
            n_inputs: 0,
            input_offset: 0,
            output_offset: 0,
            act_min: i32::MIN,
            act_max: i32::MAX,
            channels: 1,
            params_offset: 0,
        }
    }

    /// Both short paths against the reference arithmetic, over accumulators in the bound
    /// (double rounding) and over all of them (single rounding), and every shift.
    #[test]
    fn short_paths_are_the_reference_arithmetic() {
        let full = op(OpKind::Reshape);
        let mut seed = 0x9e37_79b9_7f4a_7c15;
        let edges = [
            0,
            1,
            -1,
            2,
            -2,
            (1 << 30) - 1,
            -(1 << 30) + 1,
            i32::MAX,
            i32::MIN,
        ];
        for i in 0..300_000u32 {
            let r = next(&mut seed);
            let acc = if i % 4 == 0 {
                edges[(r % 9) as usize]
            } else {
                (r >> 32) as i32 >> (r % 24)
            };
            let m = match i % 5 {
                0 => i32::MAX,
                1 => 1 << 30,
                2 => 0,
                _ => (1 << 30) + ((r >> 8) as i32 & 0x3fff_ffff),
            };
            let right = 1 + (r % 31) as u32;
            let s = -(right as i32);
            if acc.unsigned_abs() < 1 << 30 && right <= 30 {
                let ch = Channel {
                    multiplier: m,
                    shift: s,
                    short: right,
                    round: 1 << (right - 1),
                };
                let want = crate::quant::multiply_by_quantized_multiplier(acc, m, s);
                assert_eq!(
                    requant(acc, ch, &full),
                    want.clamp(-128, 127) as i8 as u8,
                    "double: acc {acc} m {m} s {s}"
                );
                let h = smmulr(acc << 1, m);
                assert_eq!(
                    (h + (h >> 31) + ((1 << right) >> 1)) >> right,
                    want,
                    "double, unclamped: acc {acc} m {m} s {s}"
                );
            }
            if right >= 2 {
                let k = right - 1;
                let want = crate::quant::multiply_by_quantized_multiplier_single(acc, m, s);
                assert_eq!(
                    (smmul(acc, m) + ((1 << k) >> 1)) >> k,
                    want,
                    "single: acc {acc} m {m} s {s}"
                );
            }
        }
    }
}
