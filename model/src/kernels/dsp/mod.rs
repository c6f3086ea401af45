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
//! Shapes, fastest first:
//! - 1x1 CONV_2D: four channels' weights widened once and kept while all pixels pass;
//! - short patches (`tiled.rs`): three filter rows of up to four bytes read in place from the
//!   padded input, else patches gathered into tiles walked as the 1x1 path walks pixels;
//! - other CONV_2D: two pixels' patches gathered (zero point in the padding) and widened into
//!   interleaved int16 columns, two channels by two pixels per pass;
//! - FULLY_CONNECTED: the input row widened once, four units per pass (one asm block);
//! - 3x3 DEPTHWISE_CONV_2D (stride 1 or 2 across): a row of outputs at a time over three
//!   padded rows of 4-channel words, widened once; other depthwise layers: four channels at a time, their
//!   widened weights kept, taps at fixed offsets (zero point words at the borders). SMLABB and
//!   SMLATT keep the four channels apart.
//!
//! Requantization is `quant::multiply_by_quantized_multiplier`'s arithmetic in fewer
//! instructions (checked against it). Layers outside the bounds below (or with a zero point
//! outside int8) run the portable kernels. Working buffers (widened weights and columns,
//! gathered patches, strips) come from the arena's scratch (`scratch.rs`), sized for the
//! model when it is planned: no stack arrays to zero per call, and no RAM beyond the arena.
//! The arena also holds 4 more bytes per output channel (the folded bias in each record).

pub mod pool;
mod requant;
mod scratch;
mod simd;
#[cfg(test)]
mod tests;
mod tiled;

use super::conv::tap;
use crate::Error;
use crate::graph::{CHANNEL_PARAM_BYTES, ConvGeom, Op};
use requant::{Channel, Quad, record, requant, requant_single};
pub use requant::{folded_bias, write_record};
pub use scratch::{Scratch, scratch_bytes};
use simd::{
    depthwise3_short, dot4_rows, dot4_stationary, fc_pass, pointwise_short, smlabb, smlad, smlatt,
    sxtb16, sxtb16_ror8,
};

/// Largest CONV_2D patch (filter height x width x input channels, e.g. 3x3x64) taken here.
/// Scratch: two int16 columns (4 bytes per value) and one int8 patch, up to 2.8 KiB.
pub const MAX_PATCH: usize = 576;
/// Longest FULLY_CONNECTED input row taken here. Scratch: one int16 column, up to 2 KiB.
pub const MAX_ROW: usize = 1024;
/// Most input channels of a 1x1 CONV_2D whose four rows of weights are widened and kept
/// (up to 2.3 KiB of scratch); more take the column path.
pub const MAX_STATIONARY: usize = 288;
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

/// The first `lanes` (1 to 4) bytes of `b` as a little-endian word, zero above: a partial
/// group of channels.
#[inline(always)]
fn word_lanes(b: &[u8], lanes: usize) -> Result<u32, Error> {
    if lanes >= 4 {
        return b.get(..4).map(word).ok_or(Error::OutOfBounds);
    }
    let b = b.get(..lanes).ok_or(Error::OutOfBounds)?;
    Ok(b.iter().rev().fold(0u32, |w, &x| (w << 8) | u32::from(x)))
}

/// The input zero point as an int8, if it is one (a padded tap reads it).
fn zero_point(op: &Op) -> Option<u8> {
    i8::try_from(op.input_offset.checked_neg()?)
        .ok()
        .map(|z| z as u8)
}

/// Widens int8 values into a column of 16-bit lane pairs: each 4 values `[x0 x1 x2 x3]`
/// become the words `(x0,x2) (x1,x3)`, as SXTB16 and SXTB16 ROR 8 widen a weight word; the
/// last `len % 4` values go to `tail`.
#[inline(always)]
fn widen(src: &[u8], col: &mut [u32], tail: &mut [i32; 3]) {
    let groups = src.chunks_exact(4);
    for (t, &x) in tail.iter_mut().zip(groups.remainder()) {
        *t = i32::from(x as i8);
    }
    for (g, c) in groups.zip(col.chunks_exact_mut(2)) {
        let x = word(g);
        if let [e, o] = c {
            (*e, *o) = (sxtb16(x), sxtb16_ror8(x));
        }
    }
}

/// Four dot products of one widened column with four int8 weight rows: per 4 values, one
/// column load shared by the rows and, per row, one load, two SXTB16 and two SMLAD
/// (few enough live values for the M4's registers).
#[inline(always)]
fn block_1x4(col: &[u32], tail: &[i32; 3], w: [&[u8]; 4], acc: [i32; 4]) -> [i32; 4] {
    let [mut a0, mut a1, mut a2, mut a3] = acc;
    let [r0, r1, r2, r3] = w.map(|r| r.chunks_exact(4));
    for ((((x, u0), u1), u2), u3) in col.chunks_exact(2).zip(r0).zip(r1).zip(r2).zip(r3) {
        if let [xe, xo] = *x {
            let u = word(u0);
            a0 = smlad(sxtb16_ror8(u), xo, smlad(sxtb16(u), xe, a0));
            let u = word(u1);
            a1 = smlad(sxtb16_ror8(u), xo, smlad(sxtb16(u), xe, a1));
            let u = word(u2);
            a2 = smlad(sxtb16_ror8(u), xo, smlad(sxtb16(u), xe, a2));
            let u = word(u3);
            a3 = smlad(sxtb16_ror8(u), xo, smlad(sxtb16(u), xe, a3));
        }
    }
    tails_1x4(tail, w, [a0, a1, a2, a3])
}

