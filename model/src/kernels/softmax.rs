//! SOFTMAX, int8 in and out (output scale 1/256, zero point -128), in gemmlowp fixed point.

use crate::Error;
use crate::fixedpoint::{exp_on_negative_values, reciprocal, rescale_q0_to_q12};
use crate::quant::{quantize_multiplier, rounding_divide_by_pot, srdhm};

const SCALED_DIFF_INTEGER_BITS: i32 = 5;
const ACCUMULATION_INTEGER_BITS: i32 = 12;

/// TFLite's `PreprocessSoftmaxScaling` and `CalculateInputRadius`: (multiplier, left shift,
/// smallest input difference that still contributes).
pub fn prepare(beta: f32, input_scale: f32) -> Result<(i32, i32, i32), Error> {
    let real = (f64::from(beta)
        * f64::from(input_scale)
        * f64::from(1u32 << (31 - SCALED_DIFF_INTEGER_BITS)))
    .min(2_147_483_647.0);
    let (multiplier, shift) = quantize_multiplier(real);
    if shift < 0 || multiplier == 0 {
        return Err(Error::UnsupportedQuantization);
    }
    // floor(((1 << 5) - 1) * 2^(31 - 5) / 2^shift), exact in integers.
    let radius =
        (((1i64 << SCALED_DIFF_INTEGER_BITS) - 1) << (31 - SCALED_DIFF_INTEGER_BITS)) >> shift;
    Ok((multiplier, shift, -(radius as i32)))
}

pub fn softmax(
    rows: usize,
    depth: usize,
    multiplier: i32,
    left_shift: i32,
    diff_min: i32,
    input: &[u8],
    output: &mut [u8],
) -> Result<(), Error> {
    for r in 0..rows {
        let x = input
            .get(r * depth..(r + 1) * depth)
            .ok_or(Error::OutOfBounds)?;
        let y = output
            .get_mut(r * depth..(r + 1) * depth)
            .ok_or(Error::OutOfBounds)?;
        let max = x.iter().map(|&v| i32::from(v as i8)).max().unwrap_or(-128);
        let scaled = |v: u8| -> Option<i32> {
            let diff = i32::from(v as i8) - max;
            (diff >= diff_min).then(|| srdhm(diff.wrapping_mul(1 << left_shift), multiplier))
        };
        let mut sum = 0i32;
        for &v in x {
            if let Some(d) = scaled(v) {
                sum = sum.wrapping_add(rescale_q0_to_q12(exp_on_negative_values(d)));
            }
        }
        let (scale, bits_over_unit) = reciprocal(sum, ACCUMULATION_INTEGER_BITS);
        for (out, &v) in y.iter_mut().zip(x) {
            let q = match scaled(v) {
                Some(d) => {
                    let unsat = rounding_divide_by_pot(
                        srdhm(scale, exp_on_negative_values(d)),
                        bits_over_unit + 31 - 8,
                    );
                    (unsat - 128).clamp(-128, 127)
                }
                None => -128,
            };
            *out = q as i8 as u8;
        }
    }
    Ok(())
}
