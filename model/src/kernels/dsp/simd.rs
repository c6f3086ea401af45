//! The Cortex-M4 DSP instructions the DSP kernels are written over: `asm!` on Arm, exact Rust
//! emulations elsewhere, so the same kernel code runs (and is checked) on the host.
//!
//! Each one works on registers only. Accumulations wrap exactly like `wrapping_add`: SMLAD and
//! SMLAxy set the sticky Q flag on overflow but still return the wrapped sum.

/// Both even bytes of `x`, sign-extended to 16-bit lanes: `(x0, x2)` (low lane first).
#[inline(always)]
pub fn sxtb16(x: u32) -> u32 {
    #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
    {
        let r: u32;
        // SAFETY: a register-to-register instruction: no memory, stack or flags touched.
        #[allow(unsafe_code)]
        unsafe {
            core::arch::asm!("sxtb16 {r}, {x}", r = lateout(reg) r, x = in(reg) x,
                options(nomem, nostack, preserves_flags));
        }
        r
    }
    #[cfg(not(all(target_arch = "arm", target_feature = "dsp")))]
    {
        let lo = u32::from((x as u8 as i8 as i16) as u16);
        let hi = u32::from(((x >> 16) as u8 as i8 as i16) as u16);
        lo | (hi << 16)
    }
}

/// Both odd bytes of `x`, sign-extended to 16-bit lanes: `(x1, x3)` (SXTB16 with ROR #8).
#[inline(always)]
pub fn sxtb16_ror8(x: u32) -> u32 {
    #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
    {
        let r: u32;
        // SAFETY: a register-to-register instruction: no memory, stack or flags touched.
        #[allow(unsafe_code)]
        unsafe {
            core::arch::asm!("sxtb16 {r}, {x}, ror #8", r = lateout(reg) r, x = in(reg) x,
                options(nomem, nostack, preserves_flags));
        }
        r
    }
    #[cfg(not(all(target_arch = "arm", target_feature = "dsp")))]
    {
        sxtb16(x.rotate_right(8))
    }
}

/// The signed 16-bit lanes of `x`: (low, high).
#[cfg(not(all(target_arch = "arm", target_feature = "dsp")))]
#[inline(always)]
fn lanes(x: u32) -> (i32, i32) {
    (
        i32::from(x as u16 as i16),
        i32::from((x >> 16) as u16 as i16),
    )
}

/// `acc + a.lo * b.lo + a.hi * b.hi` on signed 16-bit lanes, wrapping (SMLAD).
#[inline(always)]
pub fn smlad(a: u32, b: u32, acc: i32) -> i32 {
    #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
    {
        let r: i32;
        // SAFETY: a register-to-register instruction; it may set the sticky Q flag, which
        // nothing reads (so `preserves_flags` is not claimed).
        #[allow(unsafe_code)]
        unsafe {
            core::arch::asm!("smlad {r}, {a}, {b}, {c}", r = lateout(reg) r, a = in(reg) a,
                b = in(reg) b, c = in(reg) acc, options(nomem, nostack));
        }
        r
    }
    #[cfg(not(all(target_arch = "arm", target_feature = "dsp")))]
    {
        let (a0, a1) = lanes(a);
        let (b0, b1) = lanes(b);
        // Each product fits an i32; their sum may not (-2^15 * -2^15 twice), so wrap.
        acc.wrapping_add((a0 * b0).wrapping_add(a1 * b1))
    }
}

/// `acc + a.lo * b.lo` on signed 16-bit lanes, wrapping (SMLABB).
#[inline(always)]
pub fn smlabb(a: u32, b: u32, acc: i32) -> i32 {
    #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
    {
        let r: i32;
        // SAFETY: as `smlad`.
        #[allow(unsafe_code)]
        unsafe {
            core::arch::asm!("smlabb {r}, {a}, {b}, {c}", r = lateout(reg) r, a = in(reg) a,
                b = in(reg) b, c = in(reg) acc, options(nomem, nostack));
        }
        r
    }
    #[cfg(not(all(target_arch = "arm", target_feature = "dsp")))]
    {
        acc.wrapping_add(lanes(a).0 * lanes(b).0)
    }
}

/// `acc + a.hi * b.hi` on signed 16-bit lanes, wrapping (SMLATT).
#[inline(always)]
pub fn smlatt(a: u32, b: u32, acc: i32) -> i32 {
    #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
    {
        let r: i32;
        // SAFETY: as `smlad`.
        #[allow(unsafe_code)]
        unsafe {
            core::arch::asm!("smlatt {r}, {a}, {b}, {c}", r = lateout(reg) r, a = in(reg) a,
                b = in(reg) b, c = in(reg) acc, options(nomem, nostack));
        }
        r
    }
    #[cfg(not(all(target_arch = "arm", target_feature = "dsp")))]
    {
        acc.wrapping_add(lanes(a).1 * lanes(b).1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_and_products_are_exact() {
        let x = u32::from_le_bytes([0x80, 0x7f, 0xff, 0x01]); // -128, 127, -1, 1
        assert_eq!(sxtb16(x), 0xffff_ff80);
        assert_eq!(sxtb16_ror8(x), 0x0001_007f);
        assert_eq!(smlad(sxtb16(x), sxtb16_ror8(x), 5), 5 + -128 * 127 + -1);
        assert_eq!(
            smlad(0x8000_8000, 0x8000_8000, i32::MAX),
            i32::MAX.wrapping_add(1 << 31)
        );
        assert_eq!(smlabb(0x0003_fffe, 0x0007_0004, 1), 1 - 8);
        assert_eq!(smlatt(0x0003_fffe, 0x0007_0004, 1), 1 + 21);
        assert_eq!(
            smlatt(0x8000_0000, 0x8000_0000, i32::MAX),
            i32::MAX.wrapping_add(1 << 30)
        );
    }
}
