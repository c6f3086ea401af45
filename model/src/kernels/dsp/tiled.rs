//! CONV_2D with short patches (up to `MAX_TILED_PATCH` values, a first layer's or a narrow
//! layer's): a tile of pixels' patches gathered once, then for every four output channels
//! their weights widened once and the four dot products of each patch taken by the same
//! inner loop as the 1x1 path (`block_stationary`). A small input (a first layer's image)
//! is first copied whole with the zero point around it, so patches come out of it by plain
//! row copies, no border tests.

use super::requant::Quad;
use super::scratch::Scratch;
use super::simd::{pointwise_short, window3_short};
use super::{Channel, block_stationary, gather, record, rows4, widen_rows, zero_point};
use crate::Error;
use crate::graph::{ConvGeom, Op};

/// Longest patch (filter height x width x input channels) taken here.
pub const MAX_TILED_PATCH: usize = 144;
/// Bytes of gathered patches per tile: `TILE_BYTES / k` pixels at a time (`k` rounded up
/// to a multiple of four). Scratch: these (as many as the layer has pixels), the widened
/// weights of four channels (8 bytes per group of four values) and the padded input.
const TILE_BYTES: usize = 1152;
/// Largest zero-point-padded input copied whole.
const PADDED_BYTES: usize = 512;

/// The padded input's bytes (0 when it is over `PADDED_BYTES` and patches are gathered from
/// the input itself).
fn padded_bytes(g: &ConvGeom) -> usize {
    let reach =
        |o: usize, s: usize, k: usize, d: usize| (o.max(1) - 1) * s + (k.max(1) - 1) * d + 1;
    let ph = reach(g.out_h, g.stride_h, g.k_h, g.dilation_h);
    let pw = reach(g.out_w, g.stride_w, g.k_w, g.dilation_w);
    let n = ph * pw * g.in_c;
    if n <= PADDED_BYTES { n } else { 0 }
}

/// Patches in one tile: as many as fit `TILE_BYTES`, at most the layer's pixels.
fn tile_pixels(g: &ConvGeom, kp: usize) -> usize {
    (TILE_BYTES / kp).min(g.out_h * g.out_w).max(1)
}

/// Scratch bytes `conv2d_tiled` takes for layer `g` (0 when it does not take the layer).
pub fn scratch_bytes(g: &ConvGeom) -> usize {
    let k = g.k_h * g.k_w * g.in_c;
    if k == 0 || k > MAX_TILED_PATCH {
        return 0;
    }
    let kp = k.next_multiple_of(4);
    padded_bytes(g) + PADDED_SLACK + tile_pixels(g, kp) * kp + 4 + 4 * wbuf_words(kp) + 3
}

/// Bytes after the padded input that `window3_short`'s word loads may reach (they hold
/// anything: those bytes meet zero weights).
const PADDED_SLACK: usize = 4;

/// Words of widened weights for four channels: the patch's groups, or the three of the
/// window path.
fn wbuf_words(kp: usize) -> usize {
    (kp / 4 * 8).max(24)
}

/// The input with the zero point around it, as far as the filter reaches, in `buf`:
/// returns its width, or `None` when it does not fit.
#[cfg_attr(target_os = "none", optimize(speed))]
fn pad_input(g: &ConvGeom, zp: u8, input: &[u8], buf: &mut [u8]) -> Result<Option<usize>, Error> {
    let c = g.in_c;
    let reach = |o: usize, s: usize, k: usize, d: usize| (o - 1) * s + (k - 1) * d + 1;
    let ph = reach(g.out_h, g.stride_h, g.k_h, g.dilation_h);
    let pw = reach(g.out_w, g.stride_w, g.k_w, g.dilation_w);
    if buf.is_empty() {
        return Ok(None);
    }
    let Some(buf) = buf.get_mut(..ph * pw * c) else {
        return Err(Error::OutOfBounds);
    };
    buf.fill(zp);
    // The input's columns that land inside: x in pad_w..pad_w + in_w, clipped to pw.
    let (x0, x1) = (g.pad_w.min(pw), (g.pad_w + g.in_w).min(pw));
    for (y, row) in buf.chunks_exact_mut(pw * c).enumerate() {
        let Some(iy) = y.checked_sub(g.pad_h).filter(|&iy| iy < g.in_h) else {
            continue;
        };
        let at = iy * g.in_w * c;
        let src = input
            .get(at..at + (x1 - x0) * c)
            .ok_or(Error::OutOfBounds)?;
        row.get_mut(x0 * c..x1 * c)
            .ok_or(Error::OutOfBounds)?
            .copy_from_slice(src);
    }
    Ok(Some(pw))
}

