//! Integer requantization exactly as TensorFlow Lite (Micro) reference kernels do it.
//!
//! Multipliers are computed once, when an interpreter is built, in `f64` like TFLite's Prepare
//! step; inference itself is integer only.

/// `QuantizeMultiplier`: a positive real multiplier as a Q0.31 significand and a power-of-two
/// shift (positive: left). Zero and non-finite or non-positive inputs give (0, 0).
pub fn quantize_multiplier(m: f64) -> (i32, i32) {
    if m.is_nan() || m <= 0.0 || !m.is_finite() {
        return (0, 0);
    }
    let (q, mut shift) = frexp(m);
    // q in [0.5, 1): q * 2^31 in [2^30, 2^31], where adding 0.5 is exact, so this rounds half
    // away from zero like std::round.
    let mut q_fixed = (q * 2_147_483_648.0 + 0.5) as i64;
    if q_fixed == 1 << 31 {
        q_fixed /= 2;
        shift += 1;
    }
    if shift < -31 {
        return (0, 0);
    }
    // The single-rounding multiply needs shift <= 30 (TFLite clamps the same way).
    if shift > 30 {
        return (i32::MAX, 30);
    }
    (q_fixed as i32, shift)
}

/// `std::frexp` for positive finite doubles: `m = q * 2^e` with `q` in [0.5, 1).
fn frexp(m: f64) -> (f64, i32) {
    let bits = m.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32;
    if exp == 0 {
        // Subnormal: scale into the normal range first.
        let (q, e) = frexp(m * 18_014_398_509_481_984.0); // 2^54
        return (q, e - 54);
    }
    let q = f64::from_bits((bits & !(0x7ff << 52)) | (1022 << 52));
    (q, exp - 1022)
}

/// gemmlowp's `SaturatingRoundingDoublingHighMul`.
#[inline(always)]
pub fn srdhm(a: i32, b: i32) -> i32 {
    if a == b && a == i32::MIN {
        return i32::MAX;
    }
    let ab = i64::from(a) * i64::from(b);
    let nudge = if ab >= 0 { 1 << 30 } else { 1 - (1 << 30) };
    ((ab + nudge) / (1 << 31)) as i32
}

/// gemmlowp's `RoundingDivideByPOT`: divide by 2^exponent, rounding half away from zero.
#[inline(always)]
pub fn rounding_divide_by_pot(x: i32, exponent: i32) -> i32 {
    if exponent >= 31 {
        // Beyond what an i32 shift allows: the same rounding in i64 (TFLite leaves this undefined).
        let e = exponent.min(62);
        let x = i64::from(x);
        let mask = (1i64 << e) - 1;
        let threshold = (mask >> 1) + i64::from(x < 0);
        return ((x >> e) + i64::from((x & mask) > threshold)) as i32;
    }
    let mask = ((1i64 << exponent) - 1) as i32;
    let remainder = x & mask;
    let threshold = (mask >> 1) + i32::from(x < 0);
    (x >> exponent) + i32::from(remainder > threshold)
}

/// `MultiplyByQuantizedMultiplier` (TFLite's default, double-rounding variant): a rounding
/// doubling high multiply, then a rounding shift. Used by CONV_2D and DEPTHWISE_CONV_2D.
#[inline(always)]
pub fn multiply_by_quantized_multiplier(x: i32, multiplier: i32, shift: i32) -> i32 {
    let left = if shift > 0 { shift } else { 0 };
    let right = if shift > 0 { 0 } else { -shift };
    rounding_divide_by_pot(srdhm(x.wrapping_mul(1 << left), multiplier), right)
}

/// Single-rounding variant (one 64-bit product, rounded half up once), as ruy applies it:
/// TensorFlow Lite's int8 FULLY_CONNECTED and softmax input scaling agree with this one on the
/// fixtures, and differ from the double-rounding variant where it rounds twice.
#[inline(always)]
pub fn multiply_by_quantized_multiplier_single(x: i32, multiplier: i32, shift: i32) -> i32 {
    let total_shift = 31 - shift;
    let round = 1i64 << (total_shift - 1);
    ((i64::from(x) * i64::from(multiplier) + round) >> total_shift) as i32
}

/// The int8 output range after a fused activation (`CalculateActivationRangeQuantized`).
pub fn activation_range(
    activation: crate::graph::Activation,
    scale: f32,
    zero_point: i32,
) -> (i32, i32) {
    use crate::graph::Activation;
    let quantize = |f: f32| zero_point + round_f32(f / scale);
    match activation {
        Activation::None => (-128, 127),
        Activation::Relu => (quantize(0.0).max(-128), 127),
        Activation::Relu6 => (quantize(0.0).max(-128), quantize(6.0).min(127)),
    }
}

/// `std::round` on f32 (half away from zero), saturating to i32.
pub(crate) fn round_f32(f: f32) -> i32 {
    let t = f as i32; // truncates toward zero, saturates
    let frac = f - t as f32;
    if frac >= 0.5 {
        t.saturating_add(1)
    } else if frac <= -0.5 {
        t.saturating_sub(1)
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantize_multiplier_matches_tflite_examples() {
        assert_eq!(quantize_multiplier(0.5), (1 << 30, 0));
        assert_eq!(quantize_multiplier(1.0), (1 << 30, 1));
        assert_eq!(quantize_multiplier(0.25), (1 << 30, -1));
        assert_eq!(quantize_multiplier(0.0), (0, 0));
        // 0.75 = 0.75 * 2^0 -> 0.75 * 2^31
        assert_eq!(quantize_multiplier(0.75), (1_610_612_736, 0));
        // Rounds up to 2^31 and renormalises.
        assert_eq!(quantize_multiplier(0.999_999_999_9), (1 << 30, 1));
    }

    #[test]
    fn rounding_matches_gemmlowp() {
        assert_eq!(rounding_divide_by_pot(5, 1), 3);
        assert_eq!(rounding_divide_by_pot(-5, 1), -3);
        assert_eq!(rounding_divide_by_pot(4, 1), 2);
        assert_eq!(rounding_divide_by_pot(-7, 2), -2);
        assert_eq!(srdhm(i32::MIN, i32::MIN), i32::MAX);
        assert_eq!(srdhm(1 << 30, 1 << 30), 1 << 29);
        assert_eq!(multiply_by_quantized_multiplier(1000, 1 << 30, 0), 500);
        assert_eq!(multiply_by_quantized_multiplier(1000, 1 << 30, 1), 1000);
        assert_eq!(multiply_by_quantized_multiplier(-1001, 1 << 30, -1), -250);
        // The case from the `good` fixture: 4739 * 0.0068573702... = 32.497; double rounding
        // gives 33, single rounding (and TFLite's FULLY_CONNECTED) 32.
        assert_eq!(
            multiply_by_quantized_multiplier(4739, 1_884_939_586, -7),
            33
        );
        assert_eq!(
            multiply_by_quantized_multiplier_single(4739, 1_884_939_586, -7),
            32
        );
    }

    #[test]
    fn round_is_half_away_from_zero() {
        assert_eq!(round_f32(2.5), 3);
        assert_eq!(round_f32(-2.5), -3);
        assert_eq!(round_f32(2.49), 2);
        assert_eq!(round_f32(-0.4), 0);
    }
}
