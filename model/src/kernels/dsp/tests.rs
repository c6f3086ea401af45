//! The DSP kernels against the portable ones on random layers of many shapes (odd channel
//! counts, tails, padding, strides, dilation, every path and fallback): identical bytes.

use super::*;
use crate::graph::{OpKind, PoolGeom};
use crate::kernels::{bias_at, conv, fully_connected as portable_fc};
use crate::ops::{MAX_INPUTS, NO_TENSOR};
use std::vec;
use std::vec::Vec;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    fn below(&mut self, n: u64) -> usize {
        (self.next() % n) as usize
    }
}

fn op(kind: OpKind, channels: usize, rng: &mut Rng) -> Op {
    let zp = rng.below(256) as i32 - 128;
    let (act_min, act_max) = if rng.below(2) == 0 {
        (-128, 127)
    } else {
        (-128 + rng.below(100) as i32, 127 - rng.below(100) as i32)
    };
    Op {
        kind,
        input: 0,
        weights: Some(1),
        bias: Some(2),
        output: 3,
        inputs: [NO_TENSOR; MAX_INPUTS],
        n_inputs: 0,
        input_offset: -zp,
        output_offset: rng.below(256) as i32 - 128,
        act_min,
        act_max,
        channels,
        params_offset: 0,
    }
}

/// Scratch as the planner sizes it for `op`, holding garbage (what the last operator left)
/// and one byte more, so that `&buf[1..]` starts off a word boundary as an arena's may.
fn scratch(op: &Op, rng: &mut Rng) -> Vec<u8> {
    rng.bytes(scratch_bytes(op) + 1)
}

/// Channel records as `Interpreter::new` writes them, for random scales: mostly a converter's
/// (a right shift: the short requantization paths), now and then one of 0.5 or more (the
/// reference paths).
fn params(op: &Op, weights: &[u8], bias: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut p = vec![0u8; op.channels * CHANNEL_PARAM_BYTES];
    for (c, slot) in p.chunks_exact_mut(CHANNEL_PARAM_BYTES).enumerate() {
        let real = if rng.below(8) == 0 {
            0.5 + (rng.below(1000) as f64) * 0.003
        } else {
            0.0005 + (rng.below(1000) as f64) * 0.00002
        };
        let q = crate::quant::quantize_multiplier(real);
        write_record(op, weights, bias_at(Some(bias), c), c, q, slot).unwrap();
    }
    p
}

/// Biases for `n` channels: small ones (as trained layers have, within the short paths'
/// bound) for most layers, any int32 for some.
fn biases(n: usize, rng: &mut Rng) -> Vec<u8> {
    let full = rng.below(4) == 0;
    (0..n)
        .flat_map(|_| {
            let b = rng.next() as i32;
            let b = if full { b } else { b >> 15 };
            b.to_le_bytes()
        })
        .collect()
}

fn geom(rng: &mut Rng, depthwise: bool) -> ConvGeom {
    let k_h = 1 + rng.below(4);
    let k_w = 1 + rng.below(4);
    let in_c = if depthwise {
        1 + rng.below(19)
    } else {
        [1, 2, 3, 4, 7, 8, 16, 33, 64, 70][rng.below(10)]
    };
    let stride = 1 + rng.below(2);
    let dilation = if rng.below(4) == 0 { 2 } else { 1 };
    let (in_h, in_w) = (k_h * dilation + rng.below(6), k_w * dilation + rng.below(6));
    let same = rng.below(2) == 0;
    let eff = |k: usize| (k - 1) * dilation + 1;
    let out = |n: usize, k: usize| {
        if same {
            n.div_ceil(stride)
        } else {
            (n - eff(k)) / stride + 1
        }
    };
    let pad = |n: usize, k: usize, o: usize| ((o - 1) * stride + eff(k)).saturating_sub(n) / 2;
    let (out_h, out_w) = (out(in_h, k_h), out(in_w, k_w));
    ConvGeom {
        in_h,
        in_w,
        in_c,
        out_h,
        out_w,
        out_c: if depthwise { in_c } else { 1 + rng.below(13) },
        k_h,
        k_w,
        stride_h: stride,
        stride_w: stride,
        dilation_h: dilation,
        dilation_w: if rng.below(2) == 0 { dilation } else { 1 }.min(dilation),
        pad_h: pad(in_h, k_h, out_h),
        pad_w: pad(in_w, k_w, out_w),
        depth_multiplier: 1,
    }
}

