//! Operators: what each one computes (`OpKind`, with the parameters its kernel needs, prepared
//! once as TensorFlow Lite's Prepare step does) and the checks made when a model is parsed, one
//! module per family of operators.

mod activation;
mod conv;
mod elementwise;
mod pool;
mod quantize;
mod reduce;
pub(crate) mod shape;
mod softmax;

use crate::Error;
use crate::flatbuf::{Table, Vector};
use crate::graph::{ElemType, Tensor};
use crate::schema::{activation as act_code, field, op};

/// Most inputs one operator may have (CONCATENATION is the only one with more than three).
pub const MAX_INPUTS: usize = 8;
/// `Op::inputs` entry of an optional input the model leaves out (TFLite's -1).
pub const NO_TENSOR: u16 = u16::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    None,
    Relu,
    Relu6,
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

/// ADD and SUB: both operands brought to a common scale with 20 bits of headroom, then the
/// result to the output's (TFLite's `ArithmeticParams`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddParams {
    pub input2_offset: i32,
    pub left_shift: i32,
    pub input1_multiplier: i32,
    pub input1_shift: i32,
    pub input2_multiplier: i32,
    pub input2_shift: i32,
    pub output_multiplier: i32,
    pub output_shift: i32,
}

/// HARD_SWISH in 16-bit fixed point (TFLite's `HardSwishParams`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HardSwishParams {
    pub output_multiplier: i16,
    pub output_exponent: i32,
    pub reluish_multiplier: i16,
    pub reluish_exponent: i32,
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
    Add(AddParams),
    Sub(AddParams),
    Mul {
        input2_offset: i32,
        multiplier: i32,
        shift: i32,
    },
    /// float32 to int8; the output zero point is `Op::output_offset`.
    Quantize {
        scale: f32,
    },
    /// int8 to int8 at another scale or zero point.
    Requantize {
        multiplier: i32,
        shift: i32,
    },
    /// int8 to float32; `Op::input_offset` is minus the input zero point.
    Dequantize {
        scale: f32,
    },
    /// Constant padding with the output zero point; the amounts are the second input.
    Pad,
    /// Over height and width of an NHWC tensor: the integer sum less the zero points, times
    /// (multiplier, shift), which fold in the division by `h * w`.
    Mean {
        h: usize,
        w: usize,
        c: usize,
        multiplier: i32,
        shift: i32,
    },
    Concatenation {
        axis: usize,
    },
    /// LOGISTIC and TANH: a 256-entry table in the arena, built when the interpreter is.
    Logistic,
    Tanh,
    HardSwish(HardSwishParams),
    /// RELU and RELU6: rescale, then clamp to `Op::act_min..=act_max`.
    Relu {
        multiplier: i32,
        shift: i32,
    },
    Relu6 {
        multiplier: i32,
        shift: i32,
    },
    LeakyRelu {
        alpha_multiplier: i32,
        alpha_shift: i32,
        identity_multiplier: i32,
        identity_shift: i32,
    },
    /// Begin, end and strides are the constant inputs 1..=3, resolved per axis at run time.
    StridedSlice {
        begin_mask: u32,
        end_mask: u32,
        shrink_axis_mask: u32,
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
            OpKind::Add(_) => "ADD",
            OpKind::Sub(_) => "SUB",
            OpKind::Mul { .. } => "MUL",
            OpKind::Quantize { .. } | OpKind::Requantize { .. } => "QUANTIZE",
            OpKind::Dequantize { .. } => "DEQUANTIZE",
            OpKind::Pad => "PAD",
            OpKind::Mean { .. } => "MEAN",
            OpKind::Concatenation { .. } => "CONCATENATION",
            OpKind::Logistic => "LOGISTIC",
            OpKind::Tanh => "TANH",
            OpKind::HardSwish(_) => "HARD_SWISH",
            OpKind::Relu { .. } => "RELU",
            OpKind::Relu6 { .. } => "RELU6",
            OpKind::LeakyRelu { .. } => "LEAKY_RELU",
            OpKind::StridedSlice { .. } => "STRIDED_SLICE",
        }
    }

    /// The runtime ABI that introduced this operator (`graph::RUNTIME_ABI`).
    pub fn abi(&self) -> u32 {
        match self {
            OpKind::Conv2d(_)
            | OpKind::DepthwiseConv2d(_)
            | OpKind::FullyConnected { .. }
            | OpKind::AveragePool2d(_)
            | OpKind::MaxPool2d(_)
            | OpKind::Reshape
            | OpKind::Softmax { .. } => 1,
            _ => 2,
        }
    }

    /// Whether the operator's parameters include a 256-byte lookup table.
    pub fn has_lut(&self) -> bool {
        matches!(self, OpKind::Logistic | OpKind::Tanh)
    }
}

