//! Cortex-M4 DSP kernels for CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED: int8 pairs
//! widened to 16-bit lanes (SXTB16) and multiplied two at a time (SMLAD), bytes identical to
//! the portable kernels (and so to TFLite's reference kernels).
//!
//! The input offset is folded into each channel's bias when the interpreter is built
//! (`bias + input_offset * sum(weights)`), so the inner loops multiply raw int8 values; a
//! padded tap then must read the input zero point (`-input_offset`), whose product cancels
//! its share of the folded bias exactly. Sums wrap (mod 2^32) like TFLite's int32
//! accumulators, so the reordering is exact.
//!
//! Layers outside the bounds below run the portable kernels; stack scratch is at most
//! `MAX_PATCH * 5` bytes (2.9 KiB), in CONV_2D only.

mod simd;

use super::{ChannelQuant, requantize, requantize_single};
use crate::Error;
use crate::graph::{CHANNEL_PARAM_BYTES, ConvGeom, Op};
use simd::{smlabb, smlad, smlatt, sxtb16, sxtb16_ror8};

/// Largest CONV_2D patch (filter height x width x input channels) taken here, e.g. 3x3x64.
/// Scratch: two int16 columns (4 bytes per patch element) and one int8 patch.
pub const MAX_PATCH: usize = 576;
/// Largest depthwise filter (height x width) taken here.
pub const MAX_TAPS: usize = 64;

/// The four bytes of a 4-byte chunk as one little-endian word (one unaligned LDR on the M4).
#[inline(always)]
fn word(b: &[u8]) -> u32 {
    match b {
        [a, b, c, d, ..] => u32::from_le_bytes([*a, *b, *c, *d]),
        _ => 0,
    }
}

/// A channel's requantization and folded bias (the third word of its parameter record).
#[inline(always)]
fn record(params: &[u8], c: usize) -> Result<(ChannelQuant, i32), Error> {
    let at = c * CHANNEL_PARAM_BYTES;
    match params.get(at..at + 12) {
        Some(&[m0, m1, m2, m3, s0, s1, s2, s3, b0, b1, b2, b3]) => Ok((
            ChannelQuant {
                multiplier: i32::from_ne_bytes([m0, m1, m2, m3]),
                shift: i32::from_ne_bytes([s0, s1, s2, s3]),
            },
            i32::from_ne_bytes([b0, b1, b2, b3]),
        )),
        _ => Err(Error::OutOfBounds),
    }
}

/// The input zero point as an int8, if it is one (a padded tap reads it).
fn zero_point(op: &Op) -> Option<u8> {
    i8::try_from(op.input_offset.checked_neg()?)
        .ok()
        .map(|z| z as u8)
}

/// Widens a patch into lanes `J` (0 or 1) of the interleaved columns: for each 4 patch values
/// `[x0 x1 x2 x3]` the group holds `(x0,x2) (x1,x3)` of column 0, then the same of column 1.
/// The last `len % 4` values go to `tail`.
#[inline(always)]
fn widen<const J: usize>(patch: &[u8], cols: &mut [u32], tail: &mut [i32; 3]) {
    let groups = patch.chunks_exact(4);
    for (t, &x) in tail.iter_mut().zip(groups.remainder()) {
        *t = i32::from(x as i8);
    }
    for (g, c) in groups.zip(cols.chunks_exact_mut(4)) {
        let x = word(g);
        if let [e0, o0, e1, o1] = c {
            if J == 0 {
                (*e0, *o0) = (sxtb16(x), sxtb16_ror8(x));
            } else {
                (*e1, *o1) = (sxtb16(x), sxtb16_ror8(x));
            }
        }
    }
}

/// Two output channels (weight rows `w0`, `w1`) by two pixels (interleaved columns `cols`
/// and `tail`): four dot products, 16 multiply-accumulates per 4 loads and 8 SMLADs.
/// Returns `[w0.p0, w0.p1, w1.p0, w1.p1]` added to `acc`.
#[inline(always)]
fn block_2x2(cols: &[u32], tail: &[[i32; 3]; 2], w0: &[u8], w1: &[u8], acc: [i32; 4]) -> [i32; 4] {
    let [mut a00, mut a01, mut a10, mut a11] = acc;
    let r0 = w0.chunks_exact(4);
    let r1 = w1.chunks_exact(4);
    let (t0, t1) = (r0.remainder(), r1.remainder());
    for ((c, u), v) in cols.chunks_exact(4).zip(r0).zip(r1) {
        if let [xe0, xo0, xe1, xo1] = *c {
            let u = word(u);
            let (ue, uo) = (sxtb16(u), sxtb16_ror8(u));
            a00 = smlad(uo, xo0, smlad(ue, xe0, a00));
            a01 = smlad(uo, xo1, smlad(ue, xe1, a01));
            let v = word(v);
            let (ve, vo) = (sxtb16(v), sxtb16_ror8(v));
            a10 = smlad(vo, xo0, smlad(ve, xe0, a10));
            a11 = smlad(vo, xo1, smlad(ve, xe1, a11));
        }
    }
    for (((&u, &v), &x0), &x1) in t0.iter().zip(t1).zip(&tail[0]).zip(&tail[1]) {
        let (u, v) = (i32::from(u as i8), i32::from(v as i8));
        a00 = a00.wrapping_add(u * x0);
        a01 = a01.wrapping_add(u * x1);
        a10 = a10.wrapping_add(v * x0);
        a11 = a11.wrapping_add(v * x1);
    }
    [a00, a01, a10, a11]
}