#[test]
fn conv2d_matches_the_portable_kernel_on_random_layers() {
    let mut rng = Rng(0x243f_6a88_85a3_08d3);
    for i in 0..600 {
        let mut g = geom(&mut rng, false);
        if i % 5 == 0 {
            // 1x1 convolutions (the weights-kept path), some wider than it takes.
            (g.k_h, g.k_w, g.pad_h, g.pad_w, g.dilation_h, g.dilation_w) = (1, 1, 0, 0, 1, 1);
            g.in_c = [1, 5, 8, 64, 130, 300][rng.below(6)];
            g.out_h = (g.in_h - 1) / g.stride_h + 1;
            g.out_w = (g.in_w - 1) / g.stride_w + 1;
        }
        let k = g.k_h * g.k_w * g.in_c;
        let op = op(OpKind::Conv2d(g), g.out_c, &mut rng);
        let input = rng.bytes(g.in_h * g.in_w * g.in_c);
        let filter = rng.bytes(g.out_c * k);
        let bias = biases(g.out_c, &mut rng);
        let params = params(&op, &filter, &bias, &mut rng);
        let n = g.out_h * g.out_w * g.out_c;
        let (mut want, mut got) = (vec![0u8; n], vec![0u8; n]);
        conv::conv2d(&g, &op, &input, &filter, Some(&bias), &params, &mut want).unwrap();
        let mut s = scratch(&op, &mut rng);
        let s = &mut Scratch::new(&mut s[1..]);
        if conv2d(&g, &op, &input, &filter, &params, &mut got, s).unwrap() {
            assert_eq!(got, want, "{g:?} zero point {}", -op.input_offset);
        } else {
            assert!(k > MAX_PATCH, "{g:?} refused");
        }
    }
}

#[test]
fn depthwise_matches_the_portable_kernel_on_random_layers() {
    let mut rng = Rng(0x1319_8a2e_0370_7344);
    for i in 0..600 {
        let mut g = geom(&mut rng, true);
        if i % 3 == 0 {
            (g.k_h, g.k_w) = (3, 3);
            g = ConvGeom {
                in_h: g.in_h + 3,
                in_w: g.in_w + 3,
                ..g
            };
            let same = g.pad_h > 0 || g.pad_w > 0;
            let eff = 2 * g.dilation_h + 1;
            let eff_w = 2 * g.dilation_w + 1;
            let o = |n: usize, e: usize| {
                if same {
                    n.div_ceil(g.stride_h)
                } else {
                    (n - e) / g.stride_h + 1
                }
            };
            g.out_h = o(g.in_h, eff);
            g.out_w = o(g.in_w, eff_w);
            g.pad_h = ((g.out_h - 1) * g.stride_h + eff).saturating_sub(g.in_h) / 2;
            g.pad_w = ((g.out_w - 1) * g.stride_w + eff_w).saturating_sub(g.in_w) / 2;
        }
        let op = op(OpKind::DepthwiseConv2d(g), g.out_c, &mut rng);
        let input = rng.bytes(g.in_h * g.in_w * g.in_c);
        let filter = rng.bytes(g.k_h * g.k_w * g.out_c);
        let bias = biases(g.out_c, &mut rng);
        let params = params(&op, &filter, &bias, &mut rng);
        let n = g.out_h * g.out_w * g.out_c;
        let (mut want, mut got) = (vec![0u8; n], vec![0u8; n]);
        conv::depthwise_conv2d(&g, &op, &input, &filter, Some(&bias), &params, &mut want).unwrap();
        let mut s = scratch(&op, &mut rng);
        let s = &mut Scratch::new(&mut s[1..]);
        assert!(depthwise_conv2d(&g, &op, &input, &filter, &params, &mut got, s).unwrap());
        assert_eq!(got, want, "{g:?} zero point {}", -op.input_offset);
    }
}