/// The products of each row's last `len % 4` weights with `tail`, added to `acc`.
#[inline(always)]
fn tails_1x4(tail: &[i32; 3], w: [&[u8]; 4], mut acc: [i32; 4]) -> [i32; 4] {
    for (a, r) in acc.iter_mut().zip(w) {
        let t = r.get(r.len() / 4 * 4..).unwrap_or_default();
        for (&u, &x) in t.iter().zip(tail) {
            *a = a.wrapping_add(i32::from(u as i8) * x);
        }
    }
    acc
}

/// The four rows starting at `r` (the last one repeated past `n`: computed and written again,
/// with the same value).
#[inline(always)]
fn rows4(r: usize, n: usize) -> [usize; 4] {
    let last = n.saturating_sub(1);
    [r, (r + 1).min(last), (r + 2).min(last), (r + 3).min(last)]
}

/// FULLY_CONNECTED's units: accumulates the column against output channels (rows of `len`
/// weights) four at a time and writes the requantized bytes (single rounding) to `out` (one
/// per channel); a pass of four short-path units is one asm block (`fc_pass`). Each other
/// pass takes its four rows and records with one bounds check each.
#[inline(always)]
fn column_times_rows(
    col: &[u32],
    tail: &[i32; 3],
    filter: &[u8],
    len: usize,
    params: &[u8],
    out: &mut [u8],
    op: &Op,
) -> Result<(), Error> {
    let rq = |a, q| requant_single(a, q, op);
    // Units whose records have the short path take `fc_pass` whole when the layer clamps to
    // the whole int8 range.
    let whole = (op.act_min <= -128 && op.act_max >= 127).then_some(op.output_offset);
    let n = out.len();
    let filter = filter.get(..n * len).ok_or(Error::OutOfBounds)?;
    let params = params
        .get(..n * CHANNEL_PARAM_BYTES)
        .ok_or(Error::OutOfBounds)?;
    let full = n / 4 * 4;
    let passes = filter
        .chunks_exact(4 * len)
        .zip(params.chunks_exact(4 * CHANNEL_PARAM_BYTES))
        .zip(out.chunks_exact_mut(4));
    for ((w4, p4), o4) in passes {
        if let Some(offset) = whole {
            if fc_pass(col, w4, len, p4, o4, offset).is_some() {
                continue;
            }
        }
        let (w0, rest) = w4.split_at_checked(len).ok_or(Error::OutOfBounds)?;
        let (w1, rest) = rest.split_at_checked(len).ok_or(Error::OutOfBounds)?;
        let (w2, w3) = rest.split_at_checked(len).ok_or(Error::OutOfBounds)?;
        let mut acc = [0i32; 4];
        let mut qs = [Channel::default(); 4];
        for ((q, a), r) in qs
            .iter_mut()
            .zip(acc.iter_mut())
            .zip(p4.chunks_exact(CHANNEL_PARAM_BYTES))
        {
            (*q, *a) = record(r, 0)?;
        }
        let acc = match dot4_rows(col, w4, len, acc) {
            Some(acc) => tails_1x4(tail, [w0, w1, w2, w3], acc),
            None => block_1x4(col, tail, [w0, w1, w2, w3], acc),
        };
        for ((o, a), q) in o4.iter_mut().zip(acc).zip(qs) {
            *o = rq(a, q);
        }
    }
    if full < n {
        // The last 1-3 channels: missing rows repeat the last one (written again, same value).
        let rows = rows4(full, n);
        let mut w: [&[u8]; 4] = [&[]; 4];
        let mut acc = [0i32; 4];
        let mut qs = [Channel::default(); 4];
        for (i, &r) in rows.iter().enumerate() {
            w[i] = filter
                .get(r * len..(r + 1) * len)
                .ok_or(Error::OutOfBounds)?;
            (qs[i], acc[i]) = record(params, r)?;
        }
        let acc = block_1x4(col, tail, w, acc);
        for ((&r, &a), &q) in rows.iter().zip(&acc).zip(&qs) {
            *out.get_mut(r).ok_or(Error::OutOfBounds)? = rq(a, q);
        }
    }
    Ok(())
}

