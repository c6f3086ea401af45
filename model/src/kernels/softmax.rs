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

/// Bytes of an operator's exponential table: one Q0.31 word per input difference
/// `max - v` (0 to 255).
pub const TABLE_BYTES: usize = 256 * 4;

/// The table `softmax` reads: `exp(diff)` for each difference `-i` the layer can see, as
/// TFLite computes it, or 0 where the difference is below `diff_min` and does not
/// contribute (an exponential of 0 adds 0 to the sum and gives the output -128, exactly what
/// TFLite gives such an input). Built once, when the interpreter is: the exponential costs
/// some 200 instructions, and each row would take it twice per value.
pub fn build_table(
    multiplier: i32,
    left_shift: i32,
    diff_min: i32,
    table: &mut [u8],
) -> Result<(), Error> {
    let table = table.get_mut(..TABLE_BYTES).ok_or(Error::OutOfBounds)?;
    for (i, e) in table.chunks_exact_mut(4).enumerate() {
        let diff = -(i as i32);
        let v = if diff >= diff_min {
            exp_on_negative_values(srdhm(diff.wrapping_mul(1 << left_shift), multiplier))
        } else {
            0
        };
        e.copy_from_slice(&v.to_ne_bytes());
    }
    Ok(())
}

/// SOFTMAX over `rows` of `depth` values, with the table `build_table` made.
pub fn softmax(
    rows: usize,
    depth: usize,
    table: &[u8],
    input: &[u8],
    output: &mut [u8],
) -> Result<(), Error> {
    let table = table.get(..TABLE_BYTES).ok_or(Error::OutOfBounds)?;
    for r in 0..rows {
        let x = input
            .get(r * depth..(r + 1) * depth)
            .ok_or(Error::OutOfBounds)?;
        let y = output
            .get_mut(r * depth..(r + 1) * depth)
            .ok_or(Error::OutOfBounds)?;
        let max = x.iter().map(|&v| i32::from(v as i8)).max().unwrap_or(-128);
        let exp = |v: u8| -> Result<i32, Error> {
            let at = (max - i32::from(v as i8)) as usize * 4;
            let e = table.get(at..at + 4).ok_or(Error::OutOfBounds)?;
            Ok(i32::from_ne_bytes([e[0], e[1], e[2], e[3]]))
        };
        let mut sum = 0i32;
        for &v in x {
            sum = sum.wrapping_add(rescale_q0_to_q12(exp(v)?));
        }
        let (scale, bits_over_unit) = reciprocal(sum, ACCUMULATION_INTEGER_BITS);
        for (out, &v) in y.iter_mut().zip(x) {
            let unsat = rounding_divide_by_pot(srdhm(scale, exp(v)?), bits_over_unit + 31 - 8);
            *out = (unsat - 128).clamp(-128, 127) as i8 as u8;
        }
    }
    Ok(())
}
