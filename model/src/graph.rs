//! A parsed and fully checked model: tensors, operators with their geometry, and the arena plan.
//!
//! Everything that can be wrong with a model is found here, once: afterwards the kernels only
//! see shapes and slices that fit together.

use crate::Error;
use crate::flatbuf::{Buf, Table, Vector};
use crate::schema::{activation, field, op, options, padding, tensor_type};
use heapless::Vec;

/// Most tensors and operators a model may have (static tables, no allocator).
pub const MAX_TENSORS: usize = 64;
pub const MAX_OPS: usize = 32;
const MAX_DIMS: usize = 4;
/// Arena offsets are aligned to this.
const ALIGN: usize = 4;
/// Bytes of per-channel data per output channel: requantization multiplier and shift, and the
/// bias with the input offset folded in (`kernels::dsp::folded_bias`), native-endian i32s.
pub const CHANNEL_PARAM_BYTES: usize = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    None,
    Relu,
    Relu6,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElemType {
    Int8,
    Int32,
}

impl ElemType {
    pub fn size(self) -> usize {
        match self {
            ElemType::Int8 => 1,
            ElemType::Int32 => 4,
        }
    }
}

/// A tensor as the model declares it.
#[derive(Debug, Clone, Copy)]
pub struct Tensor<'a> {
    pub ty: ElemType,
    pub dims: [usize; MAX_DIMS],
    pub rank: usize,
    /// Number of elements.
    pub len: usize,
    /// Constant data (weights, biases), exactly `len * ty.size()` bytes; `None` for activations.
    pub data: Option<&'a [u8]>,
    pub scale: f32,
    pub zero_point: i32,
    /// Per-channel scales as little-endian f32 (empty when quantized per tensor).
    pub channel_scales: &'a [u8],
}

impl Tensor<'_> {
    fn dim(&self, i: usize) -> usize {
        self.dims.get(i).copied().unwrap_or(0)
    }

    fn shape4(&self) -> Result<[usize; 4], Error> {
        if self.rank != 4 {
            return Err(Error::ShapeMismatch);
        }
        Ok(self.dims)
    }

    /// Scale of channel `c` (the single scale when quantized per tensor).
    pub fn channel_scale(&self, c: usize) -> f32 {
        let at = c * 4;
        match self.channel_scales.get(at..at + 4) {
            Some(b) => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            None => self.scale,
        }
    }
}

/// Geometry of a 2-D convolution (also depthwise): NHWC, batch 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeom {
    pub in_h: usize,
    pub in_w: usize,
    pub in_c: usize,
    pub out_h: usize,
    pub out_w: usize,
    pub out_c: usize,
    pub k_h: usize,
    pub k_w: usize,
    pub stride_h: usize,
    pub stride_w: usize,
    pub dilation_h: usize,
    pub dilation_w: usize,
    pub pad_h: usize,
    pub pad_w: usize,
    pub depth_multiplier: usize,
}

/// Geometry of a 2-D pooling: NHWC, batch 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolGeom {
    pub in_h: usize,
    pub in_w: usize,
    pub channels: usize,
    pub out_h: usize,
    pub out_w: usize,
    pub f_h: usize,
    pub f_w: usize,
    pub stride_h: usize,
    pub stride_w: usize,
    pub pad_h: usize,
    pub pad_w: usize,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OpKind {
    Conv2d(ConvGeom),
    DepthwiseConv2d(ConvGeom),
    FullyConnected {
        batch: usize,
        depth: usize,
        units: usize,
    },
    AveragePool2d(PoolGeom),
    MaxPool2d(PoolGeom),
    Reshape,
    Softmax {
        rows: usize,
        depth: usize,
        input_multiplier: i32,
        input_left_shift: i32,
        diff_min: i32,
    },
}

impl OpKind {
    pub fn name(&self) -> &'static str {
        match self {
            OpKind::Conv2d(_) => "CONV_2D",
            OpKind::DepthwiseConv2d(_) => "DEPTHWISE_CONV_2D",
            OpKind::FullyConnected { .. } => "FULLY_CONNECTED",
            OpKind::AveragePool2d(_) => "AVERAGE_POOL_2D",
            OpKind::MaxPool2d(_) => "MAX_POOL_2D",
            OpKind::Reshape => "RESHAPE",
            OpKind::Softmax { .. } => "SOFTMAX",
        }
    }
}

