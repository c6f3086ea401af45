//! The Cortex-M4 DSP instructions the DSP kernels are written over: `asm!` on Arm, exact Rust
//! emulations elsewhere, so the same kernel code runs (and is checked) on the host.
//!
//! Each one works on registers only, but `dot4_stationary`, a whole inner loop. Accumulations wrap exactly like `wrapping_add`: SMLAD and
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

/// The high word of `a * b`, rounded: `(a * b + 2^31) >> 32` (SMMULR).
#[inline(always)]
pub fn smmulr(a: i32, b: i32) -> i32 {
    #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
    {
        let r: i32;
        // SAFETY: a register-to-register instruction: no memory, stack or flags touched.
        #[allow(unsafe_code)]
        unsafe {
            core::arch::asm!("smmulr {r}, {a}, {b}", r = lateout(reg) r, a = in(reg) a,
                b = in(reg) b, options(nomem, nostack, preserves_flags));
        }
        r
    }
    #[cfg(not(all(target_arch = "arm", target_feature = "dsp")))]
    {
        ((i64::from(a) * i64::from(b) + (1 << 31)) >> 32) as i32
    }
}

/// The high word of `a * b`: `(a * b) >> 32` (SMMUL).
#[inline(always)]
pub fn smmul(a: i32, b: i32) -> i32 {
    #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
    {
        let r: i32;
        // SAFETY: a register-to-register instruction: no memory, stack or flags touched.
        #[allow(unsafe_code)]
        unsafe {
            core::arch::asm!("smmul {r}, {a}, {b}", r = lateout(reg) r, a = in(reg) a,
                b = in(reg) b, options(nomem, nostack, preserves_flags));
        }
        r
    }
    #[cfg(not(all(target_arch = "arm", target_feature = "dsp")))]
    {
        ((i64::from(a) * i64::from(b)) >> 32) as i32
    }
}

/// Four dot products over `n` groups of four int8 inputs: per group, the input word `x[g]`
/// widened (`(x0,x2) (x1,x3)`) against the eight words `w[8g..8g+8]` (rows 0 to 3, each as
/// `(w0,w2) (w1,w3)`), added to `acc`. On the M4 a loop of 17 instructions a group (one input
/// load, four LDRD, two SXTB16, eight SMLAD): the compiler's own schedule of the same loop
/// spills the accumulators.
#[inline(always)]
pub fn dot4_stationary(x: &[u8], w: &[u32], acc: [i32; 4]) -> [i32; 4] {
    let n = (x.len() / 4).min(w.len() / 8);
    #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
    {
        if n == 0 {
            return acc;
        }
        let [mut a0, mut a1, mut a2, mut a3] = acc;
        // SAFETY: the loop reads `4 * n` bytes from `x` (unaligned word loads, which the M4
        // allows) and `8 * n` words from `w` (aligned, as LDRD needs), both within the
        // slices by the choice of `n >= 1`; it writes registers only.
        #[allow(unsafe_code)]
        unsafe {
            core::arch::asm!(
                "2:",
                "ldr {v}, [{xp}], #4",
                "ldrd {e}, {o}, [{wp}], #8",
                "sxtb16 {xe}, {v}",
                "sxtb16 {v}, {v}, ror #8",
                "smlad {a0}, {e}, {xe}, {a0}",
                "smlad {a0}, {o}, {v}, {a0}",
                "ldrd {e}, {o}, [{wp}], #8",
                "smlad {a1}, {e}, {xe}, {a1}",
                "smlad {a1}, {o}, {v}, {a1}",
                "ldrd {e}, {o}, [{wp}], #8",
                "smlad {a2}, {e}, {xe}, {a2}",
                "smlad {a2}, {o}, {v}, {a2}",
                "ldrd {e}, {o}, [{wp}], #8",
                "smlad {a3}, {e}, {xe}, {a3}",
                "smlad {a3}, {o}, {v}, {a3}",
                "subs {n}, {n}, #1",
                "bne 2b",
                xp = inout(reg) x.as_ptr() => _,
                wp = inout(reg) w.as_ptr() => _,
                n = inout(reg) n => _,
                v = out(reg) _,
                xe = out(reg) _,
                e = out(reg) _,
                o = out(reg) _,
                a0 = inout(reg) a0,
                a1 = inout(reg) a1,
                a2 = inout(reg) a2,
                a3 = inout(reg) a3,
                options(nostack, readonly),
            );
        }
        [a0, a1, a2, a3]
    }
    #[cfg(not(all(target_arch = "arm", target_feature = "dsp")))]
    {
        let [mut a0, mut a1, mut a2, mut a3] = acc;
        for (xg, wg) in x.chunks_exact(4).zip(w.chunks_exact(8)).take(n) {
            let v = <[u8; 4]>::try_from(xg).map_or(0, u32::from_le_bytes);
            let (xe, xo) = (sxtb16(v), sxtb16_ror8(v));
            if let [e0, o0, e1, o1, e2, o2, e3, o3] = *wg {
                a0 = smlad(o0, xo, smlad(e0, xe, a0));
                a1 = smlad(o1, xo, smlad(e1, xe, a1));
                a2 = smlad(o2, xo, smlad(e2, xe, a2));
                a3 = smlad(o3, xo, smlad(e3, xe, a3));
            }
        }
        [a0, a1, a2, a3]
    }
}

/// What the asm walks need of four output channels besides the activations: their folded
/// biases and short-path requantization (the module doc of `requant`), each channel's
/// multiplier beside its rounding term with the output offset folded in (one LDRD), so an
/// output is `(h + (h < 0 ? -1 : 0) + round) >> short` saturated, `h = SMMULR(2 acc, m)`.
/// The asm reads it at fixed offsets: keep the layout.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ShortQuad {
    pub bias: [i32; 4],
    /// `(multiplier, 2^(short - 1) + (output offset << short))` per channel.
    pub scale: [[i32; 2]; 4],
    pub short: [u32; 4],
}

/// Channel `j`'s output of accumulator `a`, as the asm computes it.
#[cfg(not(all(target_arch = "arm", target_feature = "dsp")))]
fn short_output(q: &ShortQuad, j: usize, a: i32) -> u8 {
    let [m, round] = q.scale[j];
    let h = smmulr(a << 1, m);
    ((h + (h >> 31) + round) >> q.short[j]).clamp(-128, 127) as i8 as u8
}