/// Widens a patch into lanes `J` (0 or 1) of the interleaved columns: for each 4 patch values
/// `[x0 x1 x2 x3]` the group holds `(x0,x2) (x1,x3)` of column 0, then the same of column 1.
/// The last `len % 4` values go to `tail`.
#[inline(always)]
fn widen2<const J: usize>(patch: &[u8], cols: &mut [u32], tail: &mut [i32; 3]) {
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
#[cfg_attr(target_os = "none", optimize(speed))]
fn gather(
    g: &ConvGeom,
    oy: usize,
    ox: usize,
    zp: u8,
    input: &[u8],
    patch: &mut [u8],
) -> Result<(), Error> {
    let c = g.in_c;
    let row_len = g.k_w * c;
    // Without horizontal dilation a filter row's inside taps are one contiguous run.
    let (x0, kx0, kx1) = if g.dilation_w == 1 {
        let origin = ox * g.stride_w;
        let kx0 = g.pad_w.saturating_sub(origin).min(g.k_w);
        let kx1 = (g.in_w + g.pad_w).saturating_sub(origin).clamp(kx0, g.k_w);
        ((origin + kx0).saturating_sub(g.pad_w), kx0, kx1)
    } else {
        (0, 0, 0)
    };
    for (ky, row) in patch.chunks_exact_mut(row_len).take(g.k_h).enumerate() {
        let iy = (oy * g.stride_h + ky * g.dilation_h)
            .checked_sub(g.pad_h)
            .filter(|&y| y < g.in_h);
        let Some(y) = iy else {
            row.fill(zp);
            continue;
        };
        if g.dilation_w == 1 && row_len <= 16 {
            // A short row (a first layer's few input channels): bytes, not library calls.
            let at = (y * g.in_w + x0) * c;
            let src = input
                .get(at..at + (kx1 - kx0) * c)
                .ok_or(Error::OutOfBounds)?;
            let (lo, hi) = (kx0 * c, kx1 * c);
            for (i, d) in row.iter_mut().enumerate() {
                *d = if (lo..hi).contains(&i) {
                    src.get(i - lo).copied().unwrap_or(zp)
                } else {
                    zp
                };
            }
            continue;
        }
        if g.dilation_w == 1 {
            let (left, rest) = row
                .split_at_mut_checked(kx0 * c)
                .ok_or(Error::OutOfBounds)?;
            let (mid, right) = rest
                .split_at_mut_checked((kx1 - kx0) * c)
                .ok_or(Error::OutOfBounds)?;
            left.fill(zp);
            right.fill(zp);
            let at = (y * g.in_w + x0) * c;
            mid.copy_from_slice(input.get(at..at + mid.len()).ok_or(Error::OutOfBounds)?);
            continue;
        }
        for (kx, dst) in row.chunks_exact_mut(c).enumerate() {
            match tap(ox, kx, g.stride_w, g.dilation_w, g.pad_w, g.in_w) {
                Some(x) => {
                    let at = (y * g.in_w + x) * c;
                    dst.copy_from_slice(input.get(at..at + c).ok_or(Error::OutOfBounds)?);
                }
                None => dst.fill(zp),
            }
        }
    }
    Ok(())
}

/// CONV_2D. A 1x1 convolution of up to `MAX_STATIONARY` input channels: two output
/// channels' weights widened once and kept while every pixel passes (each input word widened
/// on the fly: four SMLADs per word of input and two double-word loads of weights). Other
/// convolutions: two pixels' patches gathered and widened into int16 columns, then two
/// output channels by two pixels per pass.
/// Returns `false` (nothing written) for a layer over the bounds: the caller runs the
/// portable kernel.
#[cfg_attr(target_os = "none", optimize(speed))]
pub fn conv2d(
    g: &ConvGeom,
    op: &Op,
    input: &[u8],
    filter: &[u8],
    params: &[u8],
    output: &mut [u8],
    scratch: &mut Scratch<'_>,
) -> Result<bool, Error> {
    let pointwise = g.k_h == 1 && g.k_w == 1 && g.pad_h == 0 && g.pad_w == 0;
    if pointwise && g.in_c <= MAX_STATIONARY {
        return conv2d_stationary(g, op, input, filter, params, output, scratch);
    }
    if tiled::conv2d_tiled(g, op, input, filter, params, output, scratch)? {
        return Ok(true);
    }
    conv2d_columns(g, op, input, filter, params, output, scratch)
}

/// Four weight rows (of one length) widened and interleaved: for each 4 values, `(w0,w2)
/// (w1,w3)` of row 0, then of rows 1, 2 and 3 (eight words); a last partial group as if
/// zeros completed it. A group's four rows at once: four loads, eight SXTB16, four stores.
#[inline(always)]
fn widen_rows(w: [&[u8]; 4], buf: &mut [u32]) {
    let [r0, r1, r2, r3] = w.map(|r| r.chunks_exact(4));
    let rests = [
        r0.remainder(),
        r1.remainder(),
        r2.remainder(),
        r3.remainder(),
    ];
    let mut groups = buf.chunks_exact_mut(8);
    // The rows first: zip asks them first, so the group after the last full one is not
    // taken and dropped.
    for ((((a, b), c), d), g) in r0.zip(r1).zip(r2).zip(r3).zip(&mut groups) {
        let xs = [word(a), word(b), word(c), word(d)];
        for (p, x) in g.chunks_exact_mut(2).zip(xs) {
            if let [e, o] = p {
                (*e, *o) = (sxtb16(x), sxtb16_ror8(x));
            }
        }
    }
    // A last partial group is widened with zeros above (when `buf` has room for it).
    if let (Some(g), false) = (groups.next(), rests[0].is_empty()) {
        for (p, rest) in g.chunks_exact_mut(2).zip(rests) {
            let x = word_lanes(rest, rest.len()).unwrap_or(0);
            if let [e, o] = p {
                (*e, *o) = (sxtb16(x), sxtb16_ror8(x));
            }
        }
    }
}

/// Four dot products of the int8 vector `x` with four rows widened by `widen_rows` (`tails`:
/// each row's last `len % 4` int8 weights): per 4 inputs one load and two SXTB16 serve 16
/// multiply-accumulates (eight SMLADs over eight weight words).
#[inline(always)]
fn block_stationary(x: &[u8], wbuf: &[u32], tails: [&[u8]; 4], acc: [i32; 4]) -> [i32; 4] {
    let mut acc = dot4_stationary(x, wbuf, acc);
    let xt = x.get(x.len() / 4 * 4..).unwrap_or_default();
    if xt.is_empty() {
        return acc;
    }
    for (a, t) in acc.iter_mut().zip(tails) {
        for (&u, &v) in t.iter().zip(xt) {
            *a = a.wrapping_add(i32::from(u as i8) * i32::from(v as i8));
        }
    }
    acc
}

/// Four output channels of a 1x1 CONV_2D, their weights widened and kept.
struct Four<'w> {
    wbuf: &'w [u32],
    tails: [&'w [u8]; 4],
    bias: [i32; 4],
    quad: Quad,
    rows: [usize; 4],
}

impl Four<'_> {
    /// The four channels at one pixel (input `x`, output `out`).
    #[inline(always)]
    fn pixel(&self, x: &[u8], out: &mut [u8], op: &Op) -> Result<(), Error> {
        let acc = block_stationary(x, self.wbuf, self.tails, self.bias);
        let v = self.quad.apply(acc, op);
        let [r0, .., r3] = self.rows;
        if r3 == r0 + 3 {
            // Four distinct channels side by side: one bounds check.
            out.get_mut(r0..r0 + 4)
                .ok_or(Error::OutOfBounds)?
                .copy_from_slice(&v);
            return Ok(());
        }
        for (&r, v) in self.rows.iter().zip(v) {
            *out.get_mut(r).ok_or(Error::OutOfBounds)? = v;
        }
        Ok(())
    }
}