/// Copies pixel (oy, ox)'s receptive field into `patch` (filter row by filter row, input
/// channels innermost, as the filter is laid out), the zero point where it overhangs.
fn gather(
    g: &ConvGeom,
    oy: usize,
    ox: usize,
    zp: u8,
    input: &[u8],
    patch: &mut [u8],
) -> Result<(), Error> {
    let c = g.in_c;
    let mut at = 0;
    for ky in 0..g.k_h {
        let iy = (oy * g.stride_h + ky * g.dilation_h)
            .checked_sub(g.pad_h)
            .filter(|&y| y < g.in_h);
        for kx in 0..g.k_w {
            let dst = patch.get_mut(at..at + c).ok_or(Error::OutOfBounds)?;
            let ix = (ox * g.stride_w + kx * g.dilation_w)
                .checked_sub(g.pad_w)
                .filter(|&x| x < g.in_w);
            match (iy, ix) {
                (Some(y), Some(x)) => {
                    let src = (y * g.in_w + x) * c;
                    dst.copy_from_slice(input.get(src..src + c).ok_or(Error::OutOfBounds)?);
                }
                _ => dst.fill(zp),
            }
            at += c;
        }
    }
    Ok(())
}

/// CONV_2D: two pixels' patches widened once into int16 columns, then two output channels by
/// two pixels per pass. A 1x1 convolution without padding widens the input pixel in place.
/// Returns `false` (nothing written) for a layer over the bounds: the caller runs the portable
/// kernel.
pub fn conv2d(
    g: &ConvGeom,
    op: &Op,
    input: &[u8],
    filter: &[u8],
    params: &[u8],
    output: &mut [u8],
) -> Result<bool, Error> {
    let k = g.k_h * g.k_w * g.in_c;
    let Some(zp) = zero_point(op) else {
        return Ok(false);
    };
    if k > MAX_PATCH || k == 0 {
        return Ok(false);
    }
    let pointwise = g.k_h == 1 && g.k_w == 1 && g.pad_h == 0 && g.pad_w == 0;
    let mut cols = [0u32; MAX_PATCH];
    let mut patch = [0u8; MAX_PATCH];
    let mut tail = [[0i32; 3]; 2];
    let cols = cols.get_mut(..k / 4 * 4).ok_or(Error::OutOfBounds)?;
    let pixels = g.out_h * g.out_w;
    let oc_n = g.out_c;
    for p in (0..pixels).step_by(2) {
        // An odd last pixel is computed twice (its copy lands on itself).
        let q = (p + 1).min(pixels - 1);
        for (j, px) in [p, q].into_iter().enumerate() {
            let (oy, ox) = (px / g.out_w, px % g.out_w);
            let src: &[u8] = if pointwise {
                let at = (oy * g.stride_h * g.in_w + ox * g.stride_w) * g.in_c;
                input.get(at..at + k).ok_or(Error::OutOfBounds)?
            } else {
                let patch = patch.get_mut(..k).ok_or(Error::OutOfBounds)?;
                gather(g, oy, ox, zp, input, patch)?;
                patch
            };
            let [t0, t1] = &mut tail;
            if j == 0 {
                widen::<0>(src, cols, t0);
            } else {
                widen::<1>(src, cols, t1);
            }
        }
        let out_p = p * oc_n;
        let out_q = q * oc_n;
        for oc in (0..oc_n).step_by(2) {
            let od = (oc + 1).min(oc_n - 1);
            let w0 = filter.get(oc * k..oc * k + k).ok_or(Error::OutOfBounds)?;
            let w1 = filter.get(od * k..od * k + k).ok_or(Error::OutOfBounds)?;
            let (q0, b0) = record(params, oc)?;
            let (q1, b1) = record(params, od)?;
            let acc = block_2x2(cols, &tail, w0, w1, [b0, b0, b1, b1]);
            let rq = |a, q| requantize(a, q, op.output_offset, op.act_min, op.act_max);
            for (at, v) in [
                (out_p + oc, rq(acc[0], q0)),
                (out_q + oc, rq(acc[1], q0)),
                (out_p + od, rq(acc[2], q1)),
                (out_q + od, rq(acc[3], q1)),
            ] {
                *output.get_mut(at).ok_or(Error::OutOfBounds)? = v;
            }
        }
    }
    Ok(true)
}