/// The asm's view of one call: `ShortQuad` and the walk's pointers and counts.
#[cfg(all(target_arch = "arm", target_feature = "dsp"))]
#[repr(C)]
struct PointwiseJob {
    q: ShortQuad,
    w: *const u32,
    groups: u32,
    out_step: u32,
    out: *mut u8,
    pixels: u32,
}

// The offsets the asm reads at.
#[cfg(all(target_arch = "arm", target_feature = "dsp"))]
const _: () = {
    use core::mem::offset_of;
    assert!(offset_of!(ShortQuad, scale) == 16);
    assert!(offset_of!(ShortQuad, short) == 48);
    assert!(offset_of!(PointwiseJob, w) == 64);
    assert!(offset_of!(PointwiseJob, groups) == 68);
    assert!(offset_of!(PointwiseJob, out_step) == 72);
    assert!(offset_of!(PointwiseJob, out) == 76);
    assert!(offset_of!(PointwiseJob, pixels) == 80);
};

/// Four output channels of a 1x1 CONV_2D at `pixels` consecutive pixels, whole: for pixel
/// p, the `k` int8 inputs `x[p * k..]` against four rows widened in `w` (as
/// `dot4_stationary`), requantized by the short path and written to
/// `out[p * out_step..][..4]`. `None` (nothing written) unless `k` is a positive multiple of
/// 4 and every slice is long enough. On the M4 one asm block walks all pixels: the registers
/// never leave the loop to be spilled between pixels.
#[inline(always)]
pub fn pointwise_short(
    x: &[u8],
    k: usize,
    w: &[u32],
    q: &ShortQuad,
    out: &mut [u8],
    out_step: usize,
    pixels: usize,
) -> Option<()> {
    let groups = k / 4;
    let fits = k % 4 == 0
        && groups > 0
        && pixels > 0
        && out_step >= 4
        && x.len() >= pixels.checked_mul(k)?
        && w.len() >= 8 * groups
        && out.len() >= (pixels - 1).checked_mul(out_step)?.checked_add(4)?;
    if !fits {
        return None;
    }
    #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
    {
        let mut job = PointwiseJob {
            q: *q,
            w: w.as_ptr(),
            groups: u32::try_from(groups).ok()?,
            out_step: u32::try_from(out_step).ok()?,
            out: out.as_mut_ptr(),
            pixels: u32::try_from(pixels).ok()?,
        };
        // SAFETY: by `fits`, the loop reads `pixels * k` bytes of `x` (unaligned word loads,
        // which the M4 allows) and `8 * groups` words of `w` (aligned, for LDRD) per pixel,
        // and writes four bytes at each `out + p * out_step` for p < pixels, all within the
        // slices; it reads and updates `job`, which it alone holds, through `jp`.
        #[allow(unsafe_code)]
        unsafe {
            core::arch::asm!(
                "1:",
                "ldr {wp}, [{jp}, #64]",
                "ldr {n}, [{jp}, #68]",
                "ldrd {a0}, {a1}, [{jp}, #0]",
                "ldrd {a2}, {a3}, [{jp}, #8]",
                "2:",
                "ldr {v}, [{xp}], #4",
                "ldrd {e}, {o}, [{wp}], #8",
                "sxtb16 {xe}, {v}",
                "sxtb16 {v}, {v}, ror #8",
                "smlad {a0}, {e}, {xe}, {a0}",
                "smlad {a0}, {o}, {v}, {a0}",
                "ldrd {e}, {o}, [{wp}], #8",
                "smlad {a1}, {e}, {xe}, {a1}",
                "smlad {a1}, {o}, {v}, {a1}",
                "ldrd {e}, {o}, [{wp}], #8",
                "smlad {a2}, {e}, {xe}, {a2}",
                "smlad {a2}, {o}, {v}, {a2}",
                "ldrd {e}, {o}, [{wp}], #8",
                "smlad {a3}, {e}, {xe}, {a3}",
                "smlad {a3}, {o}, {v}, {a3}",
                "subs {n}, {n}, #1",
                "bne 2b",
                // Requantize (`ShortQuad`).
                "ldrd {e}, {o}, [{jp}, #16]",
                "lsl {a0}, {a0}, #1",
                "smmulr {a0}, {a0}, {e}",
                "add {o}, {o}, {a0}",
                "add {a0}, {o}, {a0}, asr #31",
                "ldr {e}, [{jp}, #48]",
                "asr {a0}, {a0}, {e}",
                "ssat {a0}, #8, {a0}",
                "ldrd {e}, {o}, [{jp}, #24]",
                "lsl {a1}, {a1}, #1",
                "smmulr {a1}, {a1}, {e}",
                "add {o}, {o}, {a1}",
                "add {a1}, {o}, {a1}, asr #31",
                "ldr {e}, [{jp}, #52]",
                "asr {a1}, {a1}, {e}",
                "ssat {a1}, #8, {a1}",
                "ldrd {e}, {o}, [{jp}, #32]",
                "lsl {a2}, {a2}, #1",
                "smmulr {a2}, {a2}, {e}",
                "add {o}, {o}, {a2}",
                "add {a2}, {o}, {a2}, asr #31",
                "ldr {e}, [{jp}, #56]",
                "asr {a2}, {a2}, {e}",
                "ssat {a2}, #8, {a2}",
                "ldrd {e}, {o}, [{jp}, #40]",
                "lsl {a3}, {a3}, #1",
                "smmulr {a3}, {a3}, {e}",
                "add {o}, {o}, {a3}",
                "add {a3}, {o}, {a3}, asr #31",
                "ldr {e}, [{jp}, #60]",
                "asr {a3}, {a3}, {e}",
                "ssat {a3}, #8, {a3}",
                "ldr {e}, [{jp}, #76]",
                "strb {a0}, [{e}]",
                "strb {a1}, [{e}, #1]",
                "strb {a2}, [{e}, #2]",
                "strb {a3}, [{e}, #3]",
                "ldr {o}, [{jp}, #72]",
                "add {e}, {e}, {o}",
                "str {e}, [{jp}, #76]",
                "ldr {e}, [{jp}, #80]",
                "subs {e}, {e}, #1",
                "str {e}, [{jp}, #80]",
                "bne 1b",
                jp = in(reg) &mut job as *mut PointwiseJob,
                xp = inout(reg) x.as_ptr() => _,
                wp = out(reg) _,
                n = out(reg) _,
                v = out(reg) _,
                xe = out(reg) _,
                e = out(reg) _,
                o = out(reg) _,
                a0 = out(reg) _,
                a1 = out(reg) _,
                a2 = out(reg) _,
                a3 = out(reg) _,
                options(nostack),
            );
        }
        Some(())
    }
    #[cfg(not(all(target_arch = "arm", target_feature = "dsp")))]
    {
        for p in 0..pixels {
            let px = x.get(p * k..(p + 1) * k)?;
            let acc = dot4_stationary(px, w, q.bias);
            let o = out.get_mut(p * out_step..p * out_step + 4)?;
            for (j, (o, a)) in o.iter_mut().zip(acc).enumerate() {
                *o = short_output(q, j, a);
            }
        }
        Some(())
    }
}

