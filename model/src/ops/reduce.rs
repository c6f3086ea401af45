//! MEAN over height and width of an NHWC int8 tensor (global average pooling as Keras exports
//! it), with the arithmetic TFLite's reference kernel picks for the case.

use super::shape::{int32_at, int32_constant};
use super::{Activation, Ctx, Op, OpKind, int8_in_out};
use crate::Error;
use crate::quant::quantize_multiplier;
use crate::schema::{field, options};

pub(super) fn mean(cx: &Ctx<'_, '_>, op: &mut Op) -> Result<Option<Activation>, Error> {
    let (tin, tout) = int8_in_out(cx, op)?;
    if op.n_inputs != 2 {
        return Err(Error::Malformed);
    }
    let keep_dims = cx
        .options(options::REDUCER)?
        .bool(field::reducer::KEEP_DIMS)?;
    let [b, h, w, c] = tin.shape4()?;
    let axis_t = cx.tensor(op.input_at(1).ok_or(Error::Malformed)?)?;
    let axes = int32_constant(axis_t, 2).map_err(|e| match e {
        Error::ShapeMismatch => Error::UnsupportedOption,
        e => e,
    })?;
    let norm = |a: i32| if a < 0 { a + 4 } else { a };
    let (a0, a1) = (norm(int32_at(axes, 0)), norm(int32_at(axes, 1)));
    if !((a0, a1) == (1, 2) || (a0, a1) == (2, 1)) {
        return Err(Error::UnsupportedOption);
    }
    let shape_ok = if keep_dims {
        tout.rank == 4 && tout.dims4() == [b, 1, 1, c]
    } else {
        tout.rank == 2 && tout.dim(0) == b && tout.dim(1) == c
    };
    if !shape_ok {
        return Err(Error::ShapeMismatch);
    }
    // TFLite 2.21's reference kernel: the scale ratio's multiplier with the division by the
    // element count folded in, keeping as many bits as the count needs (at most 32).
    let (multiplier, shift) = quantize_multiplier(f64::from(tin.scale) / f64::from(tout.scale));
    if multiplier == 0 {
        return Err(Error::UnsupportedQuantization);
    }
    let n = h.checked_mul(w).ok_or(Error::TooLarge)?;
    let n64 = i64::try_from(n).map_err(|_| Error::TooLarge)?;
    let fold = (n64.ilog2() as i32).min(32).min(31 + shift);
    let multiplier = i32::try_from((i64::from(multiplier) << fold) / n64)
        .map_err(|_| Error::UnsupportedQuantization)?;
    op.kind = OpKind::Mean {
        h,
        w,
        c,
        multiplier,
        shift: shift - fold,
    };
    Ok(None)
}
