//! CONV_2D and DEPTHWISE_CONV_2D, int8 with per-channel requantization (NHWC, batch 1).
//!
//! Loop order keeps the per-multiply-accumulate work small on a Cortex-M: border clipping is
//! worked out once per output pixel, and with no horizontal dilation a whole filter row
//! (`kx` by input channel) is one contiguous dot product.

use super::{bias_at, channel_quant, dot, requantize};
use crate::Error;
use crate::graph::{ConvGeom, Op};

/// Input index of filter tap `k` for output position `o`, if it falls inside the input.
#[inline(always)]
pub(super) fn tap(
    o: usize,
    k: usize,
    stride: usize,
    dilation: usize,
    pad: usize,
    size: usize,
) -> Option<usize> {
    o.checked_mul(stride)?
        .checked_add(k.checked_mul(dilation)?)?
        .checked_sub(pad)
        .filter(|&i| i < size)
}

/// The taps `lo..hi` of a filter of `k` taps that fall inside the input (contiguous).
#[inline]
fn valid_taps(
    o: usize,
    k: usize,
    stride: usize,
    dilation: usize,
    pad: usize,
    size: usize,
) -> (usize, usize) {
    let inside = |t: usize| tap(o, t, stride, dilation, pad, size).is_some();
    let lo = (0..k).find(|&t| inside(t)).unwrap_or(k);
    let hi = (lo..k).find(|&t| !inside(t)).unwrap_or(k);
    (lo, hi)
}

/// Filter heights handled by the precomputed-rows path.
const MAX_ROWS: usize = 16;

pub fn conv2d(
    g: &ConvGeom,
    op: &Op,
    input: &[u8],
    filter: &[u8],
    bias: Option<&[u8]>,
    params: &[u8],
    output: &mut [u8],
) -> Result<(), Error> {
    let row = g.in_c;
    for oy in 0..g.out_h {
        let (ky0, ky1) = valid_taps(oy, g.k_h, g.stride_h, g.dilation_h, g.pad_h, g.in_h);
        for ox in 0..g.out_w {
            let (kx0, kx1) = valid_taps(ox, g.k_w, g.stride_w, g.dilation_w, g.pad_w, g.in_w);
            let base = (oy * g.out_w + ox) * g.out_c;
            let pixel = output
                .get_mut(base..base + g.out_c)
                .ok_or(Error::OutOfBounds)?;
            // Input offset of each valid filter row for this pixel, worked out once for all
            // output channels (filters taller than this fall back to per-tap indexing).
            let mut rows = [0usize; MAX_ROWS];
            let contiguous = g.dilation_w == 1 && ky1 - ky0 <= MAX_ROWS;
            if contiguous {
                let ix0 = tap(ox, kx0, g.stride_w, 1, g.pad_w, g.in_w).unwrap_or(0);
                for (r, ky) in rows.iter_mut().zip(ky0..ky1) {
                    let iy = tap(oy, ky, g.stride_h, g.dilation_h, g.pad_h, g.in_h)
                        .ok_or(Error::OutOfBounds)?;
                    *r = (iy * g.in_w + ix0) * row;
                }
            }
            let n = (kx1 - kx0) * row;
            for (oc, out) in pixel.iter_mut().enumerate() {
                let mut acc = bias_at(bias, oc);
                if contiguous {
                    let mut fa = ((oc * g.k_h + ky0) * g.k_w + kx0) * row;
                    for &at in rows.iter().take(ky1 - ky0) {
                        let x = input.get(at..at + n).ok_or(Error::OutOfBounds)?;
                        let w = filter.get(fa..fa + n).ok_or(Error::OutOfBounds)?;
                        acc = acc.wrapping_add(dot(w, x, op.input_offset));
                        fa += g.k_w * row;
                    }
                } else {
                    for ky in ky0..ky1 {
                        let iy = tap(oy, ky, g.stride_h, g.dilation_h, g.pad_h, g.in_h)
                            .ok_or(Error::OutOfBounds)?;
                        for kx in kx0..kx1 {
                            let ix = tap(ox, kx, g.stride_w, g.dilation_w, g.pad_w, g.in_w)
                                .ok_or(Error::OutOfBounds)?;
                            let at = (iy * g.in_w + ix) * row;
                            let x = input.get(at..at + row).ok_or(Error::OutOfBounds)?;
                            let fa = (((oc * g.k_h + ky) * g.k_w) + kx) * row;
                            let w = filter.get(fa..fa + row).ok_or(Error::OutOfBounds)?;
                            acc = acc.wrapping_add(dot(w, x, op.input_offset));
                        }
                    }
                }
                *out = requantize(
                    acc,
                    channel_quant(params, oc)?,
                    op.output_offset,
                    op.act_min,
                    op.act_max,
                );
            }
        }
    }
    Ok(())
}