/// The asm's view of one `depthwise3_short` call: `ShortQuad`, the nine taps' widened
/// weights, and the walk's steps, pointer and count.
#[cfg(all(target_arch = "arm", target_feature = "dsp"))]
#[repr(C)]
struct Depthwise3Job {
    q: ShortQuad,
    w: [u32; 18],
    step: u32,
    out_step: u32,
    out: *mut u8,
    pixels: u32,
}

#[cfg(all(target_arch = "arm", target_feature = "dsp"))]
const _: () = {
    use core::mem::offset_of;
    assert!(offset_of!(Depthwise3Job, w) == 64);
    assert!(offset_of!(Depthwise3Job, step) == 136);
    assert!(offset_of!(Depthwise3Job, out_step) == 140);
    assert!(offset_of!(Depthwise3Job, out) == 144);
    assert!(offset_of!(Depthwise3Job, pixels) == 148);
};

/// Four channels of a 3x3 depthwise layer along a row of `pixels` outputs, whole: `rows` are
/// the three input rows under it, widened (two words per input pixel: channels `(0, 2)` and
/// `(1, 3)` as 16-bit lanes, the zero point where the filter overhangs), output p's window
/// starting at pixel `p * stride`; `w` the nine taps' weights widened the same way. Each
/// output is requantized by the short path and written to `out[p * out_step..][..4]`. `None`
/// (nothing written) unless every slice is long enough. On the M4 one asm block walks the row:
/// the weights are read at fixed offsets, no register is spilled.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn depthwise3_short(
    rows: [&[u32]; 3],
    w: &[u32; 18],
    q: &ShortQuad,
    stride: usize,
    out: &mut [u8],
    out_step: usize,
    pixels: usize,
) -> Option<()> {
    let reach = 2 * ((pixels.checked_sub(1)?).checked_mul(stride)? + 3);
    let fits = stride > 0
        && out_step >= 4
        && rows.iter().all(|r| r.len() >= reach)
        && out.len() >= (pixels - 1).checked_mul(out_step)?.checked_add(4)?;
    if !fits {
        return None;
    }
    #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
    {
        let mut job = Depthwise3Job {
            q: *q,
            w: *w,
            step: u32::try_from(8 * stride).ok()?,
            out_step: u32::try_from(out_step).ok()?,
            out: out.as_mut_ptr(),
            pixels: u32::try_from(pixels).ok()?,
        };
        // SAFETY: by `fits`, output p reads words `2 * p * stride..` + 6 of each row (aligned
        // double-word loads) and writes four bytes at `out + p * out_step`, all within the
        // slices; it reads and updates `job`, which it alone holds, through `jp`.
        #[allow(unsafe_code)]
        unsafe {
            core::arch::asm!(
                "1:",
                "ldrd {a0}, {a1}, [{jp}, #0]",
                "ldrd {a2}, {a3}, [{jp}, #8]",
                "ldrd {xe}, {xo}, [{p0}, #0]",
                "ldrd {e}, {o}, [{jp}, #64]",
                "smlabb {a0}, {e}, {xe}, {a0}",
                "smlatt {a2}, {e}, {xe}, {a2}",
                "smlabb {a1}, {o}, {xo}, {a1}",
                "smlatt {a3}, {o}, {xo}, {a3}",
                "ldrd {xe}, {xo}, [{p0}, #8]",
                "ldrd {e}, {o}, [{jp}, #72]",
                "smlabb {a0}, {e}, {xe}, {a0}",
                "smlatt {a2}, {e}, {xe}, {a2}",
                "smlabb {a1}, {o}, {xo}, {a1}",
                "smlatt {a3}, {o}, {xo}, {a3}",
                "ldrd {xe}, {xo}, [{p0}, #16]",
                "ldrd {e}, {o}, [{jp}, #80]",
                "smlabb {a0}, {e}, {xe}, {a0}",
                "smlatt {a2}, {e}, {xe}, {a2}",
                "smlabb {a1}, {o}, {xo}, {a1}",
                "smlatt {a3}, {o}, {xo}, {a3}",
                "ldrd {xe}, {xo}, [{p1}, #0]",
                "ldrd {e}, {o}, [{jp}, #88]",
                "smlabb {a0}, {e}, {xe}, {a0}",
                "smlatt {a2}, {e}, {xe}, {a2}",
                "smlabb {a1}, {o}, {xo}, {a1}",
                "smlatt {a3}, {o}, {xo}, {a3}",
                "ldrd {xe}, {xo}, [{p1}, #8]",
                "ldrd {e}, {o}, [{jp}, #96]",
                "smlabb {a0}, {e}, {xe}, {a0}",
                "smlatt {a2}, {e}, {xe}, {a2}",
                "smlabb {a1}, {o}, {xo}, {a1}",
                "smlatt {a3}, {o}, {xo}, {a3}",
                "ldrd {xe}, {xo}, [{p1}, #16]",
                "ldrd {e}, {o}, [{jp}, #104]",
                "smlabb {a0}, {e}, {xe}, {a0}",
                "smlatt {a2}, {e}, {xe}, {a2}",
                "smlabb {a1}, {o}, {xo}, {a1}",
                "smlatt {a3}, {o}, {xo}, {a3}",
                "ldrd {xe}, {xo}, [{p2}, #0]",
                "ldrd {e}, {o}, [{jp}, #112]",
                "smlabb {a0}, {e}, {xe}, {a0}",
                "smlatt {a2}, {e}, {xe}, {a2}",
                "smlabb {a1}, {o}, {xo}, {a1}",
                "smlatt {a3}, {o}, {xo}, {a3}",
                "ldrd {xe}, {xo}, [{p2}, #8]",
                "ldrd {e}, {o}, [{jp}, #120]",
                "smlabb {a0}, {e}, {xe}, {a0}",
                "smlatt {a2}, {e}, {xe}, {a2}",
                "smlabb {a1}, {o}, {xo}, {a1}",
                "smlatt {a3}, {o}, {xo}, {a3}",
                "ldrd {xe}, {xo}, [{p2}, #16]",
                "ldrd {e}, {o}, [{jp}, #128]",
                "smlabb {a0}, {e}, {xe}, {a0}",
                "smlatt {a2}, {e}, {xe}, {a2}",
                "smlabb {a1}, {o}, {xo}, {a1}",
                "smlatt {a3}, {o}, {xo}, {a3}",
                // Requantize as `pointwise_short` does.
                "ldrd {e}, {o}, [{jp}, #16]",
                "lsl {a0}, {a0}, #1",
                "smmulr {a0}, {a0}, {e}",
                "add {o}, {o}, {a0}",
                "add {a0}, {o}, {a0}, asr #31",
                "ldr {e}, [{jp}, #48]",
                "asr {a0}, {a0}, {e}",
                "ssat {a0}, #8, {a0}",
                "ldrd {e}, {o}, [{jp}, #24]",
                "lsl {a1}, {a1}, #1",
                "smmulr {a1}, {a1}, {e}",
                "add {o}, {o}, {a1}",
                "add {a1}, {o}, {a1}, asr #31",
                "ldr {e}, [{jp}, #52]",
                "asr {a1}, {a1}, {e}",
                "ssat {a1}, #8, {a1}",
                "ldrd {e}, {o}, [{jp}, #32]",
                "lsl {a2}, {a2}, #1",
                "smmulr {a2}, {a2}, {e}",
                "add {o}, {o}, {a2}",
                "add {a2}, {o}, {a2}, asr #31",
                "ldr {e}, [{jp}, #56]",
                "asr {a2}, {a2}, {e}",
                "ssat {a2}, #8, {a2}",
                "ldrd {e}, {o}, [{jp}, #40]",
                "lsl {a3}, {a3}, #1",
                "smmulr {a3}, {a3}, {e}",
                "add {o}, {o}, {a3}",
                "add {a3}, {o}, {a3}, asr #31",
                "ldr {e}, [{jp}, #60]",
                "asr {a3}, {a3}, {e}",
                "ssat {a3}, #8, {a3}",
                "ldr {e}, [{jp}, #144]",
                "strb {a0}, [{e}]",
                "strb {a1}, [{e}, #1]",
                "strb {a2}, [{e}, #2]",
                "strb {a3}, [{e}, #3]",
                "ldr {o}, [{jp}, #140]",
                "add {e}, {e}, {o}",
                "str {e}, [{jp}, #144]",
                "ldr {e}, [{jp}, #136]",
                "add {p0}, {p0}, {e}",
                "add {p1}, {p1}, {e}",
                "add {p2}, {p2}, {e}",
                "ldr {e}, [{jp}, #148]",
                "subs {e}, {e}, #1",
                "str {e}, [{jp}, #148]",
                "bne 1b",
                jp = in(reg) &mut job as *mut Depthwise3Job,
                p0 = inout(reg) rows[0].as_ptr() => _,
                p1 = inout(reg) rows[1].as_ptr() => _,
                p2 = inout(reg) rows[2].as_ptr() => _,
                xe = out(reg) _,
                xo = out(reg) _,
                e = out(reg) _,
                o = out(reg) _,
                a0 = out(reg) _,
                a1 = out(reg) _,
                a2 = out(reg) _,
                a3 = out(reg) _,
                options(nostack),
            );
        }
        Some(())
    }
    #[cfg(not(all(target_arch = "arm", target_feature = "dsp")))]
    {
        for p in 0..pixels {
            let at = 2 * p * stride;
            let mut acc = q.bias;
            for (t, wt) in w.chunks_exact(2).enumerate() {
                let x = rows[t / 3].get(at + 2 * (t % 3)..at + 2 * (t % 3) + 2)?;
                acc[0] = smlabb(wt[0], x[0], acc[0]);
                acc[2] = smlatt(wt[0], x[0], acc[2]);
                acc[1] = smlabb(wt[1], x[1], acc[1]);
                acc[3] = smlatt(wt[1], x[1], acc[3]);
            }
            let o = out.get_mut(p * out_step..p * out_step + 4)?;
            for (j, (o, a)) in o.iter_mut().zip(acc).enumerate() {
                *o = short_output(q, j, a);
            }
        }
        Some(())
    }
}