/// One operator, ready to run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Op {
    pub kind: OpKind,
    pub input: usize,
    pub weights: Option<usize>,
    pub bias: Option<usize>,
    pub output: usize,
    /// -input zero point, output zero point, and the clamp range of the fused activation.
    pub input_offset: i32,
    pub output_offset: i32,
    pub act_min: i32,
    pub act_max: i32,
    /// Output channels with their own requantization (conv, depthwise, fully connected).
    pub channels: usize,
    /// Where those channels' (multiplier, shift) pairs live in the arena.
    pub params_offset: usize,
}

/// A checked model and its memory plan. Borrows the model bytes (zero copy).
#[derive(Debug, Clone)]
pub struct Model<'a> {
    pub tensors: Vec<Tensor<'a>, MAX_TENSORS>,
    pub ops: Vec<Op, MAX_OPS>,
    pub input: usize,
    pub output: usize,
    /// Arena offset of every activation tensor (unused for constants).
    pub offsets: [usize; MAX_TENSORS],
    /// Bytes of arena the model needs: activations, then per-channel parameters.
    pub arena_size: usize,
}

fn idx(v: i32, len: usize) -> Result<usize, Error> {
    usize::try_from(v)
        .ok()
        .filter(|&i| i < len)
        .ok_or(Error::OutOfBounds)
}

fn positive(v: i32) -> Result<usize, Error> {
    usize::try_from(v)
        .ok()
        .filter(|&n| n > 0)
        .ok_or(Error::Malformed)
}

fn align(n: usize) -> Result<usize, Error> {
    n.checked_add(ALIGN - 1)
        .map(|n| n / ALIGN * ALIGN)
        .ok_or(Error::TooLarge)
}

fn fused(code: u8) -> Result<Activation, Error> {
    match code {
        activation::NONE => Ok(Activation::None),
        activation::RELU => Ok(Activation::Relu),
        activation::RELU6 => Ok(Activation::Relu6),
        _ => Err(Error::UnsupportedActivation),
    }
}

/// Output size and leading padding, as TFLite's `ComputeOutSize` and `ComputePaddingWithOffset`.
fn out_and_pad(
    pad: u8,
    input: usize,
    filter: usize,
    stride: usize,
    dilation: usize,
) -> Result<(usize, usize), Error> {
    let effective = filter
        .checked_sub(1)
        .and_then(|f| f.checked_mul(dilation))
        .and_then(|f| f.checked_add(1))
        .ok_or(Error::ShapeMismatch)?;
    let out = match pad {
        padding::SAME => input.checked_add(stride - 1).ok_or(Error::TooLarge)? / stride,
        padding::VALID => match input
            .checked_add(stride)
            .ok_or(Error::TooLarge)?
            .checked_sub(effective)
        {
            Some(n) => n / stride,
            None => 0,
        },
        _ => return Err(Error::Malformed),
    };
    if out == 0 {
        return Err(Error::ShapeMismatch);
    }
    let total = (out - 1)
        .checked_mul(stride)
        .and_then(|n| n.checked_add(effective))
        .ok_or(Error::TooLarge)?
        .saturating_sub(input);
    Ok((out, total / 2))
}

impl<'a> Model<'a> {
    /// Parses and checks a TensorFlow Lite flatbuffer, and plans its arena.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        let buf = Buf(bytes);
        if bytes.get(4..8).ok_or(Error::OutOfBounds)? != b"TFL3" {
            return Err(Error::BadIdentifier);
        }
        let root = buf.root()?;
        if root.u32(field::model::VERSION, 0)? != 3 {
            return Err(Error::UnsupportedVersion);
        }
        let codes = root
            .vector(field::model::OPERATOR_CODES, 4)?
            .ok_or(Error::Malformed)?;
        let subgraphs = root
            .vector(field::model::SUBGRAPHS, 4)?
            .ok_or(Error::Malformed)?;
        let buffers = root
            .vector(field::model::BUFFERS, 4)?
            .ok_or(Error::Malformed)?;
        if subgraphs.len() != 1 {
            return Err(Error::UnsupportedSubgraphs);
        }
        let graph = subgraphs.table(0)?;

