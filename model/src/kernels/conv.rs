//! CONV_2D and DEPTHWISE_CONV_2D, int8 with per-channel requantization (NHWC, batch 1).

use super::{ChannelQuant, bias_at, channel_quant, dot, requantize};
use crate::Error;
use crate::graph::{ConvGeom, Op};

/// Input rows of the filter window that fall inside the image, for output position `o`.
#[inline]
fn tap(o: usize, k: usize, stride: usize, dilation: usize, pad: usize, size: usize) -> Option<usize> {
    o.checked_mul(stride)?.checked_add(k.checked_mul(dilation)?)?.checked_sub(pad).filter(|&i| i < size)
}

pub fn conv2d(g: &ConvGeom, op: &Op, input: &[u8], filter: &[u8], bias: Option<&[u8]>, params: &[u8], output: &mut [u8]) -> Result<(), Error> {
    let row = g.in_c;
    let mut quant = [ChannelQuant { multiplier: 0, shift: 0 }; 1];
    for oc in 0..g.out_c {
        quant[0] = channel_quant(params, oc)?;
        let b = bias_at(bias, oc);
        let f_base = oc * g.k_h * g.k_w * row;
        for oy in 0..g.out_h {
            for ox in 0..g.out_w {
                let mut acc = 0i32;
                for ky in 0..g.k_h {
                    let Some(iy) = tap(oy, ky, g.stride_h, g.dilation_h, g.pad_h, g.in_h) else { continue };
                    for kx in 0..g.k_w {
                        let Some(ix) = tap(ox, kx, g.stride_w, g.dilation_w, g.pad_w, g.in_w) else { continue };
                        let at = (iy * g.in_w + ix) * row;
                        let x = input.get(at..at + row).ok_or(Error::OutOfBounds)?;
                        let fa = f_base + (ky * g.k_w + kx) * row;
                        let w = filter.get(fa..fa + row).ok_or(Error::OutOfBounds)?;
                        acc = acc.wrapping_add(dot(w, x, op.input_offset));
                    }
                }
                let out = output.get_mut((oy * g.out_w + ox) * g.out_c + oc).ok_or(Error::OutOfBounds)?;
                *out = requantize(acc.wrapping_add(b), quant[0], op.output_offset, op.act_min, op.act_max);
            }
        }
    }
    Ok(())
}

pub fn depthwise_conv2d(g: &ConvGeom, op: &Op, input: &[u8], filter: &[u8], bias: Option<&[u8]>, params: &[u8], output: &mut [u8]) -> Result<(), Error> {
    for oc in 0..g.out_c {
        let q = channel_quant(params, oc)?;
        let b = bias_at(bias, oc);
        let ic = oc / g.depth_multiplier;
        for oy in 0..g.out_h {
            for ox in 0..g.out_w {
                let mut acc = 0i32;
                for ky in 0..g.k_h {
                    let Some(iy) = tap(oy, ky, g.stride_h, g.dilation_h, g.pad_h, g.in_h) else { continue };
                    for kx in 0..g.k_w {
                        let Some(ix) = tap(ox, kx, g.stride_w, g.dilation_w, g.pad_w, g.in_w) else { continue };
                        let x = *input.get((iy * g.in_w + ix) * g.in_c + ic).ok_or(Error::OutOfBounds)?;
                        let w = *filter.get((ky * g.k_w + kx) * g.out_c + oc).ok_or(Error::OutOfBounds)?;
                        acc = acc.wrapping_add(i32::from(w as i8) * (i32::from(x as i8) + op.input_offset));
                    }
                }
                let out = output.get_mut((oy * g.out_w + ox) * g.out_c + oc).ok_or(Error::OutOfBounds)?;
                *out = requantize(acc.wrapping_add(b), q, op.output_offset, op.act_min, op.act_max);
            }
        }
    }
    Ok(())
}
