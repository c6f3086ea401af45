//! Runs a checked model in a caller-provided arena: no allocator, no I/O, no clock.

use crate::Error;
use crate::graph::{CHANNEL_PARAM_BYTES, Model, Op, OpKind};
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
                let folded = kernels::dsp::folded_bias(op, weights, kernels::bias_at(bias, c), c);
                slot[..4].copy_from_slice(&m.to_ne_bytes());
                slot[4..8].copy_from_slice(&s.to_ne_bytes());
                slot[8..].copy_from_slice(&folded.to_ne_bytes());
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

    /// The input tensor's bytes (int8 values stored as `u8`).
    pub fn input_mut(&mut self) -> Result<&mut [u8], Error> {
        let (a, b) = self.span(self.model.input)?;
        self.arena.get_mut(a..b).ok_or(Error::OutOfBounds)
    }

    /// Copies `input` (int8 values as bytes) into the input tensor.
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
        let mut best = 0;
        for (i, &v) in out.iter().enumerate() {
            if (v as i8) > (out[best] as i8) {
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
        let constant = |t: Option<usize>| t.and_then(|t| model.tensors.get(t)).and_then(|t| t.data);
        let weights = constant(op.weights).unwrap_or(&[]);
        let bias = constant(op.bias);
        let (ia, ib) = self.span(op.input)?;
        let (oa, ob) = self.span(op.output)?;
        let pa = op.params_offset;
        let pb = pa + op.channels * CHANNEL_PARAM_BYTES;
        // The planner never overlaps an operator's input and output; split the arena so both
        // can be borrowed, the parameters read-only after the activations.
        let (acts, params) = self.arena.split_at_mut(pa.min(self.arena.len()));
        let params = params.get(..pb - pa).ok_or(Error::OutOfBounds)?;
        let (input, output) = if ib <= oa {
            let (lo, hi) = acts.split_at_mut_checked(oa).ok_or(Error::OutOfBounds)?;
            (lo.get(ia..ib), hi.get_mut(..ob - oa))
        } else if ob <= ia {
            let (lo, hi) = acts.split_at_mut_checked(ia).ok_or(Error::OutOfBounds)?;
            (hi.get(..ib - ia), lo.get_mut(oa..ob))
        } else {
            return Err(Error::OutOfBounds);
        };
        let (Some(input), Some(output)) = (input, output) else {
            return Err(Error::OutOfBounds);
        };
        let dsp = self.kernels == kernels::Kernels::Dsp;
        match op.kind {
            OpKind::Conv2d(g) => {
                if dsp && kernels::dsp::conv2d(&g, op, input, weights, params, output)? {
                    return Ok(());
                }
                kernels::conv::conv2d(&g, op, input, weights, bias, params, output)
            }
            OpKind::DepthwiseConv2d(g) => {
                if dsp && kernels::dsp::depthwise_conv2d(&g, op, input, weights, params, output)? {
                    return Ok(());
                }
                kernels::conv::depthwise_conv2d(&g, op, input, weights, bias, params, output)
            }
            OpKind::FullyConnected {
                batch,
                depth,
                units,
            } if dsp
                && kernels::dsp::fully_connected(
                    op, batch, depth, units, input, weights, params, output,
                )? =>
            {
                Ok(())
            }
            OpKind::FullyConnected {
                batch,
                depth,
                units,
            } => kernels::fully_connected::fully_connected(
                op, batch, depth, units, input, weights, bias, params, output,
            ),
            OpKind::AveragePool2d(g) => kernels::pool::pool(&g, op, true, input, output),
            OpKind::MaxPool2d(g) => kernels::pool::pool(&g, op, false, input, output),
            OpKind::Reshape => {
                output.copy_from_slice(input);
                Ok(())
            }
            OpKind::Softmax {
                rows,
                depth,
                input_multiplier,
                input_left_shift,
                diff_min,
            } => kernels::softmax::softmax(
                rows,
                depth,
                input_multiplier,
                input_left_shift,
                diff_min,
                input,
                output,
            ),
        }
    }
}
