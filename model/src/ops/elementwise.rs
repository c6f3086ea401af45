//! ADD, SUB and MUL of two int8 operands (either may be a constant), with TFLite's broadcasting
//! over up to four dimensions.

use super::{Activation, AddParams, Ctx, Op, OpKind, fused, int8_activation};
use crate::Error;
use crate::graph::{ElemType, Tensor};
use crate::quant::quantize_multiplier;
use crate::schema::{field, options};

/// The two operands: int8, each computed or constant, with shapes that broadcast to the output's.
fn operands<'t, 'a>(
    cx: &'t Ctx<'_, 'a>,
    op: &Op,
) -> Result<(&'t Tensor<'a>, &'t Tensor<'a>), Error> {
    if op.n_inputs != 2 {
        return Err(Error::Malformed);
    }
    let a = cx.tensor(op.input)?;
    let b = cx.tensor(op.input_at(1).ok_or(Error::Malformed)?)?;
    let out = cx.tensor(op.output)?;
    int8_activation(out)?;
    if a.ty != ElemType::Int8 || b.ty != ElemType::Int8 {
        return Err(Error::UnsupportedType);
    }
    let (da, db, dout) = (a.dims4(), b.dims4(), out.dims4());
    for i in 0..4 {
        let ok = da[i] == db[i] || da[i] == 1 || db[i] == 1;
        if !ok || dout[i] != da[i].max(db[i]) {
            return Err(Error::ShapeMismatch);
        }
    }
    Ok((a, b))
}

pub(super) fn add_sub(
    cx: &Ctx<'_, '_>,
    op: &mut Op,
    sub: bool,
) -> Result<Option<Activation>, Error> {
    let act = fused(
        cx.options(if sub { options::SUB } else { options::ADD })?
            .u8(field::add_sub::ACTIVATION, 0)?,
    )?;
    let (a, b) = operands(cx, op)?;
    let out = cx.tensor(op.output)?;
    // As TFLite's Prepare: both inputs to a common scale (twice the larger), shifted left 20
    // bits for headroom, and the sum back to the output's scale.
    let left_shift = 20;
    let twice_max = 2.0 * f64::from(a.scale.max(b.scale));
    let smaller_than_one = |m: f64| -> Result<(i32, i32), Error> {
        let (q, s) = quantize_multiplier(m);
        if s > 0 || q == 0 {
            return Err(Error::UnsupportedQuantization);
        }
        Ok((q, s))
    };
    let (input1_multiplier, input1_shift) = smaller_than_one(f64::from(a.scale) / twice_max)?;
    let (input2_multiplier, input2_shift) = smaller_than_one(f64::from(b.scale) / twice_max)?;
    let (output_multiplier, output_shift) =
        smaller_than_one(twice_max / f64::from((1 << left_shift) as f32 * out.scale))?;
    let p = AddParams {
        input2_offset: -b.zero_point,
        left_shift,
        input1_multiplier,
        input1_shift,
        input2_multiplier,
        input2_shift,
        output_multiplier,
        output_shift,
    };
    op.kind = if sub { OpKind::Sub(p) } else { OpKind::Add(p) };
    Ok(Some(act))
}

pub(super) fn mul(cx: &Ctx<'_, '_>, op: &mut Op) -> Result<Option<Activation>, Error> {
    let act = fused(cx.options(options::MUL)?.u8(field::mul::ACTIVATION, 0)?)?;
    let (a, b) = operands(cx, op)?;
    let out = cx.tensor(op.output)?;
    let (multiplier, shift) =
        quantize_multiplier(f64::from(a.scale) * f64::from(b.scale) / f64::from(out.scale));
    if multiplier == 0 {
        return Err(Error::UnsupportedQuantization);
    }
    op.kind = OpKind::Mul {
        input2_offset: -b.zero_point,
        multiplier,
        shift,
    };
    Ok(Some(act))
}
