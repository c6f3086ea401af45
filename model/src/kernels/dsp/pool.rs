//! MAX_POOL_2D four channels at a time: a signed byte maximum of whole words (SSUB8, SEL),
//! the same bytes as the portable kernel.

use super::simd::max_s8x4;
use super::word;
use crate::Error;
use crate::graph::{Op, PoolGeom};
use crate::kernels::pool::window;

/// MAX_POOL_2D over words of four channels. Returns `false` (nothing written) unless the
/// channels are a multiple of four and the fused activation keeps the whole int8 range (the
/// caller runs the portable kernel).
#[cfg_attr(target_os = "none", optimize(speed))]
pub fn max_pool(g: &PoolGeom, op: &Op, input: &[u8], output: &mut [u8]) -> Result<bool, Error> {
    let c_n = g.channels;
    if c_n == 0 || c_n % 4 != 0 || op.act_min > -128 || op.act_max < 127 {
        return Ok(false);
    }
    let whole = 2 * g.out_h <= g.in_h && 2 * g.out_w <= g.in_w;
    if (g.f_h, g.f_w, g.stride_h, g.stride_w, g.pad_h, g.pad_w) == (2, 2, 2, 2, 0, 0) && whole {
        return max_pool_2x2(g, input, output);
    }
    for oy in 0..g.out_h {
        let (y0, ny) = window(oy, g.stride_h, g.pad_h, g.f_h, g.in_h);
        for ox in 0..g.out_w {
            let (x0, nx) = window(ox, g.stride_w, g.pad_w, g.f_w, g.in_w);
            if ny == 0 || nx == 0 {
                return Err(Error::ShapeMismatch);
            }
            let at = (oy * g.out_w + ox) * c_n;
            let out = output.get_mut(at..at + c_n).ok_or(Error::OutOfBounds)?;
            for (c, o) in (0..c_n).step_by(4).zip(out.chunks_exact_mut(4)) {
                // Every lane starts at -128, below or equal to any value.
                let mut m = 0x8080_8080;
                for y in y0..y0 + ny {
                    let row = (y * g.in_w + x0) * c_n + c;
                    for x in 0..nx {
                        let at = row + x * c_n;
                        m = max_s8x4(m, word(input.get(at..at + 4).ok_or(Error::OutOfBounds)?));
                    }
                }
                o.copy_from_slice(&m.to_le_bytes());
            }
        }
    }
    Ok(true)
}

/// The common 2x2 window of stride 2 without padding, every window inside the input: each
/// output word the maximum of four input words, no window arithmetic per output.
#[cfg_attr(target_os = "none", optimize(speed))]
fn max_pool_2x2(g: &PoolGeom, input: &[u8], output: &mut [u8]) -> Result<bool, Error> {
    let c_n = g.channels;
    let row = g.in_w * c_n;
    let out_row = g.out_w * c_n;
    for (oy, out) in output.chunks_exact_mut(out_row).take(g.out_h).enumerate() {
        let top = input
            .get(2 * oy * row..(2 * oy + 1) * row)
            .ok_or(Error::OutOfBounds)?;
        let bottom = input
            .get((2 * oy + 1) * row..(2 * oy + 2) * row)
            .ok_or(Error::OutOfBounds)?;
        // Output pixel ox reads input pixels 2 ox and 2 ox + 1 of both rows.
        let pairs = top.chunks_exact(2 * c_n).zip(bottom.chunks_exact(2 * c_n));
        for (o, (t, b)) in out.chunks_exact_mut(c_n).zip(pairs) {
            let (t0, t1) = t.split_at(c_n);
            let (b0, b1) = b.split_at(c_n);
            let words = o
                .chunks_exact_mut(4)
                .zip(t0.chunks_exact(4).zip(t1.chunks_exact(4)));
            for ((o, (a, b)), (c, d)) in words.zip(b0.chunks_exact(4).zip(b1.chunks_exact(4))) {
                let m = max_s8x4(max_s8x4(word(a), word(b)), max_s8x4(word(c), word(d)));
                o.copy_from_slice(&m.to_le_bytes());
            }
        }
    }
    Ok(true)
}
