//! AVERAGE_POOL_2D and MAX_POOL_2D, int8 (NHWC, batch 1); windows are clipped at the borders.

use crate::Error;
use crate::graph::{Op, PoolGeom};

/// The window of output position `o` clipped to the input: (first input index, count).
#[inline]
fn window(o: usize, stride: usize, pad: usize, filter: usize, size: usize) -> (usize, usize) {
    // origin = o * stride - pad may be negative; work with the unsigned pieces.
    let at = o.saturating_mul(stride);
    let start = at.saturating_sub(pad).min(size);
    let end = at.saturating_add(filter).saturating_sub(pad).min(size);
    (start, end.saturating_sub(start))
}

pub fn pool(
    g: &PoolGeom,
    op: &Op,
    average: bool,
    input: &[u8],
    output: &mut [u8],
) -> Result<(), Error> {
    for oy in 0..g.out_h {
        let (y0, ny) = window(oy, g.stride_h, g.pad_h, g.f_h, g.in_h);
        for ox in 0..g.out_w {
            let (x0, nx) = window(ox, g.stride_w, g.pad_w, g.f_w, g.in_w);
            let count = i32::try_from(ny.saturating_mul(nx)).map_err(|_| Error::ShapeMismatch)?;
            if count == 0 {
                return Err(Error::ShapeMismatch);
            }
            for c in 0..g.channels {
                let mut sum = 0i32;
                let mut max = i32::MIN;
                for y in y0..y0 + ny {
                    for x in x0..x0 + nx {
                        let v = i32::from(
                            *input
                                .get((y * g.in_w + x) * g.channels + c)
                                .ok_or(Error::OutOfBounds)? as i8,
                        );
                        sum = sum.saturating_add(v);
                        max = max.max(v);
                    }
                }
                let v = if average {
                    // Rounds half away from zero, as TFLite's integer average pool.
                    if sum > 0 {
                        (sum + count / 2) / count
                    } else {
                        (sum - count / 2) / count
                    }
                } else {
                    max
                };
                *output
                    .get_mut((oy * g.out_w + ox) * g.channels + c)
                    .ok_or(Error::OutOfBounds)? = v.clamp(op.act_min, op.act_max) as i8 as u8;
            }
        }
    }
    Ok(())
}