/// CONV_2D with weights kept: see `conv2d`.
// Out of line: each path's loops get the registers to themselves.
#[inline(never)]
#[cfg_attr(target_os = "none", optimize(speed))]
fn conv2d_stationary(
    g: &ConvGeom,
    op: &Op,
    input: &[u8],
    filter: &[u8],
    params: &[u8],
    output: &mut [u8],
    scratch: &mut Scratch<'_>,
) -> Result<bool, Error> {
    let k = g.in_c;
    let pointwise = g.k_h == 1 && g.k_w == 1 && g.pad_h == 0 && g.pad_w == 0;
    if !pointwise || k > MAX_STATIONARY || k == 0 || g.out_c == 0 {
        return Ok(false);
    }
    let wbuf = scratch.words(k / 4 * 8)?;
    let oc_n = g.out_c;
    for oc in (0..oc_n).step_by(4) {
        // Past the last channel the last one is computed again (written again, same value).
        let rows = rows4(oc, oc_n);
        let mut w: [&[u8]; 4] = [&[]; 4];
        let mut tails: [&[u8]; 4] = [&[]; 4];
        let mut bias = [0i32; 4];
        let mut qs = [Channel::default(); 4];
        for (i, &r) in rows.iter().enumerate() {
            w[i] = filter.get(r * k..(r + 1) * k).ok_or(Error::OutOfBounds)?;
            tails[i] = w[i].get(k / 4 * 4..).ok_or(Error::OutOfBounds)?;
            (qs[i], bias[i]) = record(params, r)?;
        }
        widen_rows(w, wbuf);
        let wbuf: &[u32] = wbuf;
        let four = Four {
            wbuf,
            tails,
            bias,
            quad: Quad::new(qs, op),
            rows,
        };
        if g.stride_h == 1 && g.stride_w == 1 {
            let pixels = (input.len() / k).min(output.len() / oc_n);
            let whole = four.quad.short_quad(bias, op).filter(|_| rows[3] == oc + 3);
            if let (Some(q), Some(out)) = (whole, output.get_mut(oc..)) {
                if pointwise_short(input, k, wbuf, &q, out, oc_n, pixels).is_some() {
                    continue;
                }
            }
            // Output pixel p reads input pixel p: walk both, no index arithmetic.
            for (x, out) in input.chunks_exact(k).zip(output.chunks_exact_mut(oc_n)) {
                four.pixel(x, out, op)?;
            }
            continue;
        }
        for (px, out) in output.chunks_exact_mut(oc_n).enumerate() {
            let (oy, ox) = (px / g.out_w, px % g.out_w);
            let at = (oy * g.stride_h * g.in_w + ox * g.stride_w) * k;
            four.pixel(input.get(at..at + k).ok_or(Error::OutOfBounds)?, out, op)?;
        }
    }
    Ok(true)
}