        let tensor_tables = graph
            .vector(field::subgraph::TENSORS, 4)?
            .ok_or(Error::Malformed)?;
        if tensor_tables.len() > MAX_TENSORS {
            return Err(Error::TooLarge);
        }
        let mut tensors = Vec::new();
        for i in 0..tensor_tables.len() {
            let t = parse_tensor(&tensor_tables.table(i)?, &buffers)?;
            tensors.push(t).map_err(|_| Error::TooLarge)?;
        }
        let single = |index: usize| -> Result<usize, Error> {
            let v = graph.vector(index, 4)?.ok_or(Error::Malformed)?;
            if v.len() != 1 {
                return Err(Error::UnsupportedSubgraphs);
            }
            idx(v.i32(0)?, tensors.len())
        };
        let input = single(field::subgraph::INPUTS)?;
        let output = single(field::subgraph::OUTPUTS)?;
        for t in [input, output] {
            let t = tensors.get(t).ok_or(Error::OutOfBounds)?;
            if t.ty != ElemType::Int8 || t.data.is_some() {
                return Err(Error::UnsupportedType);
            }
        }

        let op_tables = graph
            .vector(field::subgraph::OPERATORS, 4)?
            .ok_or(Error::Malformed)?;
        if op_tables.len() > MAX_OPS {
            return Err(Error::TooLarge);
        }
        let mut ops = Vec::new();
        for i in 0..op_tables.len() {
            let op = parse_op(&op_tables.table(i)?, &codes, &tensors)?;
            ops.push(op).map_err(|_| Error::TooLarge)?;
        }
        let mut model = Model {
            tensors,
            ops,
            input,
            output,
            offsets: [0; MAX_TENSORS],
            arena_size: 0,
        };
        model.plan()?;
        Ok(model)
    }

    /// Greedy first-fit placement, largest tensors first, of tensors whose lifetimes overlap
    /// (as TFLite Micro's greedy planner); then the per-channel parameters.
    fn plan(&mut self) -> Result<(), Error> {
        const UNUSED: usize = usize::MAX;
        let n_ops = self.ops.len();
        let mut first = [UNUSED; MAX_TENSORS];
        let mut last = [0usize; MAX_TENSORS];
        let mut touch = |t: usize, at: usize| {
            if let (Some(f), Some(l)) = (first.get_mut(t), last.get_mut(t)) {
                *f = (*f).min(at);
                *l = (*l).max(at);
            }
        };
        touch(self.input, 0);
        touch(self.output, n_ops);
        for (i, op) in self.ops.iter().enumerate() {
            touch(op.input, i);
            touch(op.output, i);
        }
        let mut order: Vec<usize, MAX_TENSORS> = (0..self.tensors.len())
            .filter(|&t| first[t] != UNUSED)
            .collect();
        let size = |t: usize| self.tensors.get(t).map_or(0, |x| x.len * x.ty.size());
        // Insertion sort, largest first (ties by index): at most 64 entries, and on a
        // microcontroller it is 10 KiB of flash smaller than a generic `sort_by`.
        for i in 1..order.len() {
            let mut j = i;
            while j > 0 && size(order[j - 1]) < size(order[j]) {
                order.swap(j - 1, j);
                j -= 1;
            }
        }
        let mut placed: Vec<usize, MAX_TENSORS> = Vec::new();
        let mut end = 0usize;
        for &t in &order {
            let len = align(size(t))?;
            let overlaps = |o: usize| !(last[o] < first[t] || last[t] < first[o]);
            let mut offset = 0;
            // Try 0 and the end of every conflicting tensor; take the lowest that fits.
            let mut best = None;
            for candidate in core::iter::once(0).chain(
                placed
                    .iter()
                    .filter(|&&o| overlaps(o))
                    .map(|&o| self.offsets[o] + align(size(o)).unwrap_or(0)),
            ) {
                let clash = placed.iter().any(|&o| {
                    overlaps(o)
                        && candidate < self.offsets[o] + align(size(o)).unwrap_or(0)
                        && self.offsets[o] < candidate + len
                });
                if !clash && best.is_none_or(|b| candidate < b) {
                    best = Some(candidate);
                }
            }
            if let Some(b) = best {
                offset = b;
            }
            self.offsets[t] = offset;
            end = end.max(offset.checked_add(len).ok_or(Error::TooLarge)?);
            let _ = placed.push(t);
        }
        for op in self.ops.iter_mut() {
            op.params_offset = end;
            end = op
                .channels
                .checked_mul(CHANNEL_PARAM_BYTES)
                .and_then(|n| n.checked_add(end))
                .ok_or(Error::TooLarge)?;
        }
        self.arena_size = end;
        Ok(())
    }

    pub fn input_len(&self) -> usize {
        self.tensors.get(self.input).map_or(0, |t| t.len)
    }

    pub fn output_len(&self) -> usize {
        self.tensors.get(self.output).map_or(0, |t| t.len)
    }

    /// (scale, zero point) of the input, to quantize raw features.
    pub fn input_quantization(&self) -> (f32, i32) {
        self.tensors
            .get(self.input)
            .map_or((0.0, 0), |t| (t.scale, t.zero_point))
    }

    /// Multiply-accumulates of operator `i` (0 for data movement).
    pub fn op_macs(&self, i: usize) -> u64 {
        let Some(op) = self.ops.get(i) else { return 0 };
        let n = |v: &[usize]| v.iter().map(|&x| x as u64).product::<u64>();
        match op.kind {
            OpKind::Conv2d(g) => n(&[g.out_h, g.out_w, g.out_c, g.k_h, g.k_w, g.in_c]),
            OpKind::DepthwiseConv2d(g) => n(&[g.out_h, g.out_w, g.out_c, g.k_h, g.k_w]),
            OpKind::FullyConnected {
                batch,
                depth,
                units,
            } => n(&[batch, depth, units]),
            _ => 0,
        }
    }

    /// Multiply-accumulates of one inference.
    pub fn macs(&self) -> u64 {
        (0..self.ops.len()).map(|i| self.op_macs(i)).sum()
    }
}