/// One operator, ready to run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Op {
    pub kind: OpKind,
    /// The first input (the activations of conv, fully connected and every one-input op).
    pub input: usize,
    pub weights: Option<usize>,
    pub bias: Option<usize>,
    pub output: usize,
    /// Every input in the model's order, constants included (`NO_TENSOR` for a left-out one).
    pub inputs: [u16; MAX_INPUTS],
    pub n_inputs: usize,
    /// -input zero point, output zero point, and the clamp range of the fused activation.
    pub input_offset: i32,
    pub output_offset: i32,
    pub act_min: i32,
    pub act_max: i32,
    /// Output channels with their own requantization (conv, depthwise, fully connected).
    pub channels: usize,
    /// Where this operator's prepared parameters (per-channel requantization, lookup table)
    /// live in the arena.
    pub params_offset: usize,
}

impl Op {
    /// Input `i` (`None` when left out or beyond the operator's inputs).
    pub fn input_at(&self, i: usize) -> Option<usize> {
        self.inputs[..self.n_inputs]
            .get(i)
            .filter(|&&t| t != NO_TENSOR)
            .map(|&t| usize::from(t))
    }

    /// Bytes of prepared parameters this operator keeps in the arena.
    pub fn param_bytes(&self) -> usize {
        let lut = if self.kind.has_lut() {
            crate::graph::LUT_BYTES
        } else if matches!(self.kind, OpKind::Softmax { .. }) {
            crate::kernels::softmax::TABLE_BYTES
        } else if matches!(self.kind, OpKind::Dequantize { .. }) {
            crate::kernels::quantize::DEQUANTIZE_TABLE_BYTES
        } else {
            0
        };
        self.channels * crate::graph::CHANNEL_PARAM_BYTES + lut
    }
}

/// What an operator's parser reads: its options and the model's tensors.
pub(crate) struct Ctx<'t, 'a> {
    pub tensors: &'t [Tensor<'a>],
    opts_type: u8,
    opts: Option<Table<'a>>,
}

impl<'a> Ctx<'_, 'a> {
    pub fn tensor(&self, t: usize) -> Result<&Tensor<'a>, Error> {
        self.tensors.get(t).ok_or(Error::OutOfBounds)
    }

    /// The operator's options table, which must be of union type `tag`.
    pub fn options(&self, tag: u8) -> Result<Table<'a>, Error> {
        match self.opts {
            Some(o) if self.opts_type == tag => Ok(o),
            _ => Err(Error::Malformed),
        }
    }
}

pub(crate) fn idx(v: i32, len: usize) -> Result<usize, Error> {
    usize::try_from(v)
        .ok()
        .filter(|&i| i < len)
        .ok_or(Error::OutOfBounds)
}

pub(crate) fn positive(v: i32) -> Result<usize, Error> {
    usize::try_from(v)
        .ok()
        .filter(|&n| n > 0)
        .ok_or(Error::Malformed)
}

pub(crate) fn fused(code: u8) -> Result<Activation, Error> {
    match code {
        act_code::NONE => Ok(Activation::None),
        act_code::RELU => Ok(Activation::Relu),
        act_code::RELU6 => Ok(Activation::Relu6),
        _ => Err(Error::UnsupportedActivation),
    }
}

/// An int8 tensor computed at run time (not a constant).
pub(crate) fn int8_activation(t: &Tensor<'_>) -> Result<(), Error> {
    if t.ty != ElemType::Int8 || t.data.is_some() {
        return Err(Error::UnsupportedType);
    }
    Ok(())
}

/// The input and output of an operator that reads and writes computed int8 tensors.
pub(crate) fn int8_in_out<'t, 'a>(
    cx: &'t Ctx<'_, 'a>,
    op: &Op,
) -> Result<(&'t Tensor<'a>, &'t Tensor<'a>), Error> {
    let (tin, tout) = (cx.tensor(op.input)?, cx.tensor(op.output)?);
    int8_activation(tin)?;
    int8_activation(tout)?;
    Ok((tin, tout))
}

pub(crate) fn same_quantization(a: &Tensor<'_>, b: &Tensor<'_>) -> Result<(), Error> {
    if a.scale != b.scale || a.zero_point != b.zero_point {
        return Err(Error::UnsupportedQuantization);
    }
    Ok(())
}