/// CONV_2D over int16 columns: see `conv2d`.
// Out of line: each path's loops get the registers to themselves.
#[inline(never)]
#[cfg_attr(target_os = "none", optimize(speed))]
fn conv2d_columns(
    g: &ConvGeom,
    op: &Op,
    input: &[u8],
    filter: &[u8],
    params: &[u8],
    output: &mut [u8],
    scratch: &mut Scratch<'_>,
) -> Result<bool, Error> {
    let k = g.k_h * g.k_w * g.in_c;
    let Some(zp) = zero_point(op) else {
        return Ok(false);
    };
    if k > MAX_PATCH || k == 0 {
        return Ok(false);
    }
    let pointwise = g.k_h == 1 && g.k_w == 1 && g.pad_h == 0 && g.pad_w == 0;
    let cols = scratch.words(k / 4 * 4)?;
    let patch = scratch.bytes(k)?;
    let mut tail = [[0i32; 3]; 2];
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
                gather(g, oy, ox, zp, input, patch)?;
                &*patch
            };
            let [t0, t1] = &mut tail;
            if j == 0 {
                widen2::<0>(src, cols, t0);
            } else {
                widen2::<1>(src, cols, t1);
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
            for (at, v) in [
                (out_p + oc, requant(acc[0], q0, op)),
                (out_q + oc, requant(acc[1], q0, op)),
                (out_p + od, requant(acc[2], q1, op)),
                (out_q + od, requant(acc[3], q1, op)),
            ] {
                *output.get_mut(at).ok_or(Error::OutOfBounds)? = v;
            }
        }
    }
    Ok(true)
}

/// FULLY_CONNECTED: each input row widened once, then four units per pass over it. Returns
/// `false` for rows longer than `MAX_ROW` or fewer than four units (the caller runs the
/// portable kernel).
#[allow(clippy::too_many_arguments)]
#[cfg_attr(target_os = "none", optimize(speed))]
pub fn fully_connected(
    op: &Op,
    batch: usize,
    depth: usize,
    units: usize,
    input: &[u8],
    filter: &[u8],
    params: &[u8],
    output: &mut [u8],
    scratch: &mut Scratch<'_>,
) -> Result<bool, Error> {
    // Fewer than four units would fill a pass with repeats, and the column costs more than
    // it saves: the portable kernel is faster there.
    if depth == 0 || units < 4 || depth > MAX_ROW {
        return Ok(false);
    }
    let col = scratch.words(depth / 4 * 2)?;
    let mut tail = [0i32; 3];
    for n in 0..batch {
        let x = input
            .get(n * depth..(n + 1) * depth)
            .ok_or(Error::OutOfBounds)?;
        let out = output
            .get_mut(n * units..(n + 1) * units)
            .ok_or(Error::OutOfBounds)?;
        widen(x, col, &mut tail);
        column_times_rows(col, &tail, filter, depth, params, out, op)?;
    }
    Ok(true)
}

/// Four channels' taps at one output pixel: `win` starts at the window's top-left input
/// (channel `c`), `offs[t]` is tap t's offset from there and `wv` holds its weights widened
/// (`(w0,w2) (w1,w3)` per tap). SMLABB/SMLATT keep the four channels apart.
#[inline(always)]
fn dw_taps(win: &[u8], offs: &[u16], wv: &[u32], acc: [i32; 4]) -> Result<[i32; 4], Error> {
    let [mut a0, mut a1, mut a2, mut a3] = acc;
    for (&o, w) in offs.iter().zip(wv.chunks_exact(2)) {
        let o = usize::from(o);
        let x = word(win.get(o..o + 4).ok_or(Error::OutOfBounds)?);
        if let [we, wo] = *w {
            let (xe, xo) = (sxtb16(x), sxtb16_ror8(x));
            a0 = smlabb(we, xe, a0);
            a2 = smlatt(we, xe, a2);
            a1 = smlabb(wo, xo, a1);
            a3 = smlatt(wo, xo, a3);
        }
    }
    Ok([a0, a1, a2, a3])
}

/// Longest padded input row (`(output width - 1) * stride + 3`) the 3x3 depthwise row path
/// takes: its three rows of widened words and a row of the zero point are up to 4 KiB of
/// scratch.
pub const MAX_STRIP: usize = 128;