/// Pixel (oy, ox)'s patch out of the padded input (`pw` pixels wide) into `tile` at `at`.
/// Without horizontal dilation a filter row is one run of bytes; a short run (a filter one
/// pixel wide, a first layer's one input channel) is copied as whole words, each row's spill
/// overwritten by the next row and the last one's left in the patch's pad (or overwritten by
/// the next patch), so `tile` needs 3 bytes of slack.
#[inline(always)]
fn gather_padded(
    g: &ConvGeom,
    padded: &[u8],
    pw: usize,
    (oy, ox): (usize, usize),
    tile: &mut [u8],
    at: usize,
) -> Result<(), Error> {
    let c = g.in_c;
    let run = g.k_w * c;
    let src = (oy * g.stride_h * pw + ox * g.stride_w) * c;
    let step = g.dilation_h * pw * c;
    if g.dilation_w == 1 {
        let (Some(s), Some(d)) = (padded.get(src..), tile.get_mut(at..)) else {
            return Err(Error::OutOfBounds);
        };
        // The words of the last rows may reach past the padded input's end: those patches
        // take the exact copy.
        let words = match run.div_ceil(4) {
            1 => copy_rows::<4>(s, step, g.k_h, d, run),
            2 => copy_rows::<8>(s, step, g.k_h, d, run),
            _ => None,
        };
        let exact = || {
            (0..g.k_h).try_for_each(|ky| {
                let s = s.get(ky * step..ky * step + run)?;
                d.get_mut(ky * run..ky * run + run)?.copy_from_slice(s);
                Some(())
            })
        };
        return words.or_else(exact).ok_or(Error::OutOfBounds);
    }
    for ky in 0..g.k_h {
        let d = tile
            .get_mut(at + ky * run..at + ky * run + run)
            .ok_or(Error::OutOfBounds)?;
        for (kx, d) in d.chunks_exact_mut(c).enumerate() {
            let s = src + ky * step + kx * g.dilation_w * c;
            d.copy_from_slice(padded.get(s..s + c).ok_or(Error::OutOfBounds)?);
        }
    }
    Ok(())
}

/// `count` patches of pixels side by side in output row `oy` from column `ox`, when their
/// filter rows are copied as 4- or 8-byte words (as `gather_padded` does): one loop over
/// the patches with fixed strides, no per-patch setup. `None` (possibly part written) where
/// a word would reach past the padded input: the caller gathers those patches one by one.
#[inline(always)]
fn gather_run(
    g: &ConvGeom,
    padded: &[u8],
    pw: usize,
    (oy, ox): (usize, usize),
    tile: &mut [u8],
    (at, kp, count): (usize, usize, usize),
) -> Option<()> {
    let c = g.in_c;
    let run = g.k_w * c;
    let src = (oy * g.stride_h * pw + ox * g.stride_w) * c;
    let step = g.dilation_h * pw * c;
    let next = g.stride_w * c;
    let (s, d) = (padded.get(src..)?, tile.get_mut(at..)?);
    match (g.dilation_w, run.div_ceil(4)) {
        (1, 1) => (0..count).try_for_each(|p| {
            copy_rows::<4>(s.get(p * next..)?, step, g.k_h, d.get_mut(p * kp..)?, run)
        }),
        (1, 2) => (0..count).try_for_each(|p| {
            copy_rows::<8>(s.get(p * next..)?, step, g.k_h, d.get_mut(p * kp..)?, run)
        }),
        _ => None,
    }
}

