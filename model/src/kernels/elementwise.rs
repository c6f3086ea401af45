//! ADD, SUB and MUL on int8 with broadcasting, arithmetic as TFLite's reference integer kernels.

use crate::Error;
use crate::graph::{MAX_DIMS, Op, Tensor};
use crate::ops::AddParams;
use crate::quant::{multiply_by_quantized_multiplier, rounding_divide_by_pot, srdhm};

/// Element strides of `t` over the output's four dimensions (0 along a broadcast axis).
fn strides(t: &Tensor<'_>) -> [usize; MAX_DIMS] {
    let d = t.dims4();
    let mut s = [0; MAX_DIMS];
    let mut step = 1;
    for i in (0..MAX_DIMS).rev() {
        s[i] = if d[i] == 1 { 0 } else { step };
        step *= d[i];
    }
    s
}

/// Applies `f` to every pair of (broadcast) operands, writing the output in order.
fn broadcast(
    a: (&Tensor<'_>, &[u8]),
    b: (&Tensor<'_>, &[u8]),
    out: (&Tensor<'_>, &mut [u8]),
    f: impl Fn(i32, i32) -> i32,
) -> Result<(), Error> {
    let (ta, xa) = a;
    let (tb, xb) = b;
    let (tout, y) = out;
    let val = |x: &[u8], i: usize| {
        x.get(i)
            .map(|&v| i32::from(v as i8))
            .ok_or(Error::OutOfBounds)
    };
    if ta.len == tout.len && tb.len == tout.len {
        for (i, o) in y.iter_mut().enumerate() {
            *o = f(val(xa, i)?, val(xb, i)?) as i8 as u8;
        }
        return Ok(());
    }
    let d = tout.dims4();
    let (sa, sb) = (strides(ta), strides(tb));
    let mut at = 0;
    for i0 in 0..d[0] {
        for i1 in 0..d[1] {
            for i2 in 0..d[2] {
                for i3 in 0..d[3] {
                    let ia = i0 * sa[0] + i1 * sa[1] + i2 * sa[2] + i3 * sa[3];
                    let ib = i0 * sb[0] + i1 * sb[1] + i2 * sb[2] + i3 * sb[3];
                    *y.get_mut(at).ok_or(Error::OutOfBounds)? =
                        f(val(xa, ia)?, val(xb, ib)?) as i8 as u8;
                    at += 1;
                }
            }
        }
    }
    Ok(())
}

/// TFLite's `MultiplyByQuantizedMultiplierSmallerThanOneExp` (shift <= 0).
#[inline(always)]
fn scale_down(x: i32, multiplier: i32, shift: i32) -> i32 {
    rounding_divide_by_pot(srdhm(x, multiplier), -shift)
}

pub fn add_sub(
    op: &Op,
    p: &AddParams,
    sub: bool,
    a: (&Tensor<'_>, &[u8]),
    b: (&Tensor<'_>, &[u8]),
    out: (&Tensor<'_>, &mut [u8]),
) -> Result<(), Error> {
    broadcast(a, b, out, |x1, x2| {
        let s1 = scale_down(
            (x1 + op.input_offset).wrapping_mul(1 << p.left_shift),
            p.input1_multiplier,
            p.input1_shift,
        );
        let s2 = scale_down(
            (x2 + p.input2_offset).wrapping_mul(1 << p.left_shift),
            p.input2_multiplier,
            p.input2_shift,
        );
        let raw = if sub {
            s1.wrapping_sub(s2)
        } else {
            s1.wrapping_add(s2)
        };
        scale_down(raw, p.output_multiplier, p.output_shift)
            .saturating_add(op.output_offset)
            .clamp(op.act_min, op.act_max)
    })
}

pub fn mul(
    op: &Op,
    input2_offset: i32,
    multiplier: i32,
    shift: i32,
    a: (&Tensor<'_>, &[u8]),
    b: (&Tensor<'_>, &[u8]),
    out: (&Tensor<'_>, &mut [u8]),
) -> Result<(), Error> {
    broadcast(a, b, out, |x1, x2| {
        let product = (x1 + op.input_offset) * (x2 + input2_offset);
        multiply_by_quantized_multiplier(product, multiplier, shift)
            .saturating_add(op.output_offset)
            .clamp(op.act_min, op.act_max)
    })
}