/// Four channels of a 3x3 depthwise layer of stride 1 or 2 across, a row of outputs at a time: the
/// three input rows under it are copied (once each, widened: two words per pixel) into a ring
/// of rows in `strip`, the zero point where the filter overhangs, so every output reads its
/// nine taps from three 6-word windows (no bounds checks, no border cases, no widening per
/// tap), one asm walk per row when the four channels take the short requantization.
/// Returns `false` (nothing written) for other layers.
#[allow(clippy::too_many_arguments)]
#[cfg_attr(target_os = "none", optimize(speed))]
fn rows3(
    g: &ConvGeom,
    op: &Op,
    c: usize,
    zpw: u32,
    input: &[u8],
    wv: &[u32; 18],
    bias: [i32; 4],
    qs: [Channel; 4],
    output: &mut [u8],
    strip: &mut [u32],
    lanes: usize,
) -> Result<bool, Error> {
    let c_n = g.out_c;
    // Walk the longer side: a narrow layer (a keyword spotter's five columns) walks down its
    // columns, so each strip is long and its setup is paid for by many outputs. Walking
    // down columns is walking rows of the transposed layer, whose taps are transposed too.
    let by_columns = g.out_w < g.out_h;
    let (g, in_step, out_step, wv) = if by_columns {
        let t = ConvGeom {
            in_h: g.in_w,
            in_w: g.in_h,
            out_h: g.out_w,
            out_w: g.out_h,
            k_h: g.k_w,
            k_w: g.k_h,
            stride_h: g.stride_w,
            stride_w: g.stride_h,
            dilation_h: g.dilation_w,
            dilation_w: g.dilation_h,
            pad_h: g.pad_w,
            pad_w: g.pad_h,
            ..*g
        };
        let mut tw = [0u32; 18];
        for (i, w) in tw.chunks_exact_mut(2).enumerate() {
            // Transposed tap (ky, kx) is the filter's (kx, ky).
            let o = (i % 3) * 3 + i / 3;
            w.copy_from_slice(wv.get(2 * o..2 * o + 2).ok_or(Error::OutOfBounds)?);
        }
        let steps = ((c_n, g.in_w * c_n), (c_n, g.out_w * c_n));
        (t, steps.0, steps.1, tw)
    } else {
        (*g, (g.in_w * c_n, c_n), (g.out_w * c_n, c_n), *wv)
    };
    let g = &g;
    let wv = &wv;
    let len = (g.out_w - 1) * g.stride_w + 3;
    let fits = g.k_h == 3 && g.k_w == 3 && g.stride_w <= 2 && g.dilation_h == 1;
    if !fits || g.dilation_w != 1 || len > MAX_STRIP {
        return Ok(false);
    }
    let quad = Quad::new(qs, op);
    let whole = quad.short_quad(bias, op).filter(|_| lanes == 4);
    // Rows hold each input word widened: two words per pixel.
    let len = 2 * len;
    let zpw = [sxtb16(zpw), sxtb16_ror8(zpw)];
    let mut rows = strip.chunks_exact_mut(len);
    let (Some(s0), Some(s1), Some(s2), Some(pad)) =
        (rows.next(), rows.next(), rows.next(), rows.next())
    else {
        return Err(Error::OutOfBounds);
    };
    fill_pairs(pad, zpw);
    let pad: &[u32] = pad;
    // Input row y lives in ring slot y % 3 (any three consecutive rows take three slots),
    // filled when first needed: with stride 1 each output row fills one new row, not three.
    let mut slots = [s0, s1, s2];
    let mut held = [usize::MAX; 3];
    for oy in 0..g.out_h {
        let mut ys = [None; 3];
        for (ky, y) in ys.iter_mut().enumerate() {
            *y = tap(oy, ky, g.stride_h, 1, g.pad_h, g.in_h);
            let Some(y) = *y else { continue };
            if held[y % 3] == y {
                continue;
            }
            held[y % 3] = y;
            let row = slots
                .get_mut(y % 3)
                .and_then(|r| r.get_mut(..len))
                .ok_or(Error::OutOfBounds)?;
            // The input row's pixels land at columns pad_w.. of the strip, the zero point
            // around them.
            let (left, rest) = row
                .split_at_mut_checked((2 * g.pad_w).min(len))
                .ok_or(Error::OutOfBounds)?;
            fill_pairs(left, zpw);
            let at = y * in_step.0 + c;
            let inside = (2 * g.in_w).min(rest.len());
            let (mid, right) = rest.split_at_mut(inside);
            fill_pairs(right, zpw);
            for (x, w) in mid.chunks_exact_mut(2).enumerate() {
                let p = at + x * in_step.1;
                let v = if lanes == 4 {
                    word(input.get(p..p + 4).ok_or(Error::OutOfBounds)?)
                } else {
                    word_lanes(input.get(p..).ok_or(Error::OutOfBounds)?, lanes)?
                };
                if let [e, o] = w {
                    (*e, *o) = (sxtb16(v), sxtb16_ror8(v));
                }
            }
        }
        let pick = |y: Option<usize>| -> Result<&[u32], Error> {
            match y {
                Some(y) => slots
                    .get(y % 3)
                    .and_then(|r| r.get(..len))
                    .ok_or(Error::OutOfBounds),
                None => Ok(pad),
            }
        };
        let (r0, r1, r2) = (pick(ys[0])?, pick(ys[1])?, pick(ys[2])?);
        let row = oy * out_step.0 + c;
        if let (Some(q), Some(out)) = (&whole, output.get_mut(row..)) {
            let walk = (r0, r1, r2, g.stride_w, out_step.1, g.out_w);
            if depthwise3_short([walk.0, walk.1, walk.2], wv, q, walk.3, out, walk.4, walk.5)
                .is_some()
            {
                continue;
            }
        }
        for ox in 0..g.out_w {
            let j = 2 * ox * g.stride_w;
            let (Some(a), Some(b), Some(d)) = (six(r0, j), six(r1, j), six(r2, j)) else {
                return Err(Error::OutOfBounds);
            };
            let acc = dw_pixel(a, b, d, wv, bias);
            store(output, row + ox * out_step.1, lanes, acc, &quad, op)?;
        }
    }
    Ok(true)
}

