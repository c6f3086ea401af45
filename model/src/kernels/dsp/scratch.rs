//! The DSP kernels' working memory: one region of the arena, planned as the largest any
//! operator takes (`scratch_bytes`), carved per call into the buffers a kernel needs.
//!
//! Buffers come uninitialized in the sense that matters: they hold what the last operator
//! left. Every kernel writes each byte it reads (the DSP tests run on scratch filled with
//! garbage to keep it so), which is what spares the per-call zeroing stack arrays cost.

use super::{MAX_PATCH, MAX_ROW, MAX_STATIONARY, MAX_STRIP, MAX_TAPS};
use crate::Error;
use crate::graph::{ConvGeom, Op, OpKind};

/// The scratch region, handed out front to back.
#[derive(Debug)]
pub struct Scratch<'a> {
    rest: &'a mut [u8],
}

impl<'a> Scratch<'a> {
    pub fn new(bytes: &'a mut [u8]) -> Self {
        Scratch { rest: bytes }
    }

    /// The next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a mut [u8], Error> {
        let rest = core::mem::take(&mut self.rest);
        let (head, rest) = rest.split_at_mut_checked(n).ok_or(Error::OutOfBounds)?;
        self.rest = rest;
        Ok(head)
    }

    /// The next `n` words, aligned (the asm reads them with LDRD, which faults unaligned).
    pub fn words(&mut self, n: usize) -> Result<&'a mut [u32], Error> {
        let skip = self.rest.as_ptr().align_offset(4);
        let (_, rest) = core::mem::take(&mut self.rest)
            .split_at_mut_checked(skip.min(3))
            .ok_or(Error::OutOfBounds)?;
        self.rest = rest;
        let bytes = self.bytes(4 * n)?;
        // SAFETY: every bit pattern is a valid u32, and `align_to_mut` itself keeps the
        // alignment; the region starts aligned, so all of it is the middle part.
        #[allow(unsafe_code)]
        let (head, words, _) = unsafe { bytes.align_to_mut::<u32>() };
        if !head.is_empty() || words.len() != n {
            return Err(Error::OutOfBounds);
        }
        Ok(words)
    }
}

/// Bytes of scratch `op` takes on the DSP kernels: the largest of the paths its shape may
/// take, with 3 bytes for each word buffer's alignment. 0 for operators without scratch.
pub fn scratch_bytes(op: &Op) -> usize {
    let words = |n: usize| 4 * n + 3;
    match op.kind {
        OpKind::Conv2d(g) => conv_scratch(&g),
        OpKind::DepthwiseConv2d(g) => {
            let taps = g.k_h * g.k_w;
            if g.depth_multiplier != 1 || taps > MAX_TAPS || taps == 0 {
                return 0;
            }
            let strip = if taps == 9 { strip_len(&g) } else { 0 };
            // Four strip rows of widened words, two per pixel.
            words(2 * taps)
                + if strip <= MAX_STRIP {
                    words(8 * strip)
                } else {
                    0
                }
        }
        OpKind::FullyConnected { depth, .. } if depth <= MAX_ROW => words(depth / 4 * 2),
        _ => 0,
    }
}

fn conv_scratch(g: &ConvGeom) -> usize {
    let words = |n: usize| 4 * n + 3;
    let k = g.k_h * g.k_w * g.in_c;
    let pointwise = g.k_h == 1 && g.k_w == 1 && g.pad_h == 0 && g.pad_w == 0;
    if pointwise && g.in_c <= MAX_STATIONARY {
        return words(k / 4 * 8);
    }
    let tiled = super::tiled::scratch_bytes(g);
    let columns = if k <= MAX_PATCH {
        words(k / 4 * 4) + k
    } else {
        0
    };
    tiled.max(columns)
}

/// The 3x3 depthwise row path's strip length: the padded input row under a row of outputs,
/// along the longer side (`rows3` walks that way).
pub fn strip_len(g: &ConvGeom) -> usize {
    if g.out_w < g.out_h {
        (g.out_h.max(1) - 1) * g.stride_h + 3
    } else {
        (g.out_w.max(1) - 1) * g.stride_w + 3
    }
}
