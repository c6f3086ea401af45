//! RELU, RELU6, LEAKY_RELU, HARD_SWISH and the lookup-table activations (LOGISTIC, TANH) on int8.

use crate::Error;
use crate::graph::{LUT_BYTES, Op, Tensor};
use crate::ops::HardSwishParams;
use crate::quant::{multiply_by_quantized_multiplier, round_f32};

/// Rescales to the output, then clamps to the activation's range (RELU and RELU6).
pub fn relu(op: &Op, multiplier: i32, shift: i32, input: &[u8], output: &mut [u8]) {
    for (o, &x) in output.iter_mut().zip(input) {
        let v = multiply_by_quantized_multiplier(
            i32::from(x as i8) + op.input_offset,
            multiplier,
            shift,
        )
        .saturating_add(op.output_offset);
        *o = v.clamp(op.act_min, op.act_max) as i8 as u8;
    }
}

pub fn leaky_relu(
    op: &Op,
    alpha: (i32, i32),
    identity: (i32, i32),
    input: &[u8],
    output: &mut [u8],
) {
    for (o, &x) in output.iter_mut().zip(input) {
        let v = i32::from(x as i8) + op.input_offset;
        let (m, s) = if v >= 0 { identity } else { alpha };
        let r = multiply_by_quantized_multiplier(v, m, s).saturating_add(op.output_offset);
        *o = r.clamp(-128, 127) as i8 as u8;
    }
}

/// gemmlowp's 16-bit `SaturatingRoundingDoublingHighMul`.
fn srdhm16(a: i16, b: i16) -> i16 {
    if a == b && a == i16::MIN {
        return i16::MAX;
    }
    let ab = i32::from(a) * i32::from(b);
    let nudge = if ab >= 0 { 1 << 14 } else { 1 - (1 << 14) };
    ((ab + nudge) / (1 << 15)) as i16
}

/// TFLite's 16-bit `SaturatingDoublingHighMul` (no rounding).
fn sdhm16(a: i16, b: i16) -> i16 {
    if a == b && a == i16::MIN {
        return i16::MAX;
    }
    ((i32::from(a) * i32::from(b)) / (1 << 15)) as i16
}

fn saturating_left_shift16(v: i16, amount: i32) -> i16 {
    // Exponents are at most 31 in magnitude (`quantize_multiplier`'s range): i64 holds it.
    (i64::from(v) << amount.clamp(0, 31)).clamp(i64::from(i16::MIN), i64::from(i16::MAX)) as i16
}

fn rounding_divide_by_pot16(x: i16, exponent: i32) -> i16 {
    let (x, e) = (i64::from(x), exponent.clamp(0, 31));
    let mask = (1i64 << e) - 1;
    let threshold = (mask >> 1) + i64::from(x < 0);
    ((x >> e) + i64::from((x & mask) > threshold)) as i16
}

/// TFLite's reference int8 HARD_SWISH: x * relu6(x + 3) / 6 in 16-bit fixed point.
pub fn hard_swish(op: &Op, p: &HardSwishParams, input: &[u8], output: &mut [u8]) {
    for (o, &x) in output.iter_mut().zip(input) {
        let value = (i32::from(x as i8) + op.input_offset) as i16;
        let hires = value.wrapping_mul(1 << 7);
        let preshift_output = srdhm16(hires, p.output_multiplier);
        let mut reluish = hires;
        if p.reluish_exponent > 0 {
            reluish = saturating_left_shift16(reluish, p.reluish_exponent - 1);
        }
        reluish = srdhm16(reluish, p.reluish_multiplier);
        if p.reluish_exponent > 0 {
            reluish = saturating_left_shift16(reluish, 1);
        }
        if p.reluish_exponent < 0 {
            reluish = rounding_divide_by_pot16(reluish, -p.reluish_exponent);
        }
        let reluish = ((i32::from(reluish) + (1 << 15)) >> 1) as i16;
        let preshift = sdhm16(reluish, preshift_output);
        let out =
            i32::from(rounding_divide_by_pot16(preshift, -p.output_exponent)) + op.output_offset;
        *o = out.clamp(-128, 127) as i8 as u8;
    }
}

/// Builds the 256-entry table of LOGISTIC or TANH as TFLite's `LUTPopulate` does: dequantize
/// each int8 value, apply the function in f32, requantize.
pub fn build_lut(
    tanh: bool,
    tin: &Tensor<'_>,
    tout: &Tensor<'_>,
    lut: &mut [u8],
) -> Result<(), Error> {
    let lut = lut.get_mut(..LUT_BYTES).ok_or(Error::OutOfBounds)?;
    let inverse_scale = 1.0 / tout.scale;
    for v in -128i32..=127 {
        let x = tin.scale * (v - tin.zero_point) as f32;
        let y = if tanh {
            libm::tanhf(x)
        } else {
            1.0 / (1.0 + libm::expf(-x))
        };
        let q = round_f32(y * inverse_scale).saturating_add(tout.zero_point);
        lut[usize::from(v as i8 as u8)] = q.clamp(-128, 127) as i8 as u8;
    }
    Ok(())
}

pub fn lookup(lut: &[u8], input: &[u8], output: &mut [u8]) -> Result<(), Error> {
    let lut: &[u8; LUT_BYTES] = lut
        .get(..LUT_BYTES)
        .and_then(|l| l.try_into().ok())
        .ok_or(Error::OutOfBounds)?;
    for (o, &x) in output.iter_mut().zip(input) {
        *o = lut[usize::from(x)];
    }
    Ok(())
}