/// Four channels' nine taps of one output: widened input words `a`, `b`, `d` (filter rows
/// 0-2, two words per pixel) against the widened weights.
#[inline(always)]
fn dw_pixel(a: &[u32; 6], b: &[u32; 6], d: &[u32; 6], wv: &[u32; 18], acc: [i32; 4]) -> [i32; 4] {
    let xs = [a, b, d];
    let [mut a0, mut a1, mut a2, mut a3] = acc;
    for t in 0..9 {
        let x = xs[t / 3];
        let (xe, xo) = (x[2 * (t % 3)], x[2 * (t % 3) + 1]);
        let (we, wo) = (wv[2 * t], wv[2 * t + 1]);
        a0 = smlabb(we, xe, a0);
        a2 = smlatt(we, xe, a2);
        a1 = smlabb(wo, xo, a1);
        a3 = smlatt(wo, xo, a3);
    }
    [a0, a1, a2, a3]
}

/// Requantizes the first `lanes` of four channels' accumulators into `output[at..]`.
#[inline(always)]
fn store(
    output: &mut [u8],
    at: usize,
    lanes: usize,
    acc: [i32; 4],
    quad: &Quad,
    op: &Op,
) -> Result<(), Error> {
    let v = quad.apply(acc, op);
    if lanes == 4 {
        // A constant length: one word store, not a library call.
        let out = output.get_mut(at..at + 4).ok_or(Error::OutOfBounds)?;
        out.copy_from_slice(&v);
        return Ok(());
    }
    let out = output.get_mut(at..at + lanes).ok_or(Error::OutOfBounds)?;
    out.copy_from_slice(v.get(..lanes).ok_or(Error::OutOfBounds)?);
    Ok(())
}

/// The six words (three widened pixels) of `r` from `j`.
#[inline(always)]
fn six(r: &[u32], j: usize) -> Option<&[u32; 6]> {
    r.get(j..j + 6).and_then(|w| w.try_into().ok())
}

/// `row` filled with the widened word pair `w`.
#[inline(always)]
fn fill_pairs(row: &mut [u32], w: [u32; 2]) {
    for p in row.chunks_exact_mut(2) {
        p.copy_from_slice(&w);
    }
}

/// `dw_taps` for a 3x3 filter: a constant-length loop the compiler unrolls, its offsets and
/// weights read at fixed stack offsets.
#[inline(always)]
fn dw_taps9(win: &[u8], offs: &[u16; 9], wv: &[u32; 18], acc: [i32; 4]) -> Result<[i32; 4], Error> {
    let [mut a0, mut a1, mut a2, mut a3] = acc;
    for t in 0..9 {
        let o = usize::from(offs[t]);
        let x = word(win.get(o..o + 4).ok_or(Error::OutOfBounds)?);
        let (we, wo) = (wv[2 * t], wv[2 * t + 1]);
        let (xe, xo) = (sxtb16(x), sxtb16_ror8(x));
        a0 = smlabb(we, xe, a0);
        a2 = smlatt(we, xe, a2);
        a1 = smlabb(wo, xo, a1);
        a3 = smlatt(wo, xo, a3);
    }
    Ok([a0, a1, a2, a3])
}

