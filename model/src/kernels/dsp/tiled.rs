//! CONV_2D with short patches (up to `MAX_TILED_PATCH` values, a first layer's or a narrow
//! layer's): a tile of pixels' patches gathered once, then for every four output channels
//! their weights widened once and the four dot products of each patch taken by the same
//! inner loop as the 1x1 path (`block_stationary`).

use super::requant::Quad;
use super::{Channel, block_stationary, gather, record, rows4, widen_rows, zero_point};
use crate::Error;
use crate::graph::{ConvGeom, Op};

/// Longest patch (filter height x width x input channels) taken here.
pub const MAX_TILED_PATCH: usize = 144;
/// Bytes of gathered patches per tile: `TILE_BYTES / k` pixels at a time. Stack scratch:
/// these and the widened weights of four channels (`8 * MAX_TILED_PATCH` bytes), 2.3 KiB.
const TILE_BYTES: usize = 1152;

/// CONV_2D over tiles of gathered patches. Returns `false` (nothing written) for a layer
/// this path does not take: the caller tries the next.
// Out of line: the loops get the registers to themselves.
#[inline(never)]
pub fn conv2d_tiled(
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
    if k == 0 || k > MAX_TILED_PATCH || g.out_c == 0 {
        return Ok(false);
    }
    let oc_n = g.out_c;
    let pixels = g.out_h * g.out_w;
    let tile = TILE_BYTES / k;
    let mut patches = [0u8; TILE_BYTES];
    let mut wbuf = [0u32; 2 * MAX_TILED_PATCH];
    let wbuf = wbuf.get_mut(..k / 4 * 8).ok_or(Error::OutOfBounds)?;
    for first in (0..pixels).step_by(tile) {
        let n = tile.min(pixels - first);
        for (j, patch) in patches.chunks_exact_mut(k).take(n).enumerate() {
            let px = first + j;
            gather(g, px / g.out_w, px % g.out_w, zp, input, patch)?;
        }
        let patches = patches.get(..n * k).ok_or(Error::OutOfBounds)?;
        let out = output
            .get_mut(first * oc_n..(first + n) * oc_n)
            .ok_or(Error::OutOfBounds)?;
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
            let quad = Quad::new(qs, op);
            let contiguous = rows[3] == oc + 3;
            for (patch, o) in patches.chunks_exact(k).zip(out.chunks_exact_mut(oc_n)) {
                let v = quad.apply(block_stationary(patch, wbuf, tails, bias), op);
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
