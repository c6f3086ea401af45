//! A parsed and fully checked model: tensors, operators with their geometry, and the arena plan.
//!
//! Everything that can be wrong with a model is found here (tensors) and in `ops` (operators),
//! once: afterwards the kernels only see shapes and slices that fit together.

use crate::Error;
use crate::flatbuf::{Buf, Table, Vector};
use crate::schema::{field, tensor_type};
use core::fmt;
use heapless::Vec;

pub use crate::ops::{Activation, ConvGeom, MAX_INPUTS, Op, OpKind, PoolGeom};

/// Most tensors a model may have. The tables are on the caller's stack (no allocator): each
/// tensor costs `size_of::<Tensor>()` and an arena offset; `Model` states the total.
pub const MAX_TENSORS: usize = 128;
/// Most operators a model may have; each costs `size_of::<Op>()`.
pub const MAX_OPS: usize = 64;
/// The model-runtime ABI this runtime provides. A model's manifest names the ABI it needs
/// (`Model::required_abi`); a device runs it when its firmware provides that ABI or a later one.
/// 1: the seven operators of the first runtime, int8 in and out. 2: the operators added since
/// (`OpKind::abi`) and float32 input or output.
pub const RUNTIME_ABI: u32 = 2;

/// Most dimensions of a tensor.
pub const MAX_DIMS: usize = 4;
/// Arena offsets are aligned to this.
const ALIGN: usize = 4;
/// Bytes of per-channel data per output channel: requantization multiplier and shift, the
/// bias with the input offset folded in, and the DSP kernels' short requantization path
/// (`kernels::dsp::write_record`), native-endian words.
pub const CHANNEL_PARAM_BYTES: usize = 16;
/// Bytes of a lookup table (LOGISTIC, TANH) among an operator's parameters.
pub const LUT_BYTES: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElemType {
    Int8,
    Int32,
    /// Only at the graph's boundary: the input of QUANTIZE, the output of DEQUANTIZE.
    Float32,
}

impl ElemType {
    pub fn size(self) -> usize {
        match self {
            ElemType::Int8 => 1,
            ElemType::Int32 | ElemType::Float32 => 4,
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
    /// Dimension `i` (0 beyond the rank).
    pub fn dim(&self, i: usize) -> usize {
        if i < self.rank {
            self.dims.get(i).copied().unwrap_or(0)
        } else {
            0
        }
    }

    /// The shape of a rank-4 tensor.
    pub fn shape4(&self) -> Result<[usize; 4], Error> {
        if self.rank != 4 {
            return Err(Error::ShapeMismatch);
        }
        Ok(self.dims)
    }

    /// The shape extended to four dimensions with leading ones, as TFLite broadcasts.
    pub fn dims4(&self) -> [usize; MAX_DIMS] {
        let mut out = [1; MAX_DIMS];
        let skip = MAX_DIMS - self.rank;
        for (i, d) in out.iter_mut().skip(skip).enumerate() {
            *d = self.dims[i];
        }
        out
    }

    /// Bytes of the tensor's values.
    pub fn bytes(&self) -> usize {
        self.len * self.ty.size()
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

/// A checked model and its memory plan. Borrows the model bytes (zero copy).
#[derive(Debug, Clone)]
pub struct Model<'a> {
    pub tensors: Vec<Tensor<'a>, MAX_TENSORS>,
    pub ops: Vec<Op, MAX_OPS>,
    pub input: usize,
    pub output: usize,
    /// Arena offset of every activation tensor (unused for constants).
    pub offsets: [usize; MAX_TENSORS],
    /// Where the DSP kernels' scratch starts (after the parameters): the largest any
    /// operator takes (`kernels::dsp::scratch_bytes`), shared since operators run in turn.
    pub scratch_offset: usize,
    /// Bytes of arena the model needs: activations, per-channel parameters, scratch.
    pub arena_size: usize,
}

fn align(n: usize) -> Result<usize, Error> {
    n.checked_add(ALIGN - 1)
        .map(|n| n / ALIGN * ALIGN)
        .ok_or(Error::TooLarge)
}

/// Why a model was refused, and at which operator when one was to blame (for people: the
/// device reports `error` alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub error: Error,
    /// Index and builtin code of the operator that was refused.
    pub operator: Option<(usize, i32)>,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.operator {
            Some((i, code)) => {
                let name = crate::schema::builtin_name(code).unwrap_or("custom");
                match self.error {
                    Error::UnsupportedOperator { .. } => write!(f, "operator {i}: {}", self.error),
                    e => write!(f, "operator {i} ({name}): {e}"),
                }
            }
            None => write!(f, "{}", self.error),
        }
    }
}

impl From<Error> for Refusal {
    fn from(error: Error) -> Self {
        Refusal {
            error,
            operator: None,
        }
    }
}

impl<'a> Model<'a> {
    /// Parses and checks a TensorFlow Lite flatbuffer, and plans its arena.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        Self::parse_explained(bytes).map_err(|r| r.error)
    }

