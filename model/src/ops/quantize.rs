//! QUANTIZE (float32 to int8, and int8 to int8 at another scale) and DEQUANTIZE (int8 to
//! float32): how float32 tensors at the graph's boundary meet the int8 graph.

use super::{Activation, Ctx, Op, OpKind, int8_activation};
use crate::Error;
use crate::graph::ElemType;
use crate::quant::quantize_multiplier;

pub(super) fn quantize(cx: &Ctx<'_, '_>, op: &mut Op) -> Result<Option<Activation>, Error> {
    let tin = cx.tensor(op.input)?;
    let tout = cx.tensor(op.output)?;
    int8_activation(tout)?;
    if tin.len != tout.len || tin.data.is_some() {
        return Err(Error::ShapeMismatch);
    }
    op.kind = match tin.ty {
        ElemType::Float32 => OpKind::Quantize { scale: tout.scale },
        ElemType::Int8 => {
            let (multiplier, shift) =
                quantize_multiplier(f64::from(tin.scale) / f64::from(tout.scale));
            if multiplier == 0 {
                return Err(Error::UnsupportedQuantization);
            }
            OpKind::Requantize { multiplier, shift }
        }
        ElemType::Int32 => return Err(Error::UnsupportedType),
    };
    Ok(None)
}

pub(super) fn dequantize(cx: &Ctx<'_, '_>, op: &mut Op) -> Result<Option<Activation>, Error> {
    let tin = cx.tensor(op.input)?;
    let tout = cx.tensor(op.output)?;
    int8_activation(tin)?;
    if tout.ty != ElemType::Float32 {
        return Err(Error::UnsupportedType);
    }
    if tin.len != tout.len {
        return Err(Error::ShapeMismatch);
    }
    op.kind = OpKind::Dequantize { scale: tin.scale };
    Ok(None)
}