/// `rows` rows of `N` bytes, `step` apart in `src`, to `run` apart in `dst`: fixed-size
/// copies are a load and a store each, not a library call.
#[inline(always)]
fn copy_rows<const N: usize>(
    src: &[u8],
    step: usize,
    rows: usize,
    dst: &mut [u8],
    run: usize,
) -> Option<()> {
    for r in 0..rows {
        let s: &[u8; N] = src.get(r * step..r * step + N)?.try_into().ok()?;
        let d: &mut [u8; N] = dst.get_mut(r * run..r * run + N)?.try_into().ok()?;
        *d = *s;
    }
    Some(())
}

/// CONV_2D with three filter rows of at most four bytes (a first layer's 3x3 over one input
/// channel, a 3x1 over up to four): each output's rows are read as words of the padded input
/// in place (`window3_short`), no patch gathered; the weights are laid out one filter row
/// per group of four, zeros after the row's bytes. Returns `false` (nothing written) for
/// other layers.
fn conv2d_windows(
    g: &ConvGeom,
    op: &Op,
    padded: &[u8],
    pw: usize,
    (filter, params, output): (&[u8], &[u8], &mut [u8]),
    wbuf: &mut [u32],
) -> Result<bool, Error> {
    let c = g.in_c;
    let run = g.k_w * c;
    if g.k_h != 3 || g.dilation_w != 1 || run > 4 || run == 0 || g.out_c == 0 {
        return Ok(false);
    }
    let k = 3 * run;
    let (row, step, oc_n) = (g.dilation_h * pw * c, g.stride_w * c, g.out_c);
    let wv = wbuf.get_mut(..24).ok_or(Error::OutOfBounds)?;
    for oc in (0..oc_n).step_by(4) {
        // Past the last channel the last one is computed again (written again, same value).
        let rows = rows4(oc, oc_n);
        let mut aligned = [[0u8; 12]; 4];
        let mut bias = [0i32; 4];
        let mut qs = [Channel::default(); 4];
        for ((a, &r), (q, b)) in aligned
            .iter_mut()
            .zip(&rows)
            .zip(qs.iter_mut().zip(&mut bias))
        {
            let w = filter.get(r * k..(r + 1) * k).ok_or(Error::OutOfBounds)?;
            for (dst, src) in a.chunks_exact_mut(4).zip(w.chunks_exact(run)) {
                dst.get_mut(..run)
                    .ok_or(Error::OutOfBounds)?
                    .copy_from_slice(src);
            }
            (*q, *b) = record(params, r)?;
        }
        widen_rows(aligned.each_ref().map(|a| &a[..]), wv);
        let wv: &[u32] = wv;
        let quad = Quad::new(qs, op);
        let contiguous = rows[3] == oc + 3;
        let whole = quad.short_quad(bias, op).filter(|_| contiguous);
        for oy in 0..g.out_h {
            let x = padded
                .get(oy * g.stride_h * pw * c..)
                .ok_or(Error::OutOfBounds)?;
            let at = oy * g.out_w * oc_n;
            if let (Some(q), Some(o)) = (&whole, output.get_mut(at + oc..)) {
                if window3_short(x, row, step, wv, q, o, oc_n, g.out_w).is_some() {
                    continue;
                }
            }
            for ox in 0..g.out_w {
                let mut win = [0u8; 12];
                for (r, w) in win.chunks_exact_mut(4).enumerate() {
                    let from = ox * step + r * row;
                    let src = x.get(from..from + run).ok_or(Error::OutOfBounds)?;
                    w.get_mut(..run)
                        .ok_or(Error::OutOfBounds)?
                        .copy_from_slice(src);
                }
                let v = quad.apply(block_stationary(&win, wv, [&[]; 4], bias), op);
                let o = at + ox * oc_n;
                for (&r, v) in rows.iter().zip(v) {
                    *output.get_mut(o + r).ok_or(Error::OutOfBounds)? = v;
                }
            }
        }
    }
    Ok(true)
}

