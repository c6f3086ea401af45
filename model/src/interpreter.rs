//! Runs a checked model in a caller-provided arena: no allocator, no I/O, no clock.

use crate::Error;
use crate::graph::{CHANNEL_PARAM_BYTES, ElemType, MAX_INPUTS, Model, Op, OpKind, Tensor};
use crate::kernels;
use crate::quant::quantize_multiplier;

/// An interpreter over a model and the static arena it runs in.
#[derive(Debug)]
pub struct Interpreter<'m, 'a> {
    model: &'m Model<'m>,
    arena: &'a mut [u8],
    kernels: kernels::Kernels,
}

impl<'m, 'a> Interpreter<'m, 'a> {
    /// Checks the arena size and computes each operator's per-channel requantization
    /// (in f64, once, as TFLite's Prepare does).
    pub fn new(model: &'m Model<'m>, arena: &'a mut [u8]) -> Result<Self, Error> {
        if arena.len() < model.arena_size {
            return Err(Error::ArenaTooSmall {
                needed: model.arena_size,
            });
        }
        for op in &model.ops {
            if op.kind.has_lut() {
                let tin = model.tensors.get(op.input).ok_or(Error::OutOfBounds)?;
                let tout = model.tensors.get(op.output).ok_or(Error::OutOfBounds)?;
                let lut = arena
                    .get_mut(op.params_offset..op.params_offset + op.param_bytes())
                    .ok_or(Error::OutOfBounds)?;
                kernels::activation::build_lut(op.kind == OpKind::Tanh, tin, tout, lut)?;
                continue;
            }
            if let OpKind::Softmax {
                input_multiplier,
                input_left_shift,
                diff_min,
                ..
            } = op.kind
            {
                let table = arena
                    .get_mut(op.params_offset..op.params_offset + op.param_bytes())
                    .ok_or(Error::OutOfBounds)?;
                kernels::softmax::build_table(input_multiplier, input_left_shift, diff_min, table)?;
                continue;
            }
            if let OpKind::Dequantize { scale } = op.kind {
                let table = arena
                    .get_mut(op.params_offset..op.params_offset + op.param_bytes())
                    .ok_or(Error::OutOfBounds)?;
                kernels::quantize::build_dequantize_table(op, scale, table)?;
                continue;
            }
            let (Some(w), true) = (op.weights, op.channels > 0) else {
                continue;
            };
            let tin = model.tensors.get(op.input).ok_or(Error::OutOfBounds)?;
            let tw = model.tensors.get(w).ok_or(Error::OutOfBounds)?;
            let tout = model.tensors.get(op.output).ok_or(Error::OutOfBounds)?;
            let per_tensor_fc =
                matches!(op.kind, OpKind::FullyConnected { .. }) && tw.channel_scales.is_empty();
            let weights = tw.data.unwrap_or(&[]);
            let bias = op
                .bias
                .and_then(|b| model.tensors.get(b))
                .and_then(|t| t.data);
            for c in 0..op.channels {
                let real = if per_tensor_fc {
                    // TFLite's GetQuantizedConvolutionMultipler multiplies the scales in f32.
                    f64::from(tin.scale * tw.scale) / f64::from(tout.scale)
                } else {
                    f64::from(tin.scale) * f64::from(tw.channel_scale(c)) / f64::from(tout.scale)
                };
                let (m, s) = quantize_multiplier(real);
                let at = op.params_offset + c * CHANNEL_PARAM_BYTES;
                let slot = arena
                    .get_mut(at..at + CHANNEL_PARAM_BYTES)
                    .ok_or(Error::OutOfBounds)?;
                kernels::dsp::write_record(
                    op,
                    weights,
                    kernels::bias_at(bias, c),
                    c,
                    (m, s),
                    slot,
                )?;
            }
        }
        Ok(Interpreter {
            model,
            arena,
            kernels: kernels::Kernels::default(),
        })
    }

    /// Chooses the kernels (the DSP ones on Cortex-M4, the portable ones elsewhere, by
    /// default): a test runs both on one model and compares every operator's output.
    pub fn with_kernels(mut self, kernels: kernels::Kernels) -> Self {
        self.kernels = kernels;
        self
    }