/// The asm's view of one `window3_short` call.
#[cfg(all(target_arch = "arm", target_feature = "dsp"))]
#[repr(C)]
struct WindowJob {
    q: ShortQuad,
    w: *const u32,
    out_step: u32,
    out: *mut u8,
    pixels: u32,
    step: u32,
}

#[cfg(all(target_arch = "arm", target_feature = "dsp"))]
const _: () = {
    use core::mem::offset_of;
    assert!(offset_of!(WindowJob, w) == 64);
    assert!(offset_of!(WindowJob, out_step) == 68);
    assert!(offset_of!(WindowJob, out) == 72);
    assert!(offset_of!(WindowJob, pixels) == 76);
    assert!(offset_of!(WindowJob, step) == 80);
};

/// Four output channels of a CONV_2D with three filter rows of at most four bytes each, at
/// `pixels` outputs along a row, whole: output p's filter rows are the words at
/// `x[p * step + r * row..][..4]` for r < 3 (a padded input read in place, no patch
/// gathered), against four weight rows laid out one filter row per group of four (zeros
/// after each row's bytes, so a word's bytes past the row add nothing) and widened as
/// `widen_rows` does (24 words). Requantized by the short path and written to
/// `out[p * out_step..][..4]`. `None` (nothing written) unless every slice is long enough.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn window3_short(
    x: &[u8],
    row: usize,
    step: usize,
    w: &[u32],
    q: &ShortQuad,
    out: &mut [u8],
    out_step: usize,
    pixels: usize,
) -> Option<()> {
    let last = pixels.checked_sub(1)?;
    let fits = out_step >= 4
        && w.len() >= 24
        && x.len()
            >= last
                .checked_mul(step)?
                .checked_add(row.checked_mul(2)?)?
                .checked_add(4)?
        && out.len() >= last.checked_mul(out_step)?.checked_add(4)?;
    if !fits {
        return None;
    }
    #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
    {
        let mut job = WindowJob {
            q: *q,
            w: w.as_ptr(),
            out_step: u32::try_from(out_step).ok()?,
            out: out.as_mut_ptr(),
            pixels: u32::try_from(pixels).ok()?,
            step: u32::try_from(step).ok()?,
        };
        // SAFETY: by `fits`, output p reads the words at `x + p * step + r * row` for r < 3
        // (unaligned word loads, which the M4 allows) and 24 words of `w` (aligned, for
        // LDRD), and writes four bytes at `out + p * out_step`, all within the slices; it
        // reads and updates `job`, which it alone holds, through `jp`.
        #[allow(unsafe_code)]
        unsafe {
            core::arch::asm!(
                "1:",
                "ldr {wp}, [{jp}, #64]",
                "ldrd {a0}, {a1}, [{jp}, #0]",
                "ldrd {a2}, {a3}, [{jp}, #8]",
                "ldr {v}, [{xp}]",
                "sxtb16 {xe}, {v}",
                "sxtb16 {v}, {v}, ror #8",
                "ldrd {e}, {o}, [{wp}], #8",
                "smlad {a0}, {e}, {xe}, {a0}",
                "smlad {a0}, {o}, {v}, {a0}",
                "ldrd {e}, {o}, [{wp}], #8",
                "smlad {a1}, {e}, {xe}, {a1}",
                "smlad {a1}, {o}, {v}, {a1}",
                "ldrd {e}, {o}, [{wp}], #8",
                "smlad {a2}, {e}, {xe}, {a2}",
                "smlad {a2}, {o}, {v}, {a2}",
                "ldrd {e}, {o}, [{wp}], #8",
                "smlad {a3}, {e}, {xe}, {a3}",
                "smlad {a3}, {o}, {v}, {a3}",
                "ldr {v}, [{xp}, {rs}]",
                "sxtb16 {xe}, {v}",
                "sxtb16 {v}, {v}, ror #8",
                "ldrd {e}, {o}, [{wp}], #8",
                "smlad {a0}, {e}, {xe}, {a0}",
                "smlad {a0}, {o}, {v}, {a0}",
                "ldrd {e}, {o}, [{wp}], #8",
                "smlad {a1}, {e}, {xe}, {a1}",
                "smlad {a1}, {o}, {v}, {a1}",
                "ldrd {e}, {o}, [{wp}], #8",
                "smlad {a2}, {e}, {xe}, {a2}",
                "smlad {a2}, {o}, {v}, {a2}",
                "ldrd {e}, {o}, [{wp}], #8",
                "smlad {a3}, {e}, {xe}, {a3}",
                "smlad {a3}, {o}, {v}, {a3}",
                "ldr {v}, [{xp}, {rs}, lsl #1]",
                "sxtb16 {xe}, {v}",
                "sxtb16 {v}, {v}, ror #8",
                "ldrd {e}, {o}, [{wp}], #8",
                "smlad {a0}, {e}, {xe}, {a0}",
                "smlad {a0}, {o}, {v}, {a0}",
                "ldrd {e}, {o}, [{wp}], #8",
                "smlad {a1}, {e}, {xe}, {a1}",
                "smlad {a1}, {o}, {v}, {a1}",
                "ldrd {e}, {o}, [{wp}], #8",
                "smlad {a2}, {e}, {xe}, {a2}",
                "smlad {a2}, {o}, {v}, {a2}",
                "ldrd {e}, {o}, [{wp}], #8",
                "smlad {a3}, {e}, {xe}, {a3}",
                "smlad {a3}, {o}, {v}, {a3}",
                // Requantize (`ShortQuad`).
                "ldrd {e}, {o}, [{jp}, #16]",
                "lsl {a0}, {a0}, #1",
                "smmulr {a0}, {a0}, {e}",
                "add {o}, {o}, {a0}",
                "add {a0}, {o}, {a0}, asr #31",
                "ldr {e}, [{jp}, #48]",
                "asr {a0}, {a0}, {e}",
                "ssat {a0}, #8, {a0}",
                "ldrd {e}, {o}, [{jp}, #24]",
                "lsl {a1}, {a1}, #1",
                "smmulr {a1}, {a1}, {e}",
                "add {o}, {o}, {a1}",
                "add {a1}, {o}, {a1}, asr #31",
                "ldr {e}, [{jp}, #52]",
                "asr {a1}, {a1}, {e}",
                "ssat {a1}, #8, {a1}",
                "ldrd {e}, {o}, [{jp}, #32]",
                "lsl {a2}, {a2}, #1",
                "smmulr {a2}, {a2}, {e}",
                "add {o}, {o}, {a2}",
                "add {a2}, {o}, {a2}, asr #31",
                "ldr {e}, [{jp}, #56]",
                "asr {a2}, {a2}, {e}",
                "ssat {a2}, #8, {a2}",
                "ldrd {e}, {o}, [{jp}, #40]",
                "lsl {a3}, {a3}, #1",
                "smmulr {a3}, {a3}, {e}",
                "add {o}, {o}, {a3}",
                "add {a3}, {o}, {a3}, asr #31",
                "ldr {e}, [{jp}, #60]",
                "asr {a3}, {a3}, {e}",
                "ssat {a3}, #8, {a3}",
                "ldr {e}, [{jp}, #72]",
                "strb {a0}, [{e}]",
                "strb {a1}, [{e}, #1]",
                "strb {a2}, [{e}, #2]",
                "strb {a3}, [{e}, #3]",
                "ldr {o}, [{jp}, #68]",
                "add {e}, {e}, {o}",
                "str {e}, [{jp}, #72]",
                "ldr {e}, [{jp}, #80]",
                "add {xp}, {xp}, {e}",
                "ldr {e}, [{jp}, #76]",
                "subs {e}, {e}, #1",
                "str {e}, [{jp}, #76]",
                "bne 1b",
                jp = in(reg) &mut job as *mut WindowJob,
                xp = inout(reg) x.as_ptr() => _,
                rs = in(reg) row,
                wp = out(reg) _,
                v = out(reg) _,
                xe = out(reg) _,
                e = out(reg) _,
                o = out(reg) _,
                a0 = out(reg) _,
                a1 = out(reg) _,
                a2 = out(reg) _,
                a3 = out(reg) _,
                options(nostack),
            );
        }
        Some(())
    }
    #[cfg(not(all(target_arch = "arm", target_feature = "dsp")))]
    {
        for p in 0..pixels {
            let mut acc = q.bias;
            for r in 0..3 {
                let at = p * step + r * row;
                let b = x.get(at..at + 4)?;
                let v = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                let (xe, xo) = (sxtb16(v), sxtb16_ror8(v));
                for (j, a) in acc.iter_mut().enumerate() {
                    let g = w.get(8 * r + 2 * j..8 * r + 2 * j + 2)?;
                    *a = smlad(g[1], xo, smlad(g[0], xe, *a));
                }
            }
            let o = out.get_mut(p * out_step..p * out_step + 4)?;
            for (j, (o, a)) in o.iter_mut().zip(acc).enumerate() {
                *o = short_output(q, j, a);
            }
        }
        Some(())
    }
}

