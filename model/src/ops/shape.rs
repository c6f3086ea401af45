//! Operators that move int8 values without arithmetic: RESHAPE, PAD, CONCATENATION and
//! STRIDED_SLICE. Their constant inputs (paddings, begin/end/strides) are checked here and
//! read again by the kernels.

use super::{Activation, Ctx, Op, OpKind, int8_activation, int8_in_out, same_quantization};
use crate::Error;
use crate::graph::{ElemType, MAX_DIMS, Tensor};
use crate::schema::{activation, field, options};

pub(super) fn reshape(cx: &Ctx<'_, '_>, op: &mut Op) -> Result<Option<Activation>, Error> {
    let (tin, tout) = int8_in_out(cx, op)?;
    if tin.len != tout.len {
        return Err(Error::ShapeMismatch);
    }
    same_quantization(tin, tout)?;
    op.kind = OpKind::Reshape;
    Ok(None)
}

/// A constant int32 tensor of exactly `len` elements.
pub(crate) fn int32_constant<'a>(t: &Tensor<'a>, len: usize) -> Result<&'a [u8], Error> {
    if t.ty != ElemType::Int32 {
        return Err(Error::UnsupportedType);
    }
    let data = t.data.ok_or(Error::MissingData)?;
    if t.len != len {
        return Err(Error::ShapeMismatch);
    }
    Ok(data)
}

