//! Stand-alone activations on int8: RELU, RELU6, LEAKY_RELU, HARD_SWISH (integer arithmetic,
//! parameters prepared here) and LOGISTIC, TANH (lookup tables built by the interpreter).

use super::{Activation, Ctx, HardSwishParams, Op, OpKind, int8_in_out};
use crate::Error;
use crate::quant::quantize_multiplier;
use crate::schema::{field, options};

fn one_in_one_out(cx: &Ctx<'_, '_>, op: &Op) -> Result<(), Error> {
    let (tin, tout) = int8_in_out(cx, op)?;
    if tin.len != tout.len {
        return Err(Error::ShapeMismatch);
    }
    Ok(())
}

fn multiplier(real: f64) -> Result<(i32, i32), Error> {
    match quantize_multiplier(real) {
        (0, _) => Err(Error::UnsupportedQuantization),
        m => Ok(m),
    }
}

pub(super) fn relu(cx: &Ctx<'_, '_>, op: &mut Op, six: bool) -> Result<Option<Activation>, Error> {
    one_in_one_out(cx, op)?;
    let (tin, tout) = (cx.tensor(op.input)?, cx.tensor(op.output)?);
    // TFLite divides the scales in f32, then widens.
    let (multiplier, shift) = multiplier(f64::from(tin.scale / tout.scale))?;
    op.kind = if six {
        OpKind::Relu6 { multiplier, shift }
    } else {
        OpKind::Relu { multiplier, shift }
    };
    Ok(Some(if six {
        Activation::Relu6
    } else {
        Activation::Relu
    }))
}

pub(super) fn leaky_relu(cx: &Ctx<'_, '_>, op: &mut Op) -> Result<Option<Activation>, Error> {
    one_in_one_out(cx, op)?;
    let (tin, tout) = (cx.tensor(op.input)?, cx.tensor(op.output)?);
    let alpha = cx
        .options(options::LEAKY_RELU)?
        .f32(field::leaky_relu::ALPHA, 0.0)?;
    if !(alpha > 0.0 && alpha.is_finite()) {
        return Err(Error::UnsupportedOption);
    }
    let (alpha_multiplier, alpha_shift) = multiplier(f64::from(tin.scale * alpha / tout.scale))?;
    let (identity_multiplier, identity_shift) = multiplier(f64::from(tin.scale / tout.scale))?;
    op.kind = OpKind::LeakyRelu {
        alpha_multiplier,
        alpha_shift,
        identity_multiplier,
        identity_shift,
    };
    Ok(None)
}

/// TFLite's `DownScaleInt32ToInt16Multiplier`.
fn to_int16(m: i32) -> i16 {
    if m >= i32::MAX - (1 << 15) {
        return i16::MAX;
    }
    ((m + (1 << 15)) >> 16) as i16
}

pub(super) fn hard_swish(cx: &Ctx<'_, '_>, op: &mut Op) -> Result<Option<Activation>, Error> {
    one_in_one_out(cx, op)?;
    let (tin, tout) = (cx.tensor(op.input)?, cx.tensor(op.output)?);
    let hires_input_scale = (1.0f32 / 128.0) * tin.scale;
    let reluish_scale = 3.0f32 / 32768.0;
    let (om, output_exponent) = multiplier(f64::from(hires_input_scale / tout.scale))?;
    let (rm, reluish_exponent) = multiplier(f64::from(hires_input_scale / reluish_scale))?;
    if output_exponent > 0 {
        return Err(Error::UnsupportedQuantization);
    }
    op.kind = OpKind::HardSwish(HardSwishParams {
        output_multiplier: to_int16(om),
        output_exponent,
        reluish_multiplier: to_int16(rm),
        reluish_exponent,
    });
    Ok(None)
}

pub(super) fn lut(cx: &Ctx<'_, '_>, op: &mut Op, tanh: bool) -> Result<Option<Activation>, Error> {
    one_in_one_out(cx, op)?;
    let tout = cx.tensor(op.output)?;
    // TFLite's int8 output quantization of these two: [0, 1) and [-1, 1) over 256 steps.
    let (scale, zero) = if tanh {
        (1.0 / 128.0, 0)
    } else {
        (1.0 / 256.0, -128)
    };
    if tout.scale != scale || tout.zero_point != zero {
        return Err(Error::UnsupportedQuantization);
    }
    op.kind = if tanh { OpKind::Tanh } else { OpKind::Logistic };
    Ok(None)
}