/// Four dot products of a widened column (`widen`: `(x0,x2) (x1,x3)` per 4 values) with the
/// four int8 rows of `w`, `len` bytes each, side by side, over their first `len / 4 * 4`
/// values, added to `acc`. On the M4 one asm block: per 4 values one double-word load of the
/// column and, per row, one load, two SXTB16 and two SMLADs, two groups per iteration.
#[inline(always)]
pub fn dot4_rows(col: &[u32], w: &[u8], len: usize, acc: [i32; 4]) -> Option<[i32; 4]> {
    let groups = len / 4;
    let fits = col.len() >= 2 * groups && w.len() >= len.checked_mul(4)?;
    if !fits {
        return None;
    }
    #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
    {
        let [mut a0, mut a1, mut a2, mut a3] = acc;
        // SAFETY: by `fits`, the loop reads `2 * groups` words of `col` (aligned, for LDRD)
        // and the first `4 * groups` bytes of each row `r` at `w + r * len` (unaligned word
        // loads, which the M4 allows), all within the slices.
        #[allow(unsafe_code)]
        unsafe {
            core::arch::asm!(
                "lsrs {n}, {n}, #1",
                "bcc 3f",
                "ldrd {xe}, {xo}, [{cp}], #8",
                "ldr {u}, [{wa}, {len}]",
                "sxtb16 {t}, {u}",
                "sxtb16 {u}, {u}, ror #8",
                "smlad {a1}, {t}, {xe}, {a1}",
                "smlad {a1}, {u}, {xo}, {a1}",
                "ldr {u}, [{wa}, {len}, lsl #1]",
                "sxtb16 {t}, {u}",
                "sxtb16 {u}, {u}, ror #8",
                "smlad {a2}, {t}, {xe}, {a2}",
                "smlad {a2}, {u}, {xo}, {a2}",
                "ldr {u}, [{wa}, {l3}]",
                "sxtb16 {t}, {u}",
                "sxtb16 {u}, {u}, ror #8",
                "smlad {a3}, {t}, {xe}, {a3}",
                "smlad {a3}, {u}, {xo}, {a3}",
                "ldr {u}, [{wa}], #4",
                "sxtb16 {t}, {u}",
                "sxtb16 {u}, {u}, ror #8",
                "smlad {a0}, {t}, {xe}, {a0}",
                "smlad {a0}, {u}, {xo}, {a0}",
                "3:",
                "cmp {n}, #0",
                "beq 4f",
                "2:",
                "ldrd {xe}, {xo}, [{cp}], #8",
                "ldr {u}, [{wa}, {len}]",
                "sxtb16 {t}, {u}",
                "sxtb16 {u}, {u}, ror #8",
                "smlad {a1}, {t}, {xe}, {a1}",
                "smlad {a1}, {u}, {xo}, {a1}",
                "ldr {u}, [{wa}, {len}, lsl #1]",
                "sxtb16 {t}, {u}",
                "sxtb16 {u}, {u}, ror #8",
                "smlad {a2}, {t}, {xe}, {a2}",
                "smlad {a2}, {u}, {xo}, {a2}",
                "ldr {u}, [{wa}, {l3}]",
                "sxtb16 {t}, {u}",
                "sxtb16 {u}, {u}, ror #8",
                "smlad {a3}, {t}, {xe}, {a3}",
                "smlad {a3}, {u}, {xo}, {a3}",
                "ldr {u}, [{wa}], #4",
                "sxtb16 {t}, {u}",
                "sxtb16 {u}, {u}, ror #8",
                "smlad {a0}, {t}, {xe}, {a0}",
                "smlad {a0}, {u}, {xo}, {a0}",
                "ldrd {xe}, {xo}, [{cp}], #8",
                "ldr {u}, [{wa}, {len}]",
                "sxtb16 {t}, {u}",
                "sxtb16 {u}, {u}, ror #8",
                "smlad {a1}, {t}, {xe}, {a1}",
                "smlad {a1}, {u}, {xo}, {a1}",
                "ldr {u}, [{wa}, {len}, lsl #1]",
                "sxtb16 {t}, {u}",
                "sxtb16 {u}, {u}, ror #8",
                "smlad {a2}, {t}, {xe}, {a2}",
                "smlad {a2}, {u}, {xo}, {a2}",
                "ldr {u}, [{wa}, {l3}]",
                "sxtb16 {t}, {u}",
                "sxtb16 {u}, {u}, ror #8",
                "smlad {a3}, {t}, {xe}, {a3}",
                "smlad {a3}, {u}, {xo}, {a3}",
                "ldr {u}, [{wa}], #4",
                "sxtb16 {t}, {u}",
                "sxtb16 {u}, {u}, ror #8",
                "smlad {a0}, {t}, {xe}, {a0}",
                "smlad {a0}, {u}, {xo}, {a0}",
                "subs {n}, {n}, #1",
                "bne 2b",
                "4:",
                cp = inout(reg) col.as_ptr() => _,
                wa = inout(reg) w.as_ptr() => _,
                len = in(reg) len,
                l3 = in(reg) 3 * len,
                n = inout(reg) groups => _,
                xe = out(reg) _,
                xo = out(reg) _,
                u = out(reg) _,
                t = out(reg) _,
                a0 = inout(reg) a0,
                a1 = inout(reg) a1,
                a2 = inout(reg) a2,
                a3 = inout(reg) a3,
                options(nostack, readonly),
            );
        }
        Some([a0, a1, a2, a3])
    }
    #[cfg(not(all(target_arch = "arm", target_feature = "dsp")))]
    {
        let mut acc = acc;
        for (r, a) in acc.iter_mut().enumerate() {
            let row = w.get(r * len..r * len + groups * 4)?;
            for (x, u) in col.chunks_exact(2).zip(row.chunks_exact(4)) {
                let u = u32::from_le_bytes([u[0], u[1], u[2], u[3]]);
                *a = smlad(sxtb16_ror8(u), x[1], smlad(sxtb16(u), x[0], *a));
            }
        }
        Some(acc)
    }
}

