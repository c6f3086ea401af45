//! SOFTMAX: int8 in, probabilities out at scale 1/256 and zero point -128.

use super::{Activation, Ctx, Op, OpKind, int8_in_out};
use crate::Error;
use crate::schema::{field, options};

pub(super) fn softmax(cx: &Ctx<'_, '_>, op: &mut Op) -> Result<Option<Activation>, Error> {
    let (tin, tout) = int8_in_out(cx, op)?;
    let beta = cx
        .options(options::SOFTMAX)?
        .f32(field::softmax::BETA, 0.0)?;
    if tin.len != tout.len || tin.rank == 0 {
        return Err(Error::ShapeMismatch);
    }
    if tout.zero_point != -128 || tout.scale != 1.0 / 256.0 {
        return Err(Error::UnsupportedQuantization);
    }
    let depth = tin.dim(tin.rank - 1);
    let (input_multiplier, input_left_shift, diff_min) =
        crate::kernels::softmax::prepare(beta, tin.scale)?;
    op.kind = OpKind::Softmax {
        rows: tin.len / depth,
        depth,
        input_multiplier,
        input_left_shift,
        diff_min,
    };
    Ok(None)
}
