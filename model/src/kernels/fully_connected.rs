//! FULLY_CONNECTED, int8, per-tensor or per-channel weights.

use super::{bias_at, channel_quant, dot, requantize_single};
use crate::Error;
use crate::graph::Op;

#[allow(clippy::too_many_arguments)]
pub fn fully_connected(
    op: &Op,
    batch: usize,
    depth: usize,
    units: usize,
    input: &[u8],
    filter: &[u8],
    bias: Option<&[u8]>,
    params: &[u8],
    output: &mut [u8],
) -> Result<(), Error> {
    for u in 0..units {
        let q = channel_quant(params, u)?;
        let b = bias_at(bias, u);
        let w = filter
            .get(u * depth..(u + 1) * depth)
            .ok_or(Error::OutOfBounds)?;
        for n in 0..batch {
            let x = input
                .get(n * depth..(n + 1) * depth)
                .ok_or(Error::OutOfBounds)?;
            let acc = dot(w, x, op.input_offset).wrapping_add(b);
            *output.get_mut(n * units + u).ok_or(Error::OutOfBounds)? =
                requantize_single(acc, q, op.output_offset, op.act_min, op.act_max);
        }
    }
    Ok(())
}