/// The asm's view of one `fc_pass` call.
#[cfg(all(target_arch = "arm", target_feature = "dsp"))]
#[repr(C)]
struct FcJob {
    records: *const u8,
    out: *mut u8,
    offset: i32,
}

/// Four FULLY_CONNECTED units whole: `dot4_rows` of the widened column with the four rows
/// of `w` (`len` a multiple of 4) from the folded biases in `records` (the units' four
/// 16-byte channel records: multiplier, shift, bias, short shift), each requantized by the
/// single-rounding short path, `(SMMUL(acc, m) + 2^(short - 1)) >> short`, plus `offset`,
/// saturated to int8, into `out[..4]`. `None` (nothing written) unless `len` is a multiple of
/// 4, every record has a short path and every slice is long enough.
#[inline(always)]
pub fn fc_pass(
    col: &[u32],
    w: &[u8],
    len: usize,
    records: &[u8],
    out: &mut [u8],
    offset: i32,
) -> Option<()> {
    let groups = len / 4;
    let short = |j: usize| {
        let b = records.get(16 * j + 12..16 * j + 16)?;
        Some(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    };
    let fits = len % 4 == 0
        && col.len() >= 2 * groups
        && w.len() >= len.checked_mul(4)?
        && records.len() >= 64
        && out.len() >= 4
        && (0..4).all(|j| short(j).is_some_and(|s| (1..=30).contains(&s)));
    if !fits {
        return None;
    }
    #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
    {
        let mut job = FcJob {
            records: records.as_ptr(),
            out: out.as_mut_ptr(),
            offset,
        };
        // SAFETY: by `fits`, the loop reads what `dot4_rows` reads and the 64 bytes of
        // `records` (word loads, unaligned allowed), and writes `out[..4]`; the job
        // pointer is pushed and popped around the loop (one word of stack).
        #[allow(unsafe_code)]
        unsafe {
            core::arch::asm!(
                "ldr {u}, [{t}]",
                "ldr {a0}, [{u}, #8]",
                "ldr {a1}, [{u}, #24]",
                "ldr {a2}, [{u}, #40]",
                "ldr {a3}, [{u}, #56]",
                // The job pointer waits on the stack while `t` serves the loop.
                "push {{{t}}}",
                "lsrs {n}, {n}, #1",
                "bcc 3f",
                "ldrd {xe}, {xo}, [{cp}], #8",
                "ldr {u}, [{wa}, {len}]",
                "sxtb16 {t}, {u}",
                "sxtb16 {u}, {u}, ror #8",
                "smlad {a1}, {t}, {xe}, {a1}",
                "smlad {a1}, {u}, {xo}, {a1}",
                "ldr {u}, [{wa}, {len}, lsl #1]",
                "sxtb16 {t}, {u}",
                "sxtb16 {u}, {u}, ror #8",
                "smlad {a2}, {t}, {xe}, {a2}",
                "smlad {a2}, {u}, {xo}, {a2}",
                "ldr {u}, [{wa}, {l3}]",
                "sxtb16 {t}, {u}",
                "sxtb16 {u}, {u}, ror #8",
                "smlad {a3}, {t}, {xe}, {a3}",
                "smlad {a3}, {u}, {xo}, {a3}",
                "ldr {u}, [{wa}], #4",
                "sxtb16 {t}, {u}",
                "sxtb16 {u}, {u}, ror #8",
                "smlad {a0}, {t}, {xe}, {a0}",
                "smlad {a0}, {u}, {xo}, {a0}",
                "3:",
                "cmp {n}, #0",
                "beq 4f",
                "2:",
                "ldrd {xe}, {xo}, [{cp}], #8",
                "ldr {u}, [{wa}, {len}]",
                "sxtb16 {t}, {u}",
                "sxtb16 {u}, {u}, ror #8",
                "smlad {a1}, {t}, {xe}, {a1}",
                "smlad {a1}, {u}, {xo}, {a1}",
                "ldr {u}, [{wa}, {len}, lsl #1]",
                "sxtb16 {t}, {u}",
                "sxtb16 {u}, {u}, ror #8",
                "smlad {a2}, {t}, {xe}, {a2}",
                "smlad {a2}, {u}, {xo}, {a2}",
                "ldr {u}, [{wa}, {l3}]",
                "sxtb16 {t}, {u}",
                "sxtb16 {u}, {u}, ror #8",
                "smlad {a3}, {t}, {xe}, {a3}",
                "smlad {a3}, {u}, {xo}, {a3}",
                "ldr {u}, [{wa}], #4",
                "sxtb16 {t}, {u}",
                "sxtb16 {u}, {u}, ror #8",
                "smlad {a0}, {t}, {xe}, {a0}",
                "smlad {a0}, {u}, {xo}, {a0}",
                "ldrd {xe}, {xo}, [{cp}], #8",
                "ldr {u}, [{wa}, {len}]",
                "sxtb16 {t}, {u}",
                "sxtb16 {u}, {u}, ror #8",
                "smlad {a1}, {t}, {xe}, {a1}",
                "smlad {a1}, {u}, {xo}, {a1}",
                "ldr {u}, [{wa}, {len}, lsl #1]",
                "sxtb16 {t}, {u}",
                "sxtb16 {u}, {u}, ror #8",
                "smlad {a2}, {t}, {xe}, {a2}",
                "smlad {a2}, {u}, {xo}, {a2}",
                "ldr {u}, [{wa}, {l3}]",
                "sxtb16 {t}, {u}",
                "sxtb16 {u}, {u}, ror #8",
                "smlad {a3}, {t}, {xe}, {a3}",
                "smlad {a3}, {u}, {xo}, {a3}",
                "ldr {u}, [{wa}], #4",
                "sxtb16 {t}, {u}",
                "sxtb16 {u}, {u}, ror #8",
                "smlad {a0}, {t}, {xe}, {a0}",
                "smlad {a0}, {u}, {xo}, {a0}",
                "subs {n}, {n}, #1",
                "bne 2b",
                "4:",
                "pop {{{t}}}",
                "ldr {u}, [{t}]",
                "ldr {xo}, [{t}, #8]",
                "mov {len}, #1",
                "ldr {xe}, [{u}, #0]",
                "smmul {a0}, {a0}, {xe}",
                "ldr {xe}, [{u}, #12]",
                "lsl {n}, {len}, {xe}",
                "add {a0}, {a0}, {n}, lsr #1",
                "asr {a0}, {a0}, {xe}",
                "add {a0}, {a0}, {xo}",
                "ssat {a0}, #8, {a0}",
                "ldr {xe}, [{u}, #16]",
                "smmul {a1}, {a1}, {xe}",
                "ldr {xe}, [{u}, #28]",
                "lsl {n}, {len}, {xe}",
                "add {a1}, {a1}, {n}, lsr #1",
                "asr {a1}, {a1}, {xe}",
                "add {a1}, {a1}, {xo}",
                "ssat {a1}, #8, {a1}",
                "ldr {xe}, [{u}, #32]",
                "smmul {a2}, {a2}, {xe}",
                "ldr {xe}, [{u}, #44]",
                "lsl {n}, {len}, {xe}",
                "add {a2}, {a2}, {n}, lsr #1",
                "asr {a2}, {a2}, {xe}",
                "add {a2}, {a2}, {xo}",
                "ssat {a2}, #8, {a2}",
                "ldr {xe}, [{u}, #48]",
                "smmul {a3}, {a3}, {xe}",
                "ldr {xe}, [{u}, #60]",
                "lsl {n}, {len}, {xe}",
                "add {a3}, {a3}, {n}, lsr #1",
                "asr {a3}, {a3}, {xe}",
                "add {a3}, {a3}, {xo}",
                "ssat {a3}, #8, {a3}",
                "ldr {u}, [{t}, #4]",
                "strb {a0}, [{u}]",
                "strb {a1}, [{u}, #1]",
                "strb {a2}, [{u}, #2]",
                "strb {a3}, [{u}, #3]",
                t = inout(reg) &mut job as *mut FcJob => _,
                cp = inout(reg) col.as_ptr() => _,
                wa = inout(reg) w.as_ptr() => _,
                len = inout(reg) len => _,
                l3 = in(reg) 3 * len,
                n = inout(reg) groups => _,
                xe = out(reg) _,
                xo = out(reg) _,
                u = out(reg) _,
                a0 = out(reg) _,
                a1 = out(reg) _,
                a2 = out(reg) _,
                a3 = out(reg) _,
            );
        }
        Some(())
    }
    #[cfg(not(all(target_arch = "arm", target_feature = "dsp")))]
    {
        let word = |j: usize, i: usize| {
            let b = records.get(16 * j + i..16 * j + i + 4)?;
            Some(i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        };
        let mut bias = [0i32; 4];
        for (j, b) in bias.iter_mut().enumerate() {
            *b = word(j, 8)?;
        }
        let acc = dot4_rows(col, w, len, bias)?;
        for (j, (o, a)) in out.iter_mut().zip(acc).enumerate() {
            let s = short(j)?;
            let v = (smmul(a, word(j, 0)?) + (1 << (s - 1))) >> s;
            *o = (v + offset).clamp(-128, 127) as i8 as u8;
        }
        Some(())
    }
}

/// The signed maximum of each of the four int8 lanes of `a` and `b` (SSUB8 sets a GE flag
/// per lane where `a >= b`, SEL takes those lanes from `a`): one asm block, so nothing runs
/// between the two that could change the flags.
#[inline(always)]
pub fn max_s8x4(a: u32, b: u32) -> u32 {
    #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
    {
        let r: u32;
        // SAFETY: register-to-register instructions; they write the GE flags, which nothing
        // else reads (so `preserves_flags` is not claimed).
        #[allow(unsafe_code)]
        unsafe {
            core::arch::asm!("ssub8 {r}, {a}, {b}", "sel {r}, {a}, {b}", r = out(reg) r,
                a = in(reg) a, b = in(reg) b, options(nomem, nostack));
        }
        r
    }
    #[cfg(not(all(target_arch = "arm", target_feature = "dsp")))]
    {
        let (a, b) = (a.to_le_bytes(), b.to_le_bytes());
        u32::from_le_bytes(core::array::from_fn(|i| (a[i] as i8).max(b[i] as i8) as u8))
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
        assert_eq!(smmulr(1 << 30, 3), 1);
        assert_eq!(smmulr(i32::MIN, i32::MIN), 1 << 30);
        assert_eq!(smmulr(-(1 << 30), 1), 0);
        assert_eq!(smmulr(-(1 << 30), 3), -1);
        assert_eq!(smmul(-1, 1), -1);
        let (a, b) = (u32::from_le_bytes([0x80, 0x7f, 0xff, 0x00]), 0x0180_0100);
        // Lanes -128/0, 127/1, -1/-128, 0/1.
        assert_eq!(max_s8x4(a, b).to_le_bytes(), [0x00, 0x7f, 0xff, 0x01]);
        assert_eq!(smmul(i32::MAX, i32::MAX), (1 << 30) - 1);
    }
}