    /// `parse`, saying which operator was to blame when one was.
    pub fn parse_explained(bytes: &'a [u8]) -> Result<Self, Refusal> {
        let buf = Buf(bytes);
        if bytes.get(4..8).ok_or(Error::OutOfBounds)? != b"TFL3" {
            return Err(Error::BadIdentifier.into());
        }
        let root = buf.root()?;
        if root.u32(field::model::VERSION, 0)? != 3 {
            return Err(Error::UnsupportedVersion.into());
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
            return Err(Error::UnsupportedSubgraphs.into());
        }
        let graph = subgraphs.table(0)?;

        let tensor_tables = graph
            .vector(field::subgraph::TENSORS, 4)?
            .ok_or(Error::Malformed)?;
        if tensor_tables.len() > MAX_TENSORS {
            return Err(Error::TooManyTensors { max: MAX_TENSORS }.into());
        }
        let mut tensors = Vec::new();
        for i in 0..tensor_tables.len() {
            let t = parse_tensor(&tensor_tables.table(i)?, &buffers)?;
            tensors
                .push(t)
                .map_err(|_| Error::TooManyTensors { max: MAX_TENSORS })?;
        }
        let single = |index: usize| -> Result<usize, Error> {
            let v = graph.vector(index, 4)?.ok_or(Error::Malformed)?;
            if v.len() != 1 {
                return Err(Error::UnsupportedSubgraphs);
            }
            crate::ops::idx(v.i32(0)?, tensors.len())
        };
        let input = single(field::subgraph::INPUTS)?;
        let output = single(field::subgraph::OUTPUTS)?;
        for t in [input, output] {
            let t = tensors.get(t).ok_or(Error::OutOfBounds)?;
            if t.ty == ElemType::Int32 || t.data.is_some() {
                return Err(Error::UnsupportedType.into());
            }
        }

        let op_tables = graph
            .vector(field::subgraph::OPERATORS, 4)?
            .ok_or(Error::Malformed)?;
        if op_tables.len() > MAX_OPS {
            return Err(Error::TooManyOps { max: MAX_OPS }.into());
        }
        let mut ops = Vec::new();
        for i in 0..op_tables.len() {
            let table = op_tables.table(i)?;
            let code = crate::ops::builtin_code(&table, &codes)?;
            let op = crate::ops::parse(&table, code, &tensors).map_err(|error| Refusal {
                error,
                operator: Some((i, code)),
            })?;
            ops.push(op)
                .map_err(|_| Error::TooManyOps { max: MAX_OPS })?;
        }
        let mut model = Model {
            tensors,
            ops,
            input,
            output,
            offsets: [0; MAX_TENSORS],
            scratch_offset: 0,
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
        // Every input an operator reads is live until then: a tensor read by two operators (a
        // residual connection) stays until the later one.
        for (i, op) in self.ops.iter().enumerate() {
            for k in 0..op.n_inputs {
                if let Some(t) = op.input_at(k) {
                    if self.tensors.get(t).is_some_and(|t| t.data.is_none()) {
                        touch(t, i);
                    }
                }
            }
            touch(op.output, i);
        }
        let mut order: Vec<usize, MAX_TENSORS> = (0..self.tensors.len())
            .filter(|&t| first[t] != UNUSED)
            .collect();
        let size = |t: usize| self.tensors.get(t).map_or(0, |x| x.bytes());
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
            end = align(end.checked_add(op.param_bytes()).ok_or(Error::TooLarge)?)?;
        }
        self.scratch_offset = end;
        let scratch = self
            .ops
            .iter()
            .map(crate::kernels::dsp::scratch_bytes)
            .max()
            .unwrap_or(0);
        self.arena_size = align(end.checked_add(scratch).ok_or(Error::TooLarge)?)?;
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

    /// The oldest runtime ABI that runs this model: the newest any of its operators or its
    /// boundary types needs.
    pub fn required_abi(&self) -> u32 {
        let float_io = [self.input, self.output].iter().any(|&t| {
            self.tensors
                .get(t)
                .is_some_and(|t| t.ty == ElemType::Float32)
        });
        let ops = self.ops.iter().map(|op| op.kind.abi()).max().unwrap_or(1);
        ops.max(if float_io { 2 } else { 1 })
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
        tensor_type::FLOAT32 => ElemType::Float32,
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
            return Err(Error::TooManyDims { max: MAX_DIMS });
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
    // Float tensors are computed at the boundary only; float weights mean a float model.
    if ty == ElemType::Float32 && data.is_some() {
        return Err(Error::UnsupportedType);
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
