//! AVERAGE_POOL_2D and MAX_POOL_2D: window geometry; input and output share quantization.

use super::conv::out_and_pad;
use super::{
    Activation, Ctx, Op, OpKind, PoolGeom, fused, int8_in_out, positive, same_quantization,
};
use crate::Error;
use crate::schema::{field, options};

pub(super) fn pool(cx: &Ctx<'_, '_>, op: &mut Op, max: bool) -> Result<Option<Activation>, Error> {
    use field::pool as f;
    let (tin, tout) = int8_in_out(cx, op)?;
    let o = cx.options(options::POOL_2D)?;
    let act = fused(o.u8(f::ACTIVATION, 0)?)?;
    let [ib, in_h, in_w, c] = tin.shape4()?;
    let [ob, out_h, out_w, oc] = tout.shape4()?;
    let (f_h, f_w) = (
        positive(o.i32(f::FILTER_H, 0)?)?,
        positive(o.i32(f::FILTER_W, 0)?)?,
    );
    let (sh, sw) = (
        positive(o.i32(f::STRIDE_H, 0)?)?,
        positive(o.i32(f::STRIDE_W, 0)?)?,
    );
    let pad = o.u8(f::PADDING, 0)?;
    let (oh, pad_h) = out_and_pad(pad, in_h, f_h, sh, 1)?;
    let (ow, pad_w) = out_and_pad(pad, in_w, f_w, sw, 1)?;
    if ib != 1 || ob != 1 || oc != c || (oh, ow) != (out_h, out_w) {
        return Err(Error::ShapeMismatch);
    }
    same_quantization(tin, tout)?;
    let g = PoolGeom {
        in_h,
        in_w,
        channels: c,
        out_h,
        out_w,
        f_h,
        f_w,
        stride_h: sh,
        stride_w: sw,
        pad_h,
        pad_w,
    };
    op.kind = if max {
        OpKind::MaxPool2d(g)
    } else {
        OpKind::AveragePool2d(g)
    };
    Ok(Some(act))
}