/// Output channels accumulated together in the depthwise kernel.
const CHUNK: usize = 32;

pub fn depthwise_conv2d(
    g: &ConvGeom,
    op: &Op,
    input: &[u8],
    filter: &[u8],
    bias: Option<&[u8]>,
    params: &[u8],
    output: &mut [u8],
) -> Result<(), Error> {
    let mut acc = [0i32; CHUNK];
    for oy in 0..g.out_h {
        let (ky0, ky1) = valid_taps(oy, g.k_h, g.stride_h, g.dilation_h, g.pad_h, g.in_h);
        for ox in 0..g.out_w {
            let (kx0, kx1) = valid_taps(ox, g.k_w, g.stride_w, g.dilation_w, g.pad_w, g.in_w);
            for c0 in (0..g.out_c).step_by(CHUNK) {
                let n = CHUNK.min(g.out_c - c0);
                let acc = acc.get_mut(..n).ok_or(Error::OutOfBounds)?;
                for (j, a) in acc.iter_mut().enumerate() {
                    *a = bias_at(bias, c0 + j);
                }
                for ky in ky0..ky1 {
                    let iy = tap(oy, ky, g.stride_h, g.dilation_h, g.pad_h, g.in_h)
                        .ok_or(Error::OutOfBounds)?;
                    for kx in kx0..kx1 {
                        let ix = tap(ox, kx, g.stride_w, g.dilation_w, g.pad_w, g.in_w)
                            .ok_or(Error::OutOfBounds)?;
                        let px = (iy * g.in_w + ix) * g.in_c;
                        let fa = (ky * g.k_w + kx) * g.out_c + c0;
                        let w = filter.get(fa..fa + n).ok_or(Error::OutOfBounds)?;
                        if g.depth_multiplier == 1 {
                            let x = input.get(px + c0..px + c0 + n).ok_or(Error::OutOfBounds)?;
                            for ((a, &w), &x) in acc.iter_mut().zip(w).zip(x) {
                                *a = a.wrapping_add(
                                    i32::from(w as i8) * (i32::from(x as i8) + op.input_offset),
                                );
                            }
                        } else {
                            for (j, (a, &w)) in acc.iter_mut().zip(w).enumerate() {
                                let ic = (c0 + j) / g.depth_multiplier;
                                let x = *input.get(px + ic).ok_or(Error::OutOfBounds)?;
                                *a = a.wrapping_add(
                                    i32::from(w as i8) * (i32::from(x as i8) + op.input_offset),
                                );
                            }
                        }
                    }
                }
                let base = (oy * g.out_w + ox) * g.out_c + c0;
                let out = output.get_mut(base..base + n).ok_or(Error::OutOfBounds)?;
                for (j, (o, &a)) in out.iter_mut().zip(acc.iter()).enumerate() {
                    *o = requantize(
                        a,
                        channel_quant(params, c0 + j)?,
                        op.output_offset,
                        op.act_min,
                        op.act_max,
                    );
                }
            }
        }
    }
    Ok(())
}