fn parse_tensor<'a>(t: &Table<'a>, buffers: &Vector<'a>) -> Result<Tensor<'a>, Error> {
    let ty = match t.u8(field::tensor::TYPE, 0)? {
        tensor_type::INT8 => ElemType::Int8,
        tensor_type::INT32 => ElemType::Int32,
        _ => return Err(Error::UnsupportedType),
    };
    if t.bool(field::tensor::IS_VARIABLE)? || t.table(field::tensor::SPARSITY)?.is_some() {
        return Err(Error::UnsupportedType);
    }
    let mut dims = [1usize; MAX_DIMS];
    let mut rank = 0;
    let mut len = 1usize;
    if let Some(shape) = t.vector(field::tensor::SHAPE, 4)? {
        if shape.len() > MAX_DIMS {
            return Err(Error::ShapeMismatch);
        }
        rank = shape.len();
        for (i, d) in dims.iter_mut().enumerate().take(rank) {
            *d = usize::try_from(shape.i32(i)?)
                .ok()
                .filter(|&d| d > 0)
                .ok_or(Error::ShapeMismatch)?;
            len = len.checked_mul(*d).ok_or(Error::TooLarge)?;
        }
    }
    let buffer = buffers.table(
        usize::try_from(t.u32(field::tensor::BUFFER, 0)?).map_err(|_| Error::OutOfBounds)?,
    )?;
    if buffer.u64(field::buffer::OFFSET, 0)? > 1 {
        return Err(Error::UnsupportedType); // data outside the flatbuffer
    }
    let data = match buffer.vector(field::buffer::DATA, 1)? {
        Some(v) if !v.is_empty() => {
            if Some(v.len()) != len.checked_mul(ty.size()) {
                return Err(Error::MissingData);
            }
            Some(v.bytes())
        }
        _ => None,
    };
    let (mut scale, mut zero_point, mut channel_scales) = (0.0f32, 0i32, &[][..]);
    if let Some(q) = t.table(field::tensor::QUANTIZATION)? {
        if let Some(scales) = q.vector(field::quantization::SCALE, 4)? {
            if !scales.is_empty() {
                scale = scales.f32(0)?;
                if scales.len() > 1 {
                    channel_scales = scales.bytes();
                }
            }
            if let Some(zps) = q.vector(field::quantization::ZERO_POINT, 8)? {
                if !zps.is_empty() {
                    zero_point =
                        i32::try_from(zps.i64(0)?).map_err(|_| Error::UnsupportedQuantization)?;
                    // Per-channel tensors (weights) must be symmetric.
                    for i in 1..zps.len() {
                        if zps.i64(i)? != 0 {
                            return Err(Error::UnsupportedQuantization);
                        }
                    }
                }
            }
            if scales.len() > 1 && q.i32(field::quantization::QUANTIZED_DIMENSION, 0)? < 0 {
                return Err(Error::UnsupportedQuantization);
            }
        }
    }
    if ty == ElemType::Int8 && !(scale > 0.0 && scale.is_finite()) {
        return Err(Error::UnsupportedQuantization);
    }
    if ty == ElemType::Int8 && !(-128..=127).contains(&zero_point) {
        return Err(Error::UnsupportedQuantization);
    }
    Ok(Tensor {
        ty,
        dims,
        rank,
        len,
        data,
        scale,
        zero_point,
        channel_scales,
    })
}