/// Four dot products of one int8 vector `x` with four int8 rows, `x` widened once per 4
/// values and shared by the rows.
#[inline(always)]
fn block_1x4(x: &[u8], w: [&[u8]; 4], acc: [i32; 4]) -> [i32; 4] {
    let [mut a0, mut a1, mut a2, mut a3] = acc;
    let xs = x.chunks_exact(4);
    let r0 = w[0].chunks_exact(4);
    let r1 = w[1].chunks_exact(4);
    let r2 = w[2].chunks_exact(4);
    let r3 = w[3].chunks_exact(4);
    let tails = [
        r0.remainder(),
        r1.remainder(),
        r2.remainder(),
        r3.remainder(),
    ];
    let xt = xs.remainder();
    for ((((x, u0), u1), u2), u3) in xs.zip(r0).zip(r1).zip(r2).zip(r3) {
        let x = word(x);
        let (xe, xo) = (sxtb16(x), sxtb16_ror8(x));
        let u = word(u0);
        a0 = smlad(sxtb16_ror8(u), xo, smlad(sxtb16(u), xe, a0));
        let u = word(u1);
        a1 = smlad(sxtb16_ror8(u), xo, smlad(sxtb16(u), xe, a1));
        let u = word(u2);
        a2 = smlad(sxtb16_ror8(u), xo, smlad(sxtb16(u), xe, a2));
        let u = word(u3);
        a3 = smlad(sxtb16_ror8(u), xo, smlad(sxtb16(u), xe, a3));
    }
    let mut acc = [a0, a1, a2, a3];
    for (a, t) in acc.iter_mut().zip(tails) {
        for (&u, &x) in t.iter().zip(xt) {
            *a = a.wrapping_add(i32::from(u as i8) * i32::from(x as i8));
        }
    }
    acc
}

/// FULLY_CONNECTED: four units per pass over each input row.
#[allow(clippy::too_many_arguments)]
pub fn fully_connected(
    op: &Op,
    batch: usize,
    depth: usize,
    units: usize,
    input: &[u8],
    filter: &[u8],
    params: &[u8],
    output: &mut [u8],
) -> Result<(), Error> {
    for n in 0..batch {
        let x = input
            .get(n * depth..(n + 1) * depth)
            .ok_or(Error::OutOfBounds)?;
        let out = output
            .get_mut(n * units..(n + 1) * units)
            .ok_or(Error::OutOfBounds)?;
        for u in (0..units).step_by(4) {
            // Missing rows of the last pass repeat the last unit (written again, same value).
            let rows = [
                u,
                (u + 1).min(units - 1),
                (u + 2).min(units - 1),
                (u + 3).min(units - 1),
            ];
            let mut w: [&[u8]; 4] = [&[]; 4];
            let mut acc = [0i32; 4];
            let mut qs = [ChannelQuant {
                multiplier: 0,
                shift: 0,
            }; 4];
            for (i, &r) in rows.iter().enumerate() {
                w[i] = filter
                    .get(r * depth..(r + 1) * depth)
                    .ok_or(Error::OutOfBounds)?;
                (qs[i], acc[i]) = record(params, r)?;
            }
            let acc = block_1x4(x, w, acc);
            for ((&r, &a), &q) in rows.iter().zip(&acc).zip(&qs) {
                *out.get_mut(r).ok_or(Error::OutOfBounds)? =
                    requantize_single(a, q, op.output_offset, op.act_min, op.act_max);
            }
        }
    }
    Ok(())
}

/// Four channels of one depthwise output pixel: per tap, one word of inputs and one of
/// weights, widened, and four 16x16 multiply-accumulates (SMLABB/SMLATT keep the channels
/// apart). `taps[t]` is tap t's input offset, or `None` for a padded tap (the zero point).
#[inline(always)]
fn dw_group(
    taps: &[Option<usize>],
    c: usize,
    out_c: usize,
    zpw: u32,
    input: &[u8],
    filter: &[u8],
    acc: [i32; 4],
) -> Result<[i32; 4], Error> {
    let [mut a0, mut a1, mut a2, mut a3] = acc;
    for (t, tap) in taps.iter().enumerate() {
        let at = t * out_c + c;
        let w = word(filter.get(at..at + 4).ok_or(Error::OutOfBounds)?);
        let x = match tap {
            Some(px) => word(input.get(px + c..px + c + 4).ok_or(Error::OutOfBounds)?),
            None => zpw,
        };
        let (we, xe) = (sxtb16(w), sxtb16(x));
        a0 = smlabb(we, xe, a0);
        a2 = smlatt(we, xe, a2);
        let (wo, xo) = (sxtb16_ror8(w), sxtb16_ror8(x));
        a1 = smlabb(wo, xo, a1);
        a3 = smlatt(wo, xo, a3);
    }
    Ok([a0, a1, a2, a3])
}