/// The builtin operator code of operator table `t` (-1 for a custom operator).
pub(crate) fn builtin_code(t: &Table<'_>, codes: &Vector<'_>) -> Result<i32, Error> {
    let code = codes.table(
        usize::try_from(t.u32(field::operator::OPCODE_INDEX, 0)?)
            .map_err(|_| Error::OutOfBounds)?,
    )?;
    if code.vector(field::operator_code::CUSTOM_CODE, 1)?.is_some() {
        return Ok(-1);
    }
    Ok(
        i32::from(code.i8(field::operator_code::DEPRECATED_BUILTIN_CODE, 0)?)
            .max(code.i32(field::operator_code::BUILTIN_CODE, 0)?),
    )
}

/// Parses and checks operator `t` of builtin code `builtin` against the model's tensors.
pub(crate) fn parse(t: &Table<'_>, builtin: i32, tensors: &[Tensor<'_>]) -> Result<Op, Error> {
    let ins = t
        .vector(field::operator::INPUTS, 4)?
        .ok_or(Error::Malformed)?;
    let outs = t
        .vector(field::operator::OUTPUTS, 4)?
        .ok_or(Error::Malformed)?;
    if outs.len() != 1 || ins.is_empty() {
        return Err(Error::Malformed);
    }
    if ins.len() > MAX_INPUTS {
        return Err(Error::TooManyInputs { max: MAX_INPUTS });
    }
    let mut inputs = [NO_TENSOR; MAX_INPUTS];
    for (i, slot) in inputs.iter_mut().enumerate().take(ins.len()) {
        *slot = match ins.i32(i)? {
            -1 => NO_TENSOR,
            v => u16::try_from(idx(v, tensors.len())?).map_err(|_| Error::OutOfBounds)?,
        };
    }
    let input = match inputs[0] {
        NO_TENSOR => return Err(Error::Malformed),
        t => usize::from(t),
    };
    let output = idx(outs.i32(0)?, tensors.len())?;
    let tin = tensors.get(input).ok_or(Error::OutOfBounds)?;
    let tout = tensors.get(output).ok_or(Error::OutOfBounds)?;
    if tout.data.is_some() {
        return Err(Error::UnsupportedType);
    }
    let cx = Ctx {
        tensors,
        opts_type: t.u8(field::operator::BUILTIN_OPTIONS_TYPE, 0)?,
        opts: t.table(field::operator::BUILTIN_OPTIONS)?,
    };
    let mut op = Op {
        kind: OpKind::Reshape,
        input,
        weights: None,
        bias: None,
        output,
        inputs,
        n_inputs: ins.len(),
        input_offset: -tin.zero_point,
        output_offset: tout.zero_point,
        act_min: -128,
        act_max: 127,
        channels: 0,
        params_offset: 0,
    };
    let act = match builtin {
        op::CONV_2D => conv::conv(&cx, &mut op, false)?,
        op::DEPTHWISE_CONV_2D => conv::conv(&cx, &mut op, true)?,
        op::FULLY_CONNECTED => conv::fully_connected(&cx, &mut op)?,
        op::AVERAGE_POOL_2D => pool::pool(&cx, &mut op, false)?,
        op::MAX_POOL_2D => pool::pool(&cx, &mut op, true)?,
        op::SOFTMAX => softmax::softmax(&cx, &mut op)?,
        op::ADD => elementwise::add_sub(&cx, &mut op, false)?,
        op::SUB => elementwise::add_sub(&cx, &mut op, true)?,
        op::MUL => elementwise::mul(&cx, &mut op)?,
        op::QUANTIZE => quantize::quantize(&cx, &mut op)?,
        op::DEQUANTIZE => quantize::dequantize(&cx, &mut op)?,
        op::RESHAPE => shape::reshape(&cx, &mut op)?,
        op::PAD => shape::pad(&cx, &mut op)?,
        op::CONCATENATION => shape::concatenation(&cx, &mut op)?,
        op::STRIDED_SLICE => shape::strided_slice(&cx, &mut op)?,
        op::MEAN => reduce::mean(&cx, &mut op)?,
        op::LOGISTIC => activation::lut(&cx, &mut op, false)?,
        op::TANH => activation::lut(&cx, &mut op, true)?,
        op::HARD_SWISH => activation::hard_swish(&cx, &mut op)?,
        op::RELU => activation::relu(&cx, &mut op, false)?,
        op::RELU6 => activation::relu(&cx, &mut op, true)?,
        op::LEAKY_RELU => activation::leaky_relu(&cx, &mut op)?,
        code => return Err(Error::UnsupportedOperator { code }),
    };
    if let Some(act) = act {
        (op.act_min, op.act_max) = crate::quant::activation_range(act, tout.scale, tout.zero_point);
    }
    Ok(op)
}