fn parse_op(t: &Table<'_>, codes: &Vector<'_>, tensors: &[Tensor<'_>]) -> Result<Op, Error> {
    let code = codes.table(
        usize::try_from(t.u32(field::operator::OPCODE_INDEX, 0)?)
            .map_err(|_| Error::OutOfBounds)?,
    )?;
    if code.vector(field::operator_code::CUSTOM_CODE, 1)?.is_some() {
        return Err(Error::UnsupportedOperator);
    }
    let builtin = i32::from(code.i8(field::operator_code::DEPRECATED_BUILTIN_CODE, 0)?)
        .max(code.i32(field::operator_code::BUILTIN_CODE, 0)?);
    const SUPPORTED: [i32; 7] = [
        op::CONV_2D,
        op::DEPTHWISE_CONV_2D,
        op::FULLY_CONNECTED,
        op::AVERAGE_POOL_2D,
        op::MAX_POOL_2D,
        op::RESHAPE,
        op::SOFTMAX,
    ];
    if !SUPPORTED.contains(&builtin) {
        return Err(Error::UnsupportedOperator);
    }
    let ins = t
        .vector(field::operator::INPUTS, 4)?
        .ok_or(Error::Malformed)?;
    let outs = t
        .vector(field::operator::OUTPUTS, 4)?
        .ok_or(Error::Malformed)?;
    if outs.len() != 1 || ins.is_empty() || ins.len() > 3 {
        return Err(Error::Malformed);
    }
    let input_at = |i: usize| -> Result<Option<usize>, Error> {
        if i >= ins.len() {
            return Ok(None);
        }
        match ins.i32(i)? {
            -1 => Ok(None),
            v => idx(v, tensors.len()).map(Some),
        }
    };
    let input = input_at(0)?.ok_or(Error::Malformed)?;
    let output = idx(outs.i32(0)?, tensors.len())?;
    let tin = tensors.get(input).ok_or(Error::OutOfBounds)?;
    let tout = tensors.get(output).ok_or(Error::OutOfBounds)?;
    if tin.ty != ElemType::Int8
        || tout.ty != ElemType::Int8
        || tin.data.is_some()
        || tout.data.is_some()
    {
        return Err(Error::UnsupportedType);
    }
    let opts_type = t.u8(field::operator::BUILTIN_OPTIONS_TYPE, 0)?;
    let opts = t.table(field::operator::BUILTIN_OPTIONS)?;
    let options_of = |tag: u8| -> Result<Table<'_>, Error> {
        match opts {
            Some(o) if opts_type == tag => Ok(o),
            _ => Err(Error::Malformed),
        }
    };
    let mut op = Op {
        kind: OpKind::Reshape,
        input,
        weights: None,
        bias: None,
        output,
        input_offset: -tin.zero_point,
        output_offset: tout.zero_point,
        act_min: -128,
        act_max: 127,
        channels: 0,
        params_offset: 0,
    };
    let mut act = Activation::None;
    match builtin {
        op::CONV_2D | op::DEPTHWISE_CONV_2D => {
            let depthwise = builtin == op::DEPTHWISE_CONV_2D;
            let o = options_of(if depthwise {
                options::DEPTHWISE_CONV_2D
            } else {
                options::CONV_2D
            })?;
            let (pad, sw, sh, act_code, dw, dh, dm) = if depthwise {
                use field::depthwise as f;
                (
                    o.u8(f::PADDING, 0)?,
                    o.i32(f::STRIDE_W, 0)?,
                    o.i32(f::STRIDE_H, 0)?,
                    o.u8(f::ACTIVATION, 0)?,
                    o.i32(f::DILATION_W, 1)?,
                    o.i32(f::DILATION_H, 1)?,
                    o.i32(f::DEPTH_MULTIPLIER, 0)?,
                )
            } else {
                use field::conv2d as f;
                (
                    o.u8(f::PADDING, 0)?,
                    o.i32(f::STRIDE_W, 0)?,
                    o.i32(f::STRIDE_H, 0)?,
                    o.u8(f::ACTIVATION, 0)?,
                    o.i32(f::DILATION_W, 1)?,
                    o.i32(f::DILATION_H, 1)?,
                    1,
                )
            };
            act = fused(act_code)?;
            let w = input_at(1)?.ok_or(Error::Malformed)?;
            let tw = tensors.get(w).ok_or(Error::OutOfBounds)?;
            if tw.ty != ElemType::Int8 || tw.data.is_none() {
                return Err(Error::MissingData);
            }
            let [_, in_h, in_w, in_c] = tin.shape4()?;
            let [wd0, k_h, k_w, wd3] = tw.shape4()?;
            let [ob, out_h, out_w, out_c] = tout.shape4()?;
            let dm = positive(dm)?;
            let (want_out_c, filter_in) = if depthwise {
                (in_c.checked_mul(dm).ok_or(Error::TooLarge)?, 1)
            } else {
                (wd0, in_c)
            };
            let filter_ok = if depthwise {
                wd0 == 1 && wd3 == out_c
            } else {
                wd3 == filter_in
            };
            if tin.dim(0) != 1 || ob != 1 || !filter_ok || out_c != want_out_c {
                return Err(Error::ShapeMismatch);
            }
            let (sh, sw, dh, dw) = (positive(sh)?, positive(sw)?, positive(dh)?, positive(dw)?);
            let (oh, pad_h) = out_and_pad(pad, in_h, k_h, sh, dh)?;
            let (ow, pad_w) = out_and_pad(pad, in_w, k_w, sw, dw)?;
            if (oh, ow) != (out_h, out_w) {
                return Err(Error::ShapeMismatch);
            }
            let g = ConvGeom {
                in_h,
                in_w,
                in_c,
                out_h,
                out_w,
                out_c,
                k_h,
                k_w,
                stride_h: sh,
                stride_w: sw,
                dilation_h: dh,
                dilation_w: dw,
                pad_h,
                pad_w,
                depth_multiplier: dm,
            };
            op.kind = if depthwise {
                OpKind::DepthwiseConv2d(g)
            } else {
                OpKind::Conv2d(g)
            };
            op.weights = Some(w);
            op.channels = out_c;
            check_channel_scales(tw, out_c)?;
            op.bias = check_bias(input_at(2)?, tensors, out_c)?;
        }
        op::FULLY_CONNECTED => {
            let o = options_of(options::FULLY_CONNECTED)?;
            act = fused(o.u8(field::fully_connected::ACTIVATION, 0)?)?;
            if o.u8(field::fully_connected::WEIGHTS_FORMAT, 0)? != 0 {
                return Err(Error::UnsupportedType);
            }
            let w = input_at(1)?.ok_or(Error::Malformed)?;
            let tw = tensors.get(w).ok_or(Error::OutOfBounds)?;
            if tw.ty != ElemType::Int8 || tw.data.is_none() {
                return Err(Error::MissingData);
            }
            if tw.rank != 2 {
                return Err(Error::ShapeMismatch);
            }
            let (units, depth) = (tw.dim(0), tw.dim(1));
            if tin.len % depth != 0 {
                return Err(Error::ShapeMismatch);
            }
            let batch = tin.len / depth;
            if tout.len != batch * units {
                return Err(Error::ShapeMismatch);
            }
            op.kind = OpKind::FullyConnected {
                batch,
                depth,
                units,
            };
            op.weights = Some(w);
            op.channels = units;
            check_channel_scales(tw, units)?;
            op.bias = check_bias(input_at(2)?, tensors, units)?;
        }
        op::AVERAGE_POOL_2D | op::MAX_POOL_2D => {
            use field::pool as f;
            let o = options_of(options::POOL_2D)?;
            act = fused(o.u8(f::ACTIVATION, 0)?)?;
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
            op.kind = if builtin == op::MAX_POOL_2D {
                OpKind::MaxPool2d(g)
            } else {
                OpKind::AveragePool2d(g)
            };
        }
        op::RESHAPE => {
            if tin.len != tout.len {
                return Err(Error::ShapeMismatch);
            }
            same_quantization(tin, tout)?;
            op.kind = OpKind::Reshape;
        }
        op::SOFTMAX => {
            let beta = options_of(options::SOFTMAX)?.f32(field::softmax::BETA, 0.0)?;
            if tin.len != tout.len || tin.rank == 0 {
                return Err(Error::ShapeMismatch);
            }
            // The int8 softmax writes probabilities with scale 1/256 and zero point -128.
            if tout.zero_point != -128 || tout.scale != 1.0 / 256.0 {
                return Err(Error::UnsupportedQuantization);
            }
            let depth = tin.dim(tin.rank - 1);
            let (input_multiplier, input_left_shift, diff_min) =
                crate::kernels::softmax::prepare(beta, tin.scale)?;
            op.kind = OpKind::Softmax {
                rows: tin.len / depth,
                depth,
                input_multiplier,
                input_left_shift,
                diff_min,
            };
        }
        _ => return Err(Error::UnsupportedOperator),
    }
    (op.act_min, op.act_max) = crate::quant::activation_range(act, tout.scale, tout.zero_point);
    Ok(op)
}

