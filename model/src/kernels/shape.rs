//! PAD, CONCATENATION and STRIDED_SLICE: int8 values moved, never changed.

use crate::Error;
use crate::graph::{MAX_DIMS, Op, Tensor};
use crate::ops::shape::{paddings, slice_axes};

/// Fills the output with the pad value (the output zero point), then copies the input's
/// innermost rows into place.
pub fn pad(
    op: &Op,
    tin: &Tensor<'_>,
    tpad: &Tensor<'_>,
    input: &[u8],
    output: &mut [u8],
) -> Result<(), Error> {
    let pads = paddings(tin, tpad)?;
    let d = tin.dims4();
    let mut od = [0; MAX_DIMS];
    for i in 0..MAX_DIMS {
        od[i] = d[i] + pads[i].0 + pads[i].1;
    }
    output.fill(op.output_offset as i8 as u8);
    let row = d[3];
    let mut from = 0;
    for b in 0..d[0] {
        for h in 0..d[1] {
            for w in 0..d[2] {
                let at = (((b + pads[0].0) * od[1] + h + pads[1].0) * od[2] + w + pads[2].0)
                    * od[3]
                    + pads[3].0;
                let src = input.get(from..from + row).ok_or(Error::OutOfBounds)?;
                output
                    .get_mut(at..at + row)
                    .ok_or(Error::OutOfBounds)?
                    .copy_from_slice(src);
                from += row;
            }
        }
    }
    Ok(())
}

/// Copies, for each index before `axis`, every input's block along and after it in turn.
pub fn concatenation(
    axis: usize,
    inputs: &[(&Tensor<'_>, &[u8])],
    tout: &Tensor<'_>,
    output: &mut [u8],
) -> Result<(), Error> {
    let outer: usize = (0..axis).map(|d| tout.dim(d)).product();
    let mut at = 0;
    for o in 0..outer {
        for (t, x) in inputs {
            let inner: usize = (axis..t.rank).map(|d| t.dim(d)).product();
            let src = x
                .get(o * inner..(o + 1) * inner)
                .ok_or(Error::OutOfBounds)?;
            output
                .get_mut(at..at + inner)
                .ok_or(Error::OutOfBounds)?
                .copy_from_slice(src);
            at += inner;
        }
    }
    Ok(())
}

pub fn strided_slice(
    op: &Op,
    tensors: &[Tensor<'_>],
    input: &[u8],
    output: &mut [u8],
) -> Result<(), Error> {
    let axes = slice_axes(tensors, op)?;
    let tin = tensors.get(op.input).ok_or(Error::OutOfBounds)?;
    let d = tin.dims4();
    let stride = [d[1] * d[2] * d[3], d[2] * d[3], d[3], 1];
    // Input offset along axis `a` of step `k` (the plan keeps it inside the axis).
    let pos = |a: usize, k: usize| -> Result<usize, Error> {
        let s = &axes[a];
        let i = i64::from(s.start) + k as i64 * i64::from(s.stride);
        usize::try_from(i)
            .ok()
            .and_then(|i| i.checked_mul(stride[a]))
            .ok_or(Error::OutOfBounds)
    };
    let mut at = 0;
    for k0 in 0..axes[0].count {
        for k1 in 0..axes[1].count {
            for k2 in 0..axes[2].count {
                for k3 in 0..axes[3].count {
                    let i = pos(0, k0)? + pos(1, k1)? + pos(2, k2)? + pos(3, k3)?;
                    *output.get_mut(at).ok_or(Error::OutOfBounds)? =
                        *input.get(i).ok_or(Error::OutOfBounds)?;
                    at += 1;
                }
            }
        }
    }
    Ok(())
}
