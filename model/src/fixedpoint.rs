//! The part of gemmlowp's fixed-point library that TFLite's int8 softmax uses, bit for bit.
//!
//! Values are raw `i32` with an implied number of integer bits, noted in each function.

use crate::quant::{rounding_divide_by_pot, srdhm};

/// Multiply by 2^exponent with saturation (left) or rounding (right).
fn saturating_rounding_multiply_by_pot(x: i32, exponent: i32) -> i32 {
    if exponent > 0 {
        let threshold = (1i32 << (31 - exponent)) - 1;
        if x > threshold {
            i32::MAX
        } else if x < -threshold {
            i32::MIN
        } else {
            x << exponent
        }
    } else if exponent < 0 {
        rounding_divide_by_pot(x, -exponent)
    } else {
        x
    }
}

/// Q0.31 in, Q0.31 out: exp(a) for a in [-1/4, 0).
fn exp_on_interval_between_negative_one_quarter_and_0_excl(a: i32) -> i32 {
    const CONSTANT_TERM: i32 = 1_895_147_668; // exp(-1/8)
    const CONSTANT_1_OVER_3: i32 = 715_827_883;
    let x = a.wrapping_add(1 << 28); // a + 1/8
    let x2 = srdhm(x, x);
    let x3 = srdhm(x2, x);
    let x4 = srdhm(x2, x2);
    let x4_over_4 = saturating_rounding_multiply_by_pot(x4, -2);
    let poly = saturating_rounding_multiply_by_pot(
        srdhm(x4_over_4.wrapping_add(x3), CONSTANT_1_OVER_3).wrapping_add(x2),
        -1,
    );
    CONSTANT_TERM.wrapping_add(srdhm(CONSTANT_TERM, x.wrapping_add(poly)))
}

/// `a` in Q5.26, a <= 0; result exp(a) in Q0.31.
pub fn exp_on_negative_values(a: i32) -> i32 {
    const INTEGER_BITS: i32 = 5;
    const FRACTIONAL_BITS: i32 = 31 - INTEGER_BITS;
    let one_quarter = 1i32 << (FRACTIONAL_BITS - 2);
    let mask = one_quarter - 1;
    let a_mod_quarter_minus_one_quarter = (a & mask).wrapping_sub(one_quarter);
    let mut result = exp_on_interval_between_negative_one_quarter_and_0_excl(
        saturating_rounding_multiply_by_pot(a_mod_quarter_minus_one_quarter, INTEGER_BITS),
    );
    let remainder = a_mod_quarter_minus_one_quarter.wrapping_sub(a);
    // exp(-2^k) for k = -2..=4, in Q0.31: the barrel shifter.
    const BARREL: [(i32, i32); 7] = [
        (-2, 1_672_461_947),
        (-1, 1_302_514_674),
        (0, 790_015_084),
        (1, 290_630_308),
        (2, 39_332_535),
        (3, 720_401),
        (4, 242),
    ];
    for (exponent, multiplier) in BARREL {
        if INTEGER_BITS > exponent {
            let shift = FRACTIONAL_BITS + exponent;
            if remainder & (1 << shift) != 0 {
                result = srdhm(result, multiplier);
            }
        }
    }
    if a == 0 { i32::MAX } else { result }
}

/// Q0.31 in [0, 1) to 1 / (1 + x) in Q0.31 (Newton-Raphson, three rounds).
fn one_over_one_plus_x_for_x_in_0_1(a: i32) -> i32 {
    let half_denominator = {
        let sum = i64::from(a) + i64::from(i32::MAX);
        let sign = if sum >= 0 { 1 } else { -1 };
        ((sum + sign) / 2) as i32
    };
    const C48_OVER_17: i32 = 1_515_870_810; // Q2.29
    const CNEG32_OVER_17: i32 = -1_010_580_540; // Q2.29
    const ONE_Q2: i32 = 1 << 29;
    let mut x = C48_OVER_17.wrapping_add(srdhm(half_denominator, CNEG32_OVER_17));
    for _ in 0..3 {
        let half_denominator_times_x = srdhm(half_denominator, x);
        let one_minus = ONE_Q2.wrapping_sub(half_denominator_times_x);
        // Q2 * Q2 = Q4, rescaled to Q2.
        x = x.wrapping_add(saturating_rounding_multiply_by_pot(srdhm(x, one_minus), 2));
    }
    // x / 2 as Q1 (same raw), then to Q0.
    saturating_rounding_multiply_by_pot(x, 1)
}

/// TFLite's `GetReciprocal`: 1 / x for `x` with `integer_bits` integer bits; returns the
/// Q0.31 scale and the number of bits above one.
pub fn reciprocal(x: i32, integer_bits: i32) -> (i32, i32) {
    let headroom_plus_one = (x as u32).leading_zeros() as i32;
    let num_bits_over_unit = integer_bits - headroom_plus_one;
    let shifted_sum_minus_one = ((x as u32) << headroom_plus_one).wrapping_sub(1 << 31) as i32;
    (
        one_over_one_plus_x_for_x_in_0_1(shifted_sum_minus_one),
        num_bits_over_unit,
    )
}

/// Q0.31 to Q12.19, as `Rescale<12>` does.
pub fn rescale_q0_to_q12(x: i32) -> i32 {
    saturating_rounding_multiply_by_pot(x, -12)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_close_to_exp() {
        for k in 0..200 {
            let a = -(k as f64) * 0.07; // down to -14
            let raw = (a * f64::from(1 << 26)) as i32;
            let got = f64::from(exp_on_negative_values(raw)) / 2_147_483_648.0;
            let want = (f64::from(raw) / f64::from(1 << 26)).exp();
            assert!((got - want).abs() < 1e-6, "exp({a}) = {got}, want {want}");
        }
        assert_eq!(exp_on_negative_values(0), i32::MAX);
    }

    #[test]
    fn reciprocal_is_close_to_one_over_x() {
        for v in [1.0f64, 1.5, 2.0, 3.7, 10.0, 100.25, 2000.0] {
            let raw = (v * f64::from(1 << 19)) as i32;
            let (scale, bits) = reciprocal(raw, 12);
            let got = f64::from(scale) / 2_147_483_648.0 / f64::from(1u32 << bits);
            assert!((got - 1.0 / v).abs() < 1e-6 / v, "1/{v} = {got}");
        }
    }
}