fn check_channel_scales(w: &Tensor<'_>, channels: usize) -> Result<(), Error> {
    let n = w.channel_scales.len() / 4;
    if n != 0 && n != channels {
        return Err(Error::UnsupportedQuantization);
    }
    for c in 0..n.max(1) {
        let s = w.channel_scale(c);
        if !(s > 0.0 && s.is_finite()) {
            return Err(Error::UnsupportedQuantization);
        }
    }
    Ok(())
}

fn check_bias(
    bias: Option<usize>,
    tensors: &[Tensor<'_>],
    channels: usize,
) -> Result<Option<usize>, Error> {
    let Some(b) = bias else { return Ok(None) };
    let t = tensors.get(b).ok_or(Error::OutOfBounds)?;
    if t.ty != ElemType::Int32 {
        return Err(Error::UnsupportedType);
    }
    if t.data.is_none() {
        return Err(Error::MissingData);
    }
    if t.len != channels {
        return Err(Error::ShapeMismatch);
    }
    Ok(Some(b))
}

fn same_quantization(a: &Tensor<'_>, b: &Tensor<'_>) -> Result<(), Error> {
    if a.scale != b.scale || a.zero_point != b.zero_point {
        return Err(Error::UnsupportedQuantization);
    }
    Ok(())
}