/// CONV_2D over tiles of gathered patches. Returns `false` (nothing written) for a layer
/// this path does not take: the caller tries the next.
// Out of line: the loops get the registers to themselves.
#[inline(never)]
#[cfg_attr(target_os = "none", optimize(speed))]
pub fn conv2d_tiled(
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
    if k == 0 || k > MAX_TILED_PATCH || g.out_c == 0 {
        return Ok(false);
    }
    let oc_n = g.out_c;
    let pixels = g.out_h * g.out_w;
    // Patches are padded to whole groups of four, so every product is in the inner loop and
    // a tile can be walked whole (`pointwise_short`). What a pad holds (a spill, or what the
    // last operator left in scratch) adds nothing: the weights are widened with zeros there.
    let kp = k.next_multiple_of(4);
    let tile = tile_pixels(g, kp);
    let padded_len = padded_bytes(g);
    let buf = scratch.bytes(if padded_len > 0 {
        padded_len + PADDED_SLACK
    } else {
        0
    })?;
    let pw = pad_input(g, zp, input, buf)?;
    let padded: &[u8] = buf;
    let wbuf = scratch.words(wbuf_words(kp))?;
    if let Some(pw) = pw {
        let layer = (filter, params, &mut *output);
        if conv2d_windows(g, op, padded, pw, layer, wbuf)? {
            return Ok(true);
        }
    }
    let wbuf = wbuf.get_mut(..kp / 4 * 8).ok_or(Error::OutOfBounds)?;
    // Slack for the word copies of `gather_padded`.
    let patches = scratch.bytes(tile * kp + 4)?;
    for first in (0..pixels).step_by(tile) {
        let n = tile.min(pixels - first);
        let (mut oy, mut ox) = (first / g.out_w, first % g.out_w);
        let mut j = 0;
        while j < n {
            if ox == g.out_w {
                (oy, ox) = (oy + 1, 0);
            }
            // The rest of this output row's patches in one run where it can.
            let count = (g.out_w - ox).min(n - j);
            if let Some(pw) = pw {
                let run = (j * kp, kp, count);
                if gather_run(g, padded, pw, (oy, ox), patches, run).is_some() {
                    (j, ox) = (j + count, ox + count);
                    continue;
                }
            }
            match pw {
                Some(pw) => gather_padded(g, padded, pw, (oy, ox), patches, j * kp)?,
                None => {
                    let patch = patches
                        .get_mut(j * kp..j * kp + k)
                        .ok_or(Error::OutOfBounds)?;
                    gather(g, oy, ox, zp, input, patch)?
                }
            }
            (j, ox) = (j + 1, ox + 1);
        }
        let patches = patches.get(..n * kp).ok_or(Error::OutOfBounds)?;
        let out = output
            .get_mut(first * oc_n..(first + n) * oc_n)
            .ok_or(Error::OutOfBounds)?;
        for oc in (0..oc_n).step_by(4) {
            // Past the last channel the last one is computed again (written again, same value).
            let rows = rows4(oc, oc_n);
            let mut w: [&[u8]; 4] = [&[]; 4];
            let mut bias = [0i32; 4];
            let mut qs = [Channel::default(); 4];
            for (i, &r) in rows.iter().enumerate() {
                w[i] = filter.get(r * k..(r + 1) * k).ok_or(Error::OutOfBounds)?;
                (qs[i], bias[i]) = record(params, r)?;
            }
            widen_rows(w, wbuf);
            let wbuf: &[u32] = wbuf;
            let quad = Quad::new(qs, op);
            let contiguous = rows[3] == oc + 3;
            let whole = quad.short_quad(bias, op).filter(|_| contiguous);
            if let (Some(q), Some(o)) = (whole, out.get_mut(oc..)) {
                if pointwise_short(patches, kp, wbuf, &q, o, oc_n, n).is_some() {
                    continue;
                }
            }
            for (patch, o) in patches.chunks_exact(kp).zip(out.chunks_exact_mut(oc_n)) {
                let v = quad.apply(block_stationary(patch, wbuf, [&[]; 4], bias), op);
                if contiguous {
                    o.get_mut(oc..oc + 4)
                        .ok_or(Error::OutOfBounds)?
                        .copy_from_slice(&v);
                } else {
                    for (&r, v) in rows.iter().zip(v) {
                        *o.get_mut(r).ok_or(Error::OutOfBounds)? = v;
                    }
                }
            }
        }
    }
    Ok(true)
}
