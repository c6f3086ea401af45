//! MEAN over height and width, as TFLite 2.21's reference integer kernel.

use crate::Error;
use crate::graph::Op;
use crate::quant::multiply_by_quantized_multiplier;

pub fn mean(
    op: &Op,
    (h, w, c): (usize, usize, usize),
    (multiplier, shift): (i32, i32),
    input: &[u8],
    output: &mut [u8],
) -> Result<(), Error> {
    let n = h * w;
    let batches = input.len().checked_div(n * c).unwrap_or(0);
    let count = i32::try_from(n).map_err(|_| Error::TooLarge)?;
    for b in 0..batches {
        let plane = input
            .get(b * n * c..(b + 1) * n * c)
            .ok_or(Error::OutOfBounds)?;
        for ch in 0..c {
            let raw = plane
                .iter()
                .skip(ch)
                .step_by(c)
                .fold(0i32, |s, &x| s.wrapping_add(i32::from(x as i8)));
            // The zero point comes off every element: input_offset is minus it.
            let acc = raw.wrapping_add(op.input_offset.wrapping_mul(count));
            let v = multiply_by_quantized_multiplier(acc, multiplier, shift)
                .saturating_add(op.output_offset);
            *output.get_mut(b * c + ch).ok_or(Error::OutOfBounds)? = v.clamp(-128, 127) as i8 as u8;
        }
    }
    Ok(())
}
