//! QUANTIZE (float32 or int8 to int8) and DEQUANTIZE (int8 to float32), as TFLite's
//! `AffineQuantize`, `Requantize` and `Dequantize`.

use crate::Error;
use crate::graph::Op;
use crate::quant::{multiply_by_quantized_multiplier, round_f32};

pub fn quantize(op: &Op, scale: f32, input: &[u8], output: &mut [u8]) -> Result<(), Error> {
    for (o, x) in output.iter_mut().zip(input.chunks_exact(4)) {
        let v = f32::from_le_bytes([x[0], x[1], x[2], x[3]]);
        *o = round_f32(v / scale)
            .saturating_add(op.output_offset)
            .clamp(-128, 127) as i8 as u8;
    }
    Ok(())
}

pub fn requantize(
    op: &Op,
    multiplier: i32,
    shift: i32,
    input: &[u8],
    output: &mut [u8],
) -> Result<(), Error> {
    for (o, &x) in output.iter_mut().zip(input) {
        let v = multiply_by_quantized_multiplier(
            i32::from(x as i8) + op.input_offset,
            multiplier,
            shift,
        )
        .saturating_add(op.output_offset);
        *o = v.clamp(-128, 127) as i8 as u8;
    }
    Ok(())
}

pub fn dequantize(op: &Op, scale: f32, input: &[u8], output: &mut [u8]) -> Result<(), Error> {
    for (o, &x) in output.chunks_exact_mut(4).zip(input) {
        let v = (f64::from(scale) * f64::from(i32::from(x as i8) + op.input_offset)) as f32;
        o.copy_from_slice(&v.to_le_bytes());
    }
    Ok(())
}
