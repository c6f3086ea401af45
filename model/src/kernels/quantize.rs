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

/// Bytes of DEQUANTIZE's table: the float32 of each of the 256 int8 values.
pub const DEQUANTIZE_TABLE_BYTES: usize = 256 * 4;

/// DEQUANTIZE's table, built once with the interpreter: TFLite's arithmetic (in f64, which
/// the M4's FPU does not have: some 80 instructions an element in software) for each input
/// value, indexed by the value's byte.
pub fn build_dequantize_table(op: &Op, scale: f32, table: &mut [u8]) -> Result<(), Error> {
    let table = table
        .get_mut(..DEQUANTIZE_TABLE_BYTES)
        .ok_or(Error::OutOfBounds)?;
    for (x, o) in table.chunks_exact_mut(4).enumerate() {
        let v = (f64::from(scale) * f64::from(i32::from(x as u8 as i8) + op.input_offset)) as f32;
        o.copy_from_slice(&v.to_le_bytes());
    }
    Ok(())
}

/// DEQUANTIZE through the table `build_dequantize_table` made.
pub fn dequantize(table: &[u8], input: &[u8], output: &mut [u8]) -> Result<(), Error> {
    let table = table
        .get(..DEQUANTIZE_TABLE_BYTES)
        .ok_or(Error::OutOfBounds)?;
    for (o, &x) in output.chunks_exact_mut(4).zip(input) {
        let at = usize::from(x) * 4;
        o.copy_from_slice(table.get(at..at + 4).ok_or(Error::OutOfBounds)?);
    }
    Ok(())
}
