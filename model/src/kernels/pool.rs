//! AVERAGE_POOL_2D and MAX_POOL_2D, int8 (NHWC, batch 1); windows are clipped at the borders.

use crate::Error;
use crate::graph::{Op, PoolGeom};

/// The window of output position `o` clipped to the input: (first input index, count).
#[inline]
pub(crate) fn window(
    o: usize,
    stride: usize,
    pad: usize,
    filter: usize,
    size: usize,
) -> (usize, usize) {
    // origin = o * stride - pad may be negative; work with the unsigned pieces.
    let at = o.saturating_mul(stride);
    let start = at.saturating_sub(pad).min(size);
    let end = at.saturating_add(filter).saturating_sub(pad).min(size);
    (start, end.saturating_sub(start))
}

/// Channels pooled together: one pass over a window's pixels updates all of them.
const CHUNK: usize = 64;

pub fn pool(
    g: &PoolGeom,
    op: &Op,
    average: bool,
    input: &[u8],
    output: &mut [u8],
) -> Result<(), Error> {
    let mut acc = [0i32; CHUNK];
    for oy in 0..g.out_h {
        let (y0, ny) = window(oy, g.stride_h, g.pad_h, g.f_h, g.in_h);
        for ox in 0..g.out_w {
            let (x0, nx) = window(ox, g.stride_w, g.pad_w, g.f_w, g.in_w);
            let count = i32::try_from(ny.saturating_mul(nx)).map_err(|_| Error::ShapeMismatch)?;
            if count == 0 {
                return Err(Error::ShapeMismatch);
            }
            for c0 in (0..g.channels).step_by(CHUNK) {
                let n = CHUNK.min(g.channels - c0);
                let acc = acc.get_mut(..n).ok_or(Error::OutOfBounds)?;
                acc.fill(if average { 0 } else { i32::MIN });
                // Window pixels in the reference's order (rows, then columns), so the
                // saturating sums are the same.
                for y in y0..y0 + ny {
                    for x in x0..x0 + nx {
                        let at = (y * g.in_w + x) * g.channels + c0;
                        let src = input.get(at..at + n).ok_or(Error::OutOfBounds)?;
                        if average {
                            for (a, &v) in acc.iter_mut().zip(src) {
                                *a = a.saturating_add(i32::from(v as i8));
                            }
                        } else {
                            for (a, &v) in acc.iter_mut().zip(src) {
                                *a = (*a).max(i32::from(v as i8));
                            }
                        }
                    }
                }
                let at = (oy * g.out_w + ox) * g.channels + c0;
                let out = output.get_mut(at..at + n).ok_or(Error::OutOfBounds)?;
                for (o, &sum) in out.iter_mut().zip(acc.iter()) {
                    let v = if !average {
                        sum
                    } else if sum > 0 {
                        // Rounds half away from zero, as TFLite's integer average pool.
                        (sum + count / 2) / count
                    } else {
                        (sum - count / 2) / count
                    };
                    *o = v.clamp(op.act_min, op.act_max) as i8 as u8;
                }
            }
        }
    }
    Ok(())
}
