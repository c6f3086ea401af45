//! int8 operator kernels, arithmetic as TensorFlow Lite's reference kernels.
//!
//! Shapes were checked when the model was parsed; kernels still take every slice with `get`
//! outside their inner loops, so a planner bug becomes an error, never an out-of-bounds read.

pub mod activation;
pub mod conv;
pub mod dsp;
pub mod elementwise;
pub mod fully_connected;
pub mod pool;
pub mod quantize;
pub mod reduce;
pub mod shape;
pub mod softmax;

use crate::Error;

/// Which kernels run CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED; both give the same bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernels {
    /// Plain Rust, one multiply-accumulate at a time (`conv`, `fully_connected`).
    Portable,
    /// SIMD over 16-bit lanes (`dsp`): Cortex-M4 DSP instructions, emulated elsewhere.
    Dsp,
}

impl Default for Kernels {
    /// The DSP kernels where the DSP instructions exist, the portable ones elsewhere.
    fn default() -> Self {
        if cfg!(all(target_arch = "arm", target_feature = "dsp")) {
            Kernels::Dsp
        } else {
            Kernels::Portable
        }
    }
}

/// Requantization of one output channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelQuant {
    pub multiplier: i32,
    pub shift: i32,
}

/// Reads channel `c`'s (multiplier, shift) from the arena's parameter area.
pub fn channel_quant(params: &[u8], c: usize) -> Result<ChannelQuant, Error> {
    let at = c * crate::graph::CHANNEL_PARAM_BYTES;
    let b = params.get(at..at + 8).ok_or(Error::OutOfBounds)?;
    Ok(ChannelQuant {
        multiplier: i32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
        shift: i32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
    })
}

/// Bias of channel `c` (little-endian int32 in the model), 0 when the operator has none.
#[inline]
pub fn bias_at(bias: Option<&[u8]>, c: usize) -> i32 {
    bias.and_then(|b| b.get(c * 4..c * 4 + 4))
        .map_or(0, |b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// The common tail of conv, depthwise and fully connected: bias, requantize, offset, clamp.
#[inline(always)]
pub fn requantize(acc: i32, q: ChannelQuant, output_offset: i32, act_min: i32, act_max: i32) -> u8 {
    let v = crate::quant::multiply_by_quantized_multiplier(acc, q.multiplier, q.shift)
        .saturating_add(output_offset);
    v.clamp(act_min, act_max) as i8 as u8
}

/// `requantize` with single rounding, as TFLite's int8 FULLY_CONNECTED.
#[inline(always)]
pub fn requantize_single(
    acc: i32,
    q: ChannelQuant,
    output_offset: i32,
    act_min: i32,
    act_max: i32,
) -> u8 {
    let v = crate::quant::multiply_by_quantized_multiplier_single(acc, q.multiplier, q.shift)
        .saturating_add(output_offset);
    v.clamp(act_min, act_max) as i8 as u8
}

/// Sum over a row of `(weight) * (input + input_offset)`: the multiply-accumulate inner loop.
#[inline(always)]
pub fn dot(weights: &[u8], inputs: &[u8], input_offset: i32) -> i32 {
    weights.iter().zip(inputs).fold(0i32, |acc, (&w, &x)| {
        acc.wrapping_add(i32::from(w as i8) * (i32::from(x as i8) + input_offset))
    })
}
