//! CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED: shapes, per-channel quantization, bias.

use super::{Activation, ConvGeom, Ctx, Op, OpKind, fused, int8_in_out, positive};
use crate::Error;
use crate::graph::{ElemType, Tensor};
use crate::schema::{field, options, padding};

pub(super) fn out_and_pad(
    pad: u8,
    input: usize,
    filter: usize,
    stride: usize,
    dilation: usize,
) -> Result<(usize, usize), Error> {
    let effective = filter
        .checked_sub(1)
        .and_then(|f| f.checked_mul(dilation))
        .and_then(|f| f.checked_add(1))
        .ok_or(Error::ShapeMismatch)?;
    let out = match pad {
        padding::SAME => input.checked_add(stride - 1).ok_or(Error::TooLarge)? / stride,
        padding::VALID => match input
            .checked_add(stride)
            .ok_or(Error::TooLarge)?
            .checked_sub(effective)
        {
            Some(n) => n / stride,
            None => 0,
        },
        _ => return Err(Error::Malformed),
    };
    if out == 0 {
        return Err(Error::ShapeMismatch);
    }
    let total = (out - 1)
        .checked_mul(stride)
        .and_then(|n| n.checked_add(effective))
        .ok_or(Error::TooLarge)?
        .saturating_sub(input);
    Ok((out, total / 2))
}

/// Int8 constant weights.
fn weights<'t, 'a>(cx: &'t Ctx<'_, 'a>, op: &Op) -> Result<(usize, &'t Tensor<'a>), Error> {
    let w = op.input_at(1).ok_or(Error::Malformed)?;
    let tw = cx.tensor(w)?;
    if tw.ty != ElemType::Int8 || tw.data.is_none() {
        return Err(Error::MissingData);
    }
    Ok((w, tw))
}

pub(super) fn conv(
    cx: &Ctx<'_, '_>,
    op: &mut Op,
    depthwise: bool,
) -> Result<Option<Activation>, Error> {
    let (tin, tout) = int8_in_out(cx, op)?;
    let o = cx.options(if depthwise {
        options::DEPTHWISE_CONV_2D
    } else {
        options::CONV_2D
    })?;
    let (pad, sw, sh, act_code, dw, dh, dm) = if depthwise {
        use field::depthwise as f;
        (
            o.u8(f::PADDING, 0)?,
            o.i32(f::STRIDE_W, 0)?,
            o.i32(f::STRIDE_H, 0)?,
            o.u8(f::ACTIVATION, 0)?,
            o.i32(f::DILATION_W, 1)?,
            o.i32(f::DILATION_H, 1)?,
            o.i32(f::DEPTH_MULTIPLIER, 0)?,
        )
    } else {
        use field::conv2d as f;
        (
            o.u8(f::PADDING, 0)?,
            o.i32(f::STRIDE_W, 0)?,
            o.i32(f::STRIDE_H, 0)?,
            o.u8(f::ACTIVATION, 0)?,
            o.i32(f::DILATION_W, 1)?,
            o.i32(f::DILATION_H, 1)?,
            1,
        )
    };
    let act = fused(act_code)?;
    let (w, tw) = weights(cx, op)?;
    let [_, in_h, in_w, in_c] = tin.shape4()?;
    let [wd0, k_h, k_w, wd3] = tw.shape4()?;
    let [ob, out_h, out_w, out_c] = tout.shape4()?;
    let dm = positive(dm)?;
    let (want_out_c, filter_in) = if depthwise {
        (in_c.checked_mul(dm).ok_or(Error::TooLarge)?, 1)
    } else {
        (wd0, in_c)
    };
    let filter_ok = if depthwise {
        wd0 == 1 && wd3 == out_c
    } else {
        wd3 == filter_in
    };
    if tin.dim(0) != 1 || ob != 1 || !filter_ok || out_c != want_out_c {
        return Err(Error::ShapeMismatch);
    }
    let (sh, sw, dh, dw) = (positive(sh)?, positive(sw)?, positive(dh)?, positive(dw)?);
    let (oh, pad_h) = out_and_pad(pad, in_h, k_h, sh, dh)?;
    let (ow, pad_w) = out_and_pad(pad, in_w, k_w, sw, dw)?;
    if (oh, ow) != (out_h, out_w) {
        return Err(Error::ShapeMismatch);
    }
    let g = ConvGeom {
        in_h,
        in_w,
        in_c,
        out_h,
        out_w,
        out_c,
        k_h,
        k_w,
        stride_h: sh,
        stride_w: sw,
        dilation_h: dh,
        dilation_w: dw,
        pad_h,
        pad_w,
        depth_multiplier: dm,
    };
    op.kind = if depthwise {
        OpKind::DepthwiseConv2d(g)
    } else {
        OpKind::Conv2d(g)
    };
    op.weights = Some(w);
    op.channels = out_c;
    check_channel_scales(tw, out_c)?;
    op.bias = check_bias(op.input_at(2), cx, out_c)?;
    Ok(Some(act))
}

pub(super) fn fully_connected(cx: &Ctx<'_, '_>, op: &mut Op) -> Result<Option<Activation>, Error> {
    let (tin, tout) = int8_in_out(cx, op)?;
    let o = cx.options(options::FULLY_CONNECTED)?;
    let act = fused(o.u8(field::fully_connected::ACTIVATION, 0)?)?;
    if o.u8(field::fully_connected::WEIGHTS_FORMAT, 0)? != 0 {
        return Err(Error::UnsupportedType);
    }
    let (w, tw) = weights(cx, op)?;
    if tw.rank != 2 {
        return Err(Error::ShapeMismatch);
    }
    let (units, depth) = (tw.dim(0), tw.dim(1));
    if tin.len % depth != 0 {
        return Err(Error::ShapeMismatch);
    }
    let batch = tin.len / depth;
    if tout.len != batch * units {
        return Err(Error::ShapeMismatch);
    }
    op.kind = OpKind::FullyConnected {
        batch,
        depth,
        units,
    };
    op.weights = Some(w);
    op.channels = units;
    check_channel_scales(tw, units)?;
    op.bias = check_bias(op.input_at(2), cx, units)?;
    Ok(Some(act))
}

fn check_channel_scales(w: &Tensor<'_>, channels: usize) -> Result<(), Error> {
    let n = w.channel_scales.len() / 4;
    if n != 0 && n != channels {
        return Err(Error::UnsupportedQuantization);
    }
    for c in 0..n.max(1) {
        let s = w.channel_scale(c);
        if !(s > 0.0 && s.is_finite()) {
            return Err(Error::UnsupportedQuantization);
        }
    }
    Ok(())
}

fn check_bias(
    bias: Option<usize>,
    cx: &Ctx<'_, '_>,
    channels: usize,
) -> Result<Option<usize>, Error> {
    let Some(b) = bias else { return Ok(None) };
    let t = cx.tensor(b)?;
    if t.ty != ElemType::Int32 {
        return Err(Error::UnsupportedType);
    }
    if t.data.is_none() {
        return Err(Error::MissingData);
    }
    if t.len != channels {
        return Err(Error::ShapeMismatch);
    }
    Ok(Some(b))
}