/// Element `i` of little-endian int32 data (0 beyond its end: callers checked the length).
pub(crate) fn int32_at(data: &[u8], i: usize) -> i32 {
    data.get(i * 4..i * 4 + 4)
        .map_or(0, |b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// The paddings of PAD: (before, after) per axis of the input, extended to four axes.
pub(crate) fn paddings(
    input: &Tensor<'_>,
    paddings: &Tensor<'_>,
) -> Result<[(usize, usize); MAX_DIMS], Error> {
    let data = int32_constant(paddings, input.rank * 2)?;
    let mut out = [(0, 0); MAX_DIMS];
    let skip = MAX_DIMS - input.rank;
    for (axis, p) in out.iter_mut().skip(skip).enumerate() {
        let before = usize::try_from(int32_at(data, axis * 2)).map_err(|_| Error::ShapeMismatch)?;
        let after =
            usize::try_from(int32_at(data, axis * 2 + 1)).map_err(|_| Error::ShapeMismatch)?;
        *p = (before, after);
    }
    Ok(out)
}

pub(super) fn pad(cx: &Ctx<'_, '_>, op: &mut Op) -> Result<Option<Activation>, Error> {
    let (tin, tout) = int8_in_out(cx, op)?;
    if op.n_inputs != 2 {
        return Err(Error::Malformed);
    }
    let pads = paddings(tin, cx.tensor(op.input_at(1).ok_or(Error::Malformed)?)?)?;
    let (din, dout) = (tin.dims4(), tout.dims4());
    for i in 0..MAX_DIMS {
        let want = din[i]
            .checked_add(pads[i].0)
            .and_then(|n| n.checked_add(pads[i].1))
            .ok_or(Error::TooLarge)?;
        if dout[i] != want {
            return Err(Error::ShapeMismatch);
        }
    }
    if tin.rank != tout.rank {
        return Err(Error::ShapeMismatch);
    }
    same_quantization(tin, tout)?;
    op.kind = OpKind::Pad;
    Ok(None)
}

pub(super) fn concatenation(cx: &Ctx<'_, '_>, op: &mut Op) -> Result<Option<Activation>, Error> {
    let tout = cx.tensor(op.output)?;
    int8_activation(tout)?;
    let o = cx.options(options::CONCATENATION)?;
    if o.u8(field::concatenation::ACTIVATION, 0)? != activation::NONE {
        return Err(Error::UnsupportedActivation);
    }
    let rank = i32::try_from(tout.rank).map_err(|_| Error::ShapeMismatch)?;
    let mut axis = o.i32(field::concatenation::AXIS, 0)?;
    if axis < 0 {
        axis += rank;
    }
    if !(0..rank).contains(&axis) {
        return Err(Error::ShapeMismatch);
    }
    let axis = axis as usize;
    let mut along = 0usize;
    for i in 0..op.n_inputs {
        let t = cx.tensor(op.input_at(i).ok_or(Error::Malformed)?)?;
        if t.ty != ElemType::Int8 {
            return Err(Error::UnsupportedType);
        }
        // TFLite's int8 CONCATENATION copies bytes: every input at the output's quantization.
        same_quantization(t, tout)?;
        if t.rank != tout.rank || (0..tout.rank).any(|d| d != axis && t.dim(d) != tout.dim(d)) {
            return Err(Error::ShapeMismatch);
        }
        along = along.checked_add(t.dim(axis)).ok_or(Error::TooLarge)?;
    }
    if along != tout.dim(axis) {
        return Err(Error::ShapeMismatch);
    }
    op.kind = OpKind::Concatenation { axis };
    Ok(None)
}

/// One axis of a strided slice: first index, stride, and how many elements it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SliceAxis {
    pub start: i32,
    pub stride: i32,
    pub count: usize,
}

/// Resolves begin, end and strides per axis as TFLite's `StartForAxis` and `StopForAxis`
/// (negative indices from the end, masks, clamping), extended to four axes.
pub(crate) fn slice_axes(
    cx_tensors: &[Tensor<'_>],
    op: &Op,
) -> Result<[SliceAxis; MAX_DIMS], Error> {
    let OpKind::StridedSlice {
        begin_mask,
        end_mask,
        shrink_axis_mask,
    } = op.kind
    else {
        return Err(Error::Malformed);
    };
    let get = |i: usize| -> Result<&Tensor<'_>, Error> {
        cx_tensors
            .get(op.input_at(i).ok_or(Error::Malformed)?)
            .ok_or(Error::OutOfBounds)
    };
    let tin = get(0)?;
    let rank = tin.rank;
    let (begin, end, strides) = (
        int32_constant(get(1)?, rank)?,
        int32_constant(get(2)?, rank)?,
        int32_constant(get(3)?, rank)?,
    );
    let mut axes = [SliceAxis {
        start: 0,
        stride: 1,
        count: 1,
    }; MAX_DIMS];
    let skip = MAX_DIMS - rank;
    for a in 0..rank {
        let size = i32::try_from(tin.dim(a)).map_err(|_| Error::TooLarge)?;
        let stride = int32_at(strides, a);
        if stride == 0 {
            return Err(Error::Malformed);
        }
        let clamp = |v: i32| {
            if stride > 0 {
                v.clamp(0, size)
            } else {
                v.clamp(-1, size - 1)
            }
        };
        let resolve = |v: i64| -> i32 {
            let v = if v < 0 { v + i64::from(size) } else { v };
            clamp(v.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32)
        };
        let bit = 1u32 << a;
        let start = if begin_mask & bit != 0 {
            if stride > 0 { 0 } else { size - 1 }
        } else {
            resolve(i64::from(int32_at(begin, a)))
        };
        let stop = if shrink_axis_mask & bit != 0 {
            start + 1
        } else if end_mask & bit != 0 {
            if stride > 0 { size } else { -1 }
        } else {
            resolve(i64::from(int32_at(end, a)))
        };
        let span = if stride > 0 {
            i64::from(stop) - i64::from(start)
        } else {
            i64::from(start) - i64::from(stop)
        };
        let step = i64::from(stride).abs();
        let count = if span > 0 {
            (span + step - 1) / step
        } else {
            0
        };
        axes[skip + a] = SliceAxis {
            start,
            stride,
            count: usize::try_from(count).map_err(|_| Error::TooLarge)?,
        };
    }
    Ok(axes)
}

pub(super) fn strided_slice(cx: &Ctx<'_, '_>, op: &mut Op) -> Result<Option<Activation>, Error> {
    use field::strided_slice as f;
    let (tin, tout) = int8_in_out(cx, op)?;
    if op.n_inputs != 4 {
        return Err(Error::Malformed);
    }
    let o = cx.options(options::STRIDED_SLICE)?;
    if o.i32(f::ELLIPSIS_MASK, 0)? != 0 || o.i32(f::NEW_AXIS_MASK, 0)? != 0 || o.bool(f::OFFSET)? {
        return Err(Error::UnsupportedOption);
    }
    let mask = |i: usize| o.i32(i, 0).map(|m| m as u32);
    op.kind = OpKind::StridedSlice {
        begin_mask: mask(f::BEGIN_MASK)?,
        end_mask: mask(f::END_MASK)?,
        shrink_axis_mask: mask(f::SHRINK_AXIS_MASK)?,
    };
    let OpKind::StridedSlice {
        shrink_axis_mask, ..
    } = op.kind
    else {
        return Err(Error::Malformed);
    };
    let axes = slice_axes(cx.tensors, op)?;
    // The output's shape is the kept axes' counts.
    let skip = MAX_DIMS - tin.rank;
    let mut kept = 0;
    for a in 0..tin.rank {
        let n = axes[skip + a].count;
        if shrink_axis_mask & (1 << a) != 0 {
            if n != 1 {
                return Err(Error::ShapeMismatch);
            }
            continue;
        }
        if kept >= tout.rank || tout.dim(kept) != n {
            return Err(Error::ShapeMismatch);
        }
        kept += 1;
    }
    let total: usize = axes.iter().map(|a| a.count).product();
    if kept != tout.rank || total != tout.len || total == 0 {
        return Err(Error::ShapeMismatch);
    }
    same_quantization(tin, tout)?;
    Ok(None)
}