#[test]
fn fully_connected_matches_the_portable_kernel_on_random_layers() {
    let mut rng = Rng(0xa409_3822_299f_31d0);
    for _ in 0..400 {
        let depth = [1, 3, 4, 15, 16, 63, 64, 65, 128, 250, 640, 1100][rng.below(12)];
        let units = 1 + rng.below(20);
        let batch = 1 + rng.below(3);
        let kind = OpKind::FullyConnected {
            batch,
            depth,
            units,
        };
        let op = op(kind, units, &mut rng);
        let input = rng.bytes(batch * depth);
        let filter = rng.bytes(units * depth);
        let bias = biases(units, &mut rng);
        let params = params(&op, &filter, &bias, &mut rng);
        let (mut want, mut got) = (vec![0u8; batch * units], vec![0u8; batch * units]);
        portable_fc::fully_connected(
            &op,
            batch,
            depth,
            units,
            &input,
            &filter,
            Some(&bias),
            &params,
            &mut want,
        )
        .unwrap();
        let mut s = scratch(&op, &mut rng);
        let s = &mut Scratch::new(&mut s[1..]);
        if fully_connected(
            &op, batch, depth, units, &input, &filter, &params, &mut got, s,
        )
        .unwrap()
        {
            assert_eq!(got, want, "depth {depth} units {units} batch {batch}");
        } else {
            assert!(depth > MAX_ROW || units < 4);
        }
    }
}

#[test]
fn max_pool_matches_the_portable_kernel_on_random_layers() {
    let mut rng = Rng(0x5eed_0003);
    let mut taken = 0;
    for i in 0..400 {
        let (mut f_h, mut f_w) = (1 + rng.below(3), 1 + rng.below(3));
        let (mut stride_h, mut stride_w) = (1 + rng.below(2), 1 + rng.below(2));
        if i % 4 == 0 {
            // The 2x2 window of stride 2 (its own path when no window overhangs).
            (f_h, f_w, stride_h, stride_w) = (2, 2, 2, 2);
        }
        let (in_h, in_w) = (f_h + rng.below(6), f_w + rng.below(6));
        let channels = [4, 8, 12, 16, 6][rng.below(5)];
        let same = rng.below(2) == 0;
        let out = |n: usize, f: usize, s: usize| if same { n.div_ceil(s) } else { (n - f) / s + 1 };
        let (out_h, out_w) = (out(in_h, f_h, stride_h), out(in_w, f_w, stride_w));
        let pad = |n: usize, f: usize, s: usize, o: usize| ((o - 1) * s + f).saturating_sub(n) / 2;
        let g = PoolGeom {
            in_h,
            in_w,
            channels,
            out_h,
            out_w,
            f_h,
            f_w,
            stride_h,
            stride_w,
            pad_h: pad(in_h, f_h, stride_h, out_h),
            pad_w: pad(in_w, f_w, stride_w, out_w),
        };
        let op = op(OpKind::MaxPool2d(g), 0, &mut rng);
        let input = rng.bytes(in_h * in_w * channels);
        let n = out_h * out_w * channels;
        let (mut want, mut got) = (vec![0u8; n], vec![0u8; n]);
        crate::kernels::pool::pool(&g, &op, false, &input, &mut want).unwrap();
        if pool::max_pool(&g, &op, &input, &mut got).unwrap() {
            assert_eq!(got, want, "{g:?}");
            taken += 1;
        } else {
            assert!(channels % 4 != 0 || op.act_min > -128 || op.act_max < 127);
        }
    }
    assert!(taken > 100, "the DSP path ran {taken} times");
}