/// DEPTHWISE_CONV_2D with depth multiplier 1: four channels at a time, their weights widened
/// once and kept for every output pixel; a pixel whose window lies inside the input reads
/// its taps at fixed offsets (a 3x3 filter's nine are a constant-length loop), a border
/// pixel reads the zero point for the taps that overhang. Returns `false` for other layers
/// (the caller runs the portable kernel).
#[cfg_attr(target_os = "none", optimize(speed))]
pub fn depthwise_conv2d(
    g: &ConvGeom,
    op: &Op,
    input: &[u8],
    filter: &[u8],
    params: &[u8],
    output: &mut [u8],
    scratch: &mut Scratch<'_>,
) -> Result<bool, Error> {
    let n_taps = g.k_h * g.k_w;
    let Some(zp) = zero_point(op) else {
        return Ok(false);
    };
    if g.depth_multiplier != 1 || n_taps > MAX_TAPS || n_taps == 0 {
        return Ok(false);
    }
    let c_n = g.out_c;
    let zpw = u32::from_ne_bytes([zp; 4]);
    // Tap offsets as u16: `o + 4` then needs no overflow check in the inner loop.
    let mut offs = [0u16; MAX_TAPS];
    for (t, o) in offs.iter_mut().take(n_taps).enumerate() {
        let at = ((t / g.k_w) * g.dilation_h * g.in_w + (t % g.k_w) * g.dilation_w) * c_n;
        match u16::try_from(at) {
            Ok(at) => *o = at,
            Err(_) => return Ok(false),
        }
    }
    let offs = offs.get(..n_taps).ok_or(Error::OutOfBounds)?;
    let inside = |o: usize, k: usize, stride: usize, dilation: usize, pad: usize, size: usize| {
        (o * stride)
            .checked_sub(pad)
            .is_some_and(|i| i + (k - 1) * dilation < size)
    };
    let wv = scratch.words(2 * n_taps)?;
    let strip_len = scratch::strip_len(g);
    let strip: &mut [u32] = if n_taps == 9 && strip_len <= MAX_STRIP {
        scratch.words(8 * strip_len)?
    } else {
        &mut []
    };
    let mut c = 0;
    while c + 4 <= c_n {
        for (t, w) in wv.chunks_exact_mut(2).enumerate() {
            let at = t * c_n + c;
            let x = word(filter.get(at..at + 4).ok_or(Error::OutOfBounds)?);
            if let [e, o] = w {
                (*e, *o) = (sxtb16(x), sxtb16_ror8(x));
            }
        }
        let wv: &[u32] = wv;
        let mut bias = [0i32; 4];
        let mut qs = [Channel::default(); 4];
        for (j, (q, b)) in qs.iter_mut().zip(bias.iter_mut()).enumerate() {
            (*q, *b) = record(params, c + j)?;
        }
        if let Ok(w9) = <&[u32; 18]>::try_from(wv) {
            if rows3(g, op, c, zpw, input, w9, bias, qs, output, strip, 4)? {
                c += 4;
                continue;
            }
        }
        for oy in 0..g.out_h {
            let in_y = inside(oy, g.k_h, g.stride_h, g.dilation_h, g.pad_h, g.in_h);
            for ox in 0..g.out_w {
                let acc = if in_y && inside(ox, g.k_w, g.stride_w, g.dilation_w, g.pad_w, g.in_w) {
                    let at = ((oy * g.stride_h - g.pad_h) * g.in_w + ox * g.stride_w - g.pad_w)
                        * c_n
                        + c;
                    let win = input.get(at..).ok_or(Error::OutOfBounds)?;
                    if let (Ok(o9), Ok(w9)) =
                        (<&[u16; 9]>::try_from(offs), <&[u32; 18]>::try_from(wv))
                    {
                        dw_taps9(win, o9, w9, bias)?
                    } else {
                        dw_taps(win, offs, wv, bias)?
                    }
                } else {
                    let [mut a0, mut a1, mut a2, mut a3] = bias;
                    let mut ws = wv.chunks_exact(2);
                    for ky in 0..g.k_h {
                        let iy = tap(oy, ky, g.stride_h, g.dilation_h, g.pad_h, g.in_h);
                        for (kx, w) in (0..g.k_w).zip(&mut ws) {
                            let ix = tap(ox, kx, g.stride_w, g.dilation_w, g.pad_w, g.in_w);
                            let x = match iy.zip(ix) {
                                Some((y, x)) => {
                                    let at = (y * g.in_w + x) * c_n + c;
                                    word(input.get(at..at + 4).ok_or(Error::OutOfBounds)?)
                                }
                                None => zpw,
                            };
                            if let [we, wo] = *w {
                                let (xe, xo) = (sxtb16(x), sxtb16_ror8(x));
                                a0 = smlabb(we, xe, a0);
                                a2 = smlatt(we, xe, a2);
                                a1 = smlabb(wo, xo, a1);
                                a3 = smlatt(wo, xo, a3);
                            }
                        }
                    }
                    [a0, a1, a2, a3]
                };
                let at = (oy * g.out_w + ox) * c_n + c;
                let out = output.get_mut(at..at + 4).ok_or(Error::OutOfBounds)?;
                for ((o, a), q) in out.iter_mut().zip(acc).zip(qs) {
                    *o = requant(a, q, op);
                }
            }
        }
        c += 4;
    }
    // The last 1-3 channels: the row path on partial words, else one at a time.
    if c < c_n {
        let lanes = c_n - c;
        let mut w9 = [0u32; 18];
        for (t, w) in w9.chunks_exact_mut(2).enumerate() {
            let x = match filter.get(t * c_n + c..) {
                Some(b) if n_taps == 9 => word_lanes(b, lanes)?,
                _ => 0,
            };
            if let [e, o] = w {
                (*e, *o) = (sxtb16(x), sxtb16_ror8(x));
            }
        }
        let mut bias = [0i32; 4];
        let mut qs = [Channel::default(); 4];
        for (j, (q, b)) in qs.iter_mut().zip(bias.iter_mut()).enumerate().take(lanes) {
            (*q, *b) = record(params, c + j)?;
        }
        if n_taps == 9 && rows3(g, op, c, zpw, input, &w9, bias, qs, output, strip, lanes)? {
            return Ok(true);
        }
    }
    // The last channels (out_c not a multiple of 4) one at a time.
    for j in c..c_n {
        let (q, b) = record(params, j)?;
        for oy in 0..g.out_h {
            for ox in 0..g.out_w {
                let mut a = b;
                for t in 0..n_taps {
                    let w = *filter.get(t * c_n + j).ok_or(Error::OutOfBounds)?;
                    let iy = tap(oy, t / g.k_w, g.stride_h, g.dilation_h, g.pad_h, g.in_h);
                    let ix = tap(ox, t % g.k_w, g.stride_w, g.dilation_w, g.pad_w, g.in_w);
                    let x = match iy.zip(ix) {
                        Some((y, x)) => *input
                            .get((y * g.in_w + x) * c_n + j)
                            .ok_or(Error::OutOfBounds)?,
                        None => zp,
                    };
                    a = a.wrapping_add(i32::from(w as i8) * i32::from(x as i8));
                }
                *output
                    .get_mut((oy * g.out_w + ox) * c_n + j)
                    .ok_or(Error::OutOfBounds)? = requant(a, q, op);
            }
        }
    }
    Ok(true)
}