    pub fn model(&self) -> &Model<'m> {
        self.model
    }

    fn span(&self, tensor: usize) -> Result<(usize, usize), Error> {
        let t = self.model.tensors.get(tensor).ok_or(Error::OutOfBounds)?;
        let at = *self.model.offsets.get(tensor).ok_or(Error::OutOfBounds)?;
        Ok((at, at + t.len * t.ty.size()))
    }

    /// The input tensor's type: int8, or float32 when the model quantizes its input itself.
    pub fn input_type(&self) -> Result<ElemType, Error> {
        Ok(self
            .model
            .tensors
            .get(self.model.input)
            .ok_or(Error::OutOfBounds)?
            .ty)
    }

    /// The input tensor's bytes (int8 values stored as `u8`; float32 little-endian).
    pub fn input_mut(&mut self) -> Result<&mut [u8], Error> {
        let (a, b) = self.span(self.model.input)?;
        self.arena.get_mut(a..b).ok_or(Error::OutOfBounds)
    }

    /// Copies `input` (int8 values as bytes; float32 as little-endian bytes) into the input tensor.
    pub fn set_input(&mut self, input: &[u8]) -> Result<(), Error> {
        let dst = self.input_mut()?;
        if dst.len() != input.len() {
            return Err(Error::InputLength);
        }
        dst.copy_from_slice(input);
        Ok(())
    }

    /// The output tensor's bytes after `invoke`.
    pub fn output(&self) -> Result<&[u8], Error> {
        let (a, b) = self.span(self.model.output)?;
        self.arena.get(a..b).ok_or(Error::OutOfBounds)
    }

    /// Index of the largest output (the predicted class); the first one on ties.
    pub fn argmax(&self) -> Result<usize, Error> {
        let out = self.output()?;
        let float =
            self.model.tensors.get(self.model.output).map(|t| t.ty) == Some(ElemType::Float32);
        let value = |i: usize| -> f32 {
            if float {
                out.get(i * 4..i * 4 + 4)
                    .map_or(f32::MIN, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            } else {
                out.get(i).map_or(f32::MIN, |&v| f32::from(v as i8))
            }
        };
        let n = if float { out.len() / 4 } else { out.len() };
        let mut best = 0;
        for i in 1..n {
            if value(i) > value(best) {
                best = i;
            }
        }
        Ok(best)
    }

    pub fn invoke(&mut self) -> Result<(), Error> {
        self.invoke_observed(|_, _, _| {})
    }

    /// Runs every operator, calling `after(index, op, output bytes)` when each one is done
    /// (for profiling and for comparing intermediate tensors with a reference).
    pub fn invoke_observed(
        &mut self,
        mut after: impl FnMut(usize, &Op, &[u8]),
    ) -> Result<(), Error> {
        let model = self.model;
        for (i, op) in model.ops.iter().enumerate() {
            self.run(op)?;
            let (a, b) = self.span(op.output)?;
            after(i, op, self.arena.get(a..b).ok_or(Error::OutOfBounds)?);
        }
        Ok(())
    }

    fn run(&mut self, op: &Op) -> Result<(), Error> {
        let model = self.model;
        let tensors = &model.tensors[..];
        let (oa, ob) = self.span(op.output)?;
        let pa = op.params_offset;
        let pb = pa + op.param_bytes();
        // The planner never overlaps an operator's output with anything it reads while it
        // runs; split the arena around the output so inputs can be borrowed beside it, and the
        // parameters (after every activation) read-only.
        let (acts, params) = self.arena.split_at_mut(pa.min(self.arena.len()));
        let (params, scratch) = params
            .split_at_mut_checked(model.scratch_offset.saturating_sub(pa))
            .ok_or(Error::OutOfBounds)?;
        let scratch = &mut kernels::dsp::Scratch::new(scratch);
        let params: &[u8] = params.get(..pb - pa).ok_or(Error::OutOfBounds)?;
        let (lo, rest) = acts.split_at_mut_checked(oa).ok_or(Error::OutOfBounds)?;
        let (output, hi) = rest
            .split_at_mut_checked(ob - oa)
            .ok_or(Error::OutOfBounds)?;
        let (lo, hi): (&[u8], &[u8]) = (lo, hi);
        let bytes = |t: usize| -> Result<&[u8], Error> {
            let tensor = tensors.get(t).ok_or(Error::OutOfBounds)?;
            if let Some(data) = tensor.data {
                return Ok(data);
            }
            let a = *model.offsets.get(t).ok_or(Error::OutOfBounds)?;
            let b = a + tensor.bytes();
            if b <= oa {
                lo.get(a..b).ok_or(Error::OutOfBounds)
            } else if a >= ob {
                hi.get(a - ob..b - ob).ok_or(Error::OutOfBounds)
            } else {
                Err(Error::OutOfBounds)
            }
        };
        let tensor = |t: usize| tensors.get(t).ok_or(Error::OutOfBounds);
        let input = bytes(op.input)?;
        let second = |i: usize| -> Result<(&Tensor<'_>, &[u8]), Error> {
            let t = op.input_at(i).ok_or(Error::Malformed)?;
            Ok((tensor(t)?, bytes(t)?))
        };
        let weights = op.weights.map(bytes).transpose()?.unwrap_or(&[]);
        let bias = op.bias.map(bytes).transpose()?;
        let tout = tensor(op.output)?;
        let dsp = self.kernels == kernels::Kernels::Dsp;
        match op.kind {
            OpKind::Conv2d(g) => {
                if dsp && kernels::dsp::conv2d(&g, op, input, weights, params, output, scratch)? {
                    return Ok(());
                }
                kernels::conv::conv2d(&g, op, input, weights, bias, params, output)
            }
            OpKind::DepthwiseConv2d(g) => {
                if dsp
                    && kernels::dsp::depthwise_conv2d(
                        &g, op, input, weights, params, output, scratch,
                    )?
                {
                    return Ok(());
                }
                kernels::conv::depthwise_conv2d(&g, op, input, weights, bias, params, output)
            }
            OpKind::FullyConnected {
                batch,
                depth,
                units,
            } => {
                if dsp
                    && kernels::dsp::fully_connected(
                        op, batch, depth, units, input, weights, params, output, scratch,
                    )?
                {
                    return Ok(());
                }
                kernels::fully_connected::fully_connected(
                    op, batch, depth, units, input, weights, bias, params, output,
                )
            }
            OpKind::AveragePool2d(g) => kernels::pool::pool(&g, op, true, input, output),
            OpKind::MaxPool2d(g) => {
                if dsp && kernels::dsp::pool::max_pool(&g, op, input, output)? {
                    return Ok(());
                }
                kernels::pool::pool(&g, op, false, input, output)
            }
            OpKind::Reshape => {
                output.copy_from_slice(input);
                Ok(())
            }
            OpKind::Softmax { rows, depth, .. } => {
                kernels::softmax::softmax(rows, depth, params, input, output)
            }
            OpKind::Add(p) | OpKind::Sub(p) => kernels::elementwise::add_sub(
                op,
                &p,
                matches!(op.kind, OpKind::Sub(_)),
                (tensor(op.input)?, input),
                second(1)?,
                (tout, output),
            ),
            OpKind::Mul {
                input2_offset,
                multiplier,
                shift,
            } => kernels::elementwise::mul(
                op,
                input2_offset,
                multiplier,
                shift,
                (tensor(op.input)?, input),
                second(1)?,
                (tout, output),
            ),
            OpKind::Quantize { scale } => kernels::quantize::quantize(op, scale, input, output),
            OpKind::Requantize { multiplier, shift } => {
                kernels::quantize::requantize(op, multiplier, shift, input, output)
            }
            OpKind::Dequantize { .. } => kernels::quantize::dequantize(params, input, output),
            OpKind::Pad => kernels::shape::pad(op, tensor(op.input)?, second(1)?.0, input, output),
            OpKind::Mean {
                h,
                w,
                c,
                multiplier,
                shift,
            } => kernels::reduce::mean(op, (h, w, c), (multiplier, shift), input, output),
            OpKind::Concatenation { axis } => {
                let mut parts = [(tout, &[][..]); MAX_INPUTS];
                for (i, part) in parts.iter_mut().enumerate().take(op.n_inputs) {
                    *part = second(i)?;
                }
                kernels::shape::concatenation(axis, &parts[..op.n_inputs], tout, output)
            }
            OpKind::StridedSlice { .. } => {
                kernels::shape::strided_slice(op, tensors, input, output)
            }
            OpKind::Logistic | OpKind::Tanh => kernels::activation::lookup(params, input, output),
            OpKind::HardSwish(p) => {
                kernels::activation::hard_swish(op, &p, input, output);
                Ok(())
            }
            OpKind::Relu { multiplier, shift } | OpKind::Relu6 { multiplier, shift } => {
                kernels::activation::relu(op, multiplier, shift, input, output);
                Ok(())
            }
            OpKind::LeakyRelu {
                alpha_multiplier,
                alpha_shift,
                identity_multiplier,
                identity_shift,
            } => {
                kernels::activation::leaky_relu(
                    op,
                    (alpha_multiplier, alpha_shift),
                    (identity_multiplier, identity_shift),
                    input,
                    output,
                );
                Ok(())
            }
        }
    }
}