/// DEPTHWISE_CONV_2D with depth multiplier 1: four channels per pass, taps listed once per
/// output pixel (a 3x3 filter's nine taps are a constant-length loop). Returns `false` for
/// other layers (the caller runs the portable kernel).
pub fn depthwise_conv2d(
    g: &ConvGeom,
    op: &Op,
    input: &[u8],
    filter: &[u8],
    params: &[u8],
    output: &mut [u8],
) -> Result<bool, Error> {
    let n_taps = g.k_h * g.k_w;
    let Some(zp) = zero_point(op) else {
        return Ok(false);
    };
    if g.depth_multiplier != 1 || n_taps > MAX_TAPS {
        return Ok(false);
    }
    let c_n = g.out_c;
    let zpw = u32::from_ne_bytes([zp; 4]);
    let mut taps = [None; MAX_TAPS];
    for oy in 0..g.out_h {
        for ox in 0..g.out_w {
            for (t, tap) in taps.iter_mut().take(n_taps).enumerate() {
                let (ky, kx) = (t / g.k_w, t % g.k_w);
                let iy = (oy * g.stride_h + ky * g.dilation_h)
                    .checked_sub(g.pad_h)
                    .filter(|&y| y < g.in_h);
                let ix = (ox * g.stride_w + kx * g.dilation_w)
                    .checked_sub(g.pad_w)
                    .filter(|&x| x < g.in_w);
                *tap = iy.zip(ix).map(|(y, x)| (y * g.in_w + x) * g.in_c);
            }
            let base = (oy * g.out_w + ox) * c_n;
            let out = output.get_mut(base..base + c_n).ok_or(Error::OutOfBounds)?;
            let mut c = 0;
            while c + 4 <= c_n {
                let mut acc = [0i32; 4];
                let mut qs = [ChannelQuant {
                    multiplier: 0,
                    shift: 0,
                }; 4];
                for (j, (q, a)) in qs.iter_mut().zip(acc.iter_mut()).enumerate() {
                    (*q, *a) = record(params, c + j)?;
                }
                let acc = if n_taps == 9 {
                    dw_group(
                        taps.get(..9).ok_or(Error::OutOfBounds)?,
                        c,
                        c_n,
                        zpw,
                        input,
                        filter,
                        acc,
                    )?
                } else {
                    dw_group(
                        taps.get(..n_taps).ok_or(Error::OutOfBounds)?,
                        c,
                        c_n,
                        zpw,
                        input,
                        filter,
                        acc,
                    )?
                };
                let o = out.get_mut(c..c + 4).ok_or(Error::OutOfBounds)?;
                for ((o, a), q) in o.iter_mut().zip(acc).zip(qs) {
                    *o = requantize(a, q, op.output_offset, op.act_min, op.act_max);
                }
                c += 4;
            }
            // The last channels (out_c not a multiple of 4) one at a time.
            for (j, o) in out.iter_mut().enumerate().skip(c) {
                let (q, mut a) = record(params, j)?;
                for (t, tap) in taps.iter().take(n_taps).enumerate() {
                    let w = *filter.get(t * c_n + j).ok_or(Error::OutOfBounds)?;
                    let x = match tap {
                        Some(px) => *input.get(px + j).ok_or(Error::OutOfBounds)?,
                        None => zp,
                    };
                    a = a.wrapping_add(i32::from(w as i8) * i32::from(x as i8));
                }
                *o = requantize(a, q, op.output_offset, op.act_min, op.act_max);
            }
        }
    }
    Ok(true)
}

/// A channel's bias with the input offset folded in: `bias + input_offset * sum(weights)`,
/// wrapping like the accumulators it starts.
pub fn folded_bias(op: &Op, weights: &[u8], bias: i32, c: usize) -> i32 {
    let sum =
        |w: &mut dyn Iterator<Item = &u8>| w.fold(0i32, |s, &v| s.wrapping_add(i32::from(v as i8)));
    let s = match op.kind {
        crate::graph::OpKind::Conv2d(g) => {
            let k = g.k_h * g.k_w * g.in_c;
            sum(&mut weights.iter().skip(c * k).take(k))
        }
        crate::graph::OpKind::DepthwiseConv2d(g) => sum(&mut weights
            .iter()
            .skip(c)
            .step_by(g.out_c.max(1))
            .take(g.k_h * g.k_w)),
        crate::graph::OpKind::FullyConnected { depth, .. } => {
            sum(&mut weights.iter().skip(c * depth).take(depth))
        }
        _ => 0,
    };
    bias.wrapping_add(op.input_offset.wrapping_mul(s))
}
