//! The 8-lane f32 vectors the lanes convolution computes with, and the run-time choice of
//! their code path. With `gemm.rs`, the only place with `unsafe`.
//!
//! A kernel is written once, generic over `Simd`: a token type whose methods are the few
//! vector operations the kernels use. `Portable` does them lane by lane on `[f32; 8]`, on
//! every CPU. On x86-64, `Avx2Fma` does them on one 256-bit register; a token exists only
//! where `Avx2Fma::detect` found AVX2 and FMA, so its operations are safe to call. Each lane
//! of either does the same IEEE operations (`mul_add` is one fused multiply-add with one
//! rounding on both), so both give the same bits. The register type is what keeps the
//! compiler honest: with plain arrays it kept a kernel's accumulators in registers in one
//! build and spilled them on every step in the next, after an unrelated change.
//!
//! `simd_kernel!` writes a kernel's entry point: it calls the generic body with the best
//! token this CPU has, compiled with that token's target features (and with AVX-512's 32
//! registers where the CPU has them, for kernels whose tiles need them).

/// Values per vector.
pub const WIDTH: usize = 8;

/// The vector operations of the kernels, on `Self::V`.
pub trait Simd: Copy {
    type V: Copy;
    fn splat(self, x: f32) -> Self::V;
    /// `splat(*x)`, as one broadcast from memory.
    fn splat_from(self, x: &f32) -> Self::V {
        self.splat(*x)
    }
    fn load(self, v: &[f32; WIDTH]) -> Self::V;
    fn store(self, v: Self::V) -> [f32; WIDTH];
    /// `a · b + c`, each lane rounded once.
    fn mul_add(self, a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// The 8 x 8 transpose: lane l of `out[i]` is lane i of `rows[l]`.
    fn transpose(self, rows: [Self::V; WIDTH]) -> [Self::V; WIDTH];
}

/// Lane by lane, on any CPU.
#[derive(Clone, Copy, Debug)]
pub struct Portable;

impl Simd for Portable {
    type V = [f32; WIDTH];

    #[inline(always)]
    fn splat(self, x: f32) -> Self::V {
        [x; WIDTH]
    }

    #[inline(always)]
    fn load(self, v: &[f32; WIDTH]) -> Self::V {
        *v
    }

    #[inline(always)]
    fn store(self, v: Self::V) -> [f32; WIDTH] {
        v
    }

    #[inline(always)]
    fn mul_add(self, a: Self::V, b: Self::V, c: Self::V) -> Self::V {
        std::array::from_fn(|l| a[l].mul_add(b[l], c[l]))
    }

    #[inline(always)]
    fn transpose(self, rows: [Self::V; WIDTH]) -> [Self::V; WIDTH] {
        std::array::from_fn(|i| std::array::from_fn(|l| rows[l][i]))
    }
}

#[cfg(target_arch = "x86_64")]
pub use x86::Avx2Fma;

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod x86 {
    use std::arch::x86_64::{
        __m256, _mm256_broadcast_ss, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_permute2f128_ps,
        _mm256_set1_ps, _mm256_shuffle_ps, _mm256_storeu_ps, _mm256_unpackhi_ps,
        _mm256_unpacklo_ps,
    };

    use super::{Simd, WIDTH};

    /// Proof that this CPU has AVX2 and FMA: only `detect` makes one.
    #[derive(Clone, Copy, Debug)]
    pub struct Avx2Fma(());

    impl Avx2Fma {
        pub fn detect() -> Option<Avx2Fma> {
            let found = std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma");
            found.then_some(Avx2Fma(()))
        }

        /// Whether the CPU also has AVX-512 (F and VL): 32 vector registers instead of 16.
        pub fn has_avx512(self) -> bool {
            std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512vl")
        }
    }

    // SAFETY (every block below): an `Avx2Fma` exists only after `detect` found AVX2 and
    // FMA on this CPU, so the AVX and FMA instructions these intrinsics compile to can run;
    // the loads and stores go through references to exactly 8 f32.
    impl Simd for Avx2Fma {
        type V = __m256;

        #[inline(always)]
        fn splat(self, x: f32) -> __m256 {
            unsafe { _mm256_set1_ps(x) }
        }

        #[inline(always)]
        fn splat_from(self, x: &f32) -> __m256 {
            unsafe { _mm256_broadcast_ss(x) }
        }

        #[inline(always)]
        fn load(self, v: &[f32; WIDTH]) -> __m256 {
            unsafe { _mm256_loadu_ps(v.as_ptr()) }
        }

        #[inline(always)]
        fn store(self, v: __m256) -> [f32; WIDTH] {
            let mut out = [0.0f32; WIDTH];
            unsafe { _mm256_storeu_ps(out.as_mut_ptr(), v) };
            out
        }

        #[inline(always)]
        fn mul_add(self, a: __m256, b: __m256, c: __m256) -> __m256 {
            unsafe { _mm256_fmadd_ps(a, b, c) }
        }

        /// In three rounds of shuffles: pairs of rows interleaved (unpack), then pairs of
        /// pairs (shuffle), then the 128-bit halves swapped across (permute).
        #[inline(always)]
        fn transpose(self, rows: [__m256; WIDTH]) -> [__m256; WIDTH] {
            let [r0, r1, r2, r3, r4, r5, r6, r7] = rows;
            unsafe {
                // t0 = (r0[0], r1[0], r0[1], r1[1] | r0[4], r1[4], r0[5], r1[5]), and so on
                let (t0, t1) = (_mm256_unpacklo_ps(r0, r1), _mm256_unpackhi_ps(r0, r1));
                let (t2, t3) = (_mm256_unpacklo_ps(r2, r3), _mm256_unpackhi_ps(r2, r3));
                let (t4, t5) = (_mm256_unpacklo_ps(r4, r5), _mm256_unpackhi_ps(r4, r5));
                let (t6, t7) = (_mm256_unpacklo_ps(r6, r7), _mm256_unpackhi_ps(r6, r7));
                // s0 = (r0[0], r1[0], r2[0], r3[0] | r0[4], r1[4], r2[4], r3[4]), and so on
                let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
                let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
                let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
                let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
                let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
                let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
                let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
                let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
                [
                    _mm256_permute2f128_ps::<0x20>(s0, s4),
                    _mm256_permute2f128_ps::<0x20>(s1, s5),
                    _mm256_permute2f128_ps::<0x20>(s2, s6),
                    _mm256_permute2f128_ps::<0x20>(s3, s7),
                    _mm256_permute2f128_ps::<0x31>(s0, s4),
                    _mm256_permute2f128_ps::<0x31>(s1, s5),
                    _mm256_permute2f128_ps::<0x31>(s2, s6),
                    _mm256_permute2f128_ps::<0x31>(s3, s7),
                ]
            }
        }
    }
}

/// `simd_kernel!(wide|narrow, fn name<const A: usize, ...>(arg: Type, ...) => body);` defines
/// `fn name` that calls `body::<S, A, ...>(simd, arg, ...)` with the best `Simd` of this CPU:
/// `Avx2Fma` in a function compiled for AVX2 and FMA (`wide`: for AVX-512 too, where the CPU
/// has it, whose 32 registers hold larger tiles), else `Portable`.
macro_rules! simd_kernel {
    ($width:ident, $vis:vis fn $name:ident<$(const $c:ident: usize),*>($($arg:ident: $ty:ty),* $(,)?) => $body:ident) => {
        $vis fn $name<$(const $c: usize),*>($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            if let Some(simd) = $crate::simd::Avx2Fma::detect() {
                #[target_feature(enable = "avx2,fma")]
                fn with_avx2<$(const $c: usize),*>(simd: $crate::simd::Avx2Fma, $($arg: $ty),*) {
                    $body::<_, $($c),*>(simd, $($arg),*)
                }
                #[target_feature(enable = "avx2,fma,avx512f,avx512vl")]
                fn with_avx512<$(const $c: usize),*>(simd: $crate::simd::Avx2Fma, $($arg: $ty),*) {
                    $body::<_, $($c),*>(simd, $($arg),*)
                }
                let wide = stringify!($width) == "wide" && simd.has_avx512();
                // SAFETY: `detect` found AVX2 and FMA, and `has_avx512` AVX-512 F and VL.
                #[allow(unsafe_code)]
                let done = unsafe {
                    if wide {
                        with_avx512::<$($c),*>(simd, $($arg),*)
                    } else {
                        with_avx2::<$($c),*>(simd, $($arg),*)
                    }
                };
                return done;
            }
            $body::<_, $($c),*>($crate::simd::Portable, $($arg),*)
        }
    };
}
pub(crate) use simd_kernel;

#[cfg(test)]
mod tests {
    use super::*;

    /// The same operations on both types, lane for lane, bit for bit.
    fn run<S: Simd>(s: S) -> [f32; WIDTH] {
        let a = s.load(&[1.1, -2.3, 3.7, 1e-8, 5.0, -6.5, 7.25, 8.0]);
        let b = s.splat(0.3);
        let d = s.splat_from(&-1.75);
        let c = s.load(&[0.1, 0.2, 0.3, 0.4, -0.5, 0.6, 0.7, f32::MAX]);
        s.store(s.mul_add(a, b, s.mul_add(d, c, a)))
    }

    #[test]
    fn transpose_swaps_rows_and_lanes_on_both_types() {
        fn run<S: Simd>(s: S) -> [[f32; WIDTH]; WIDTH] {
            let rows: [[f32; WIDTH]; WIDTH] =
                std::array::from_fn(|r| std::array::from_fn(|l| (10 * r + l) as f32));
            s.transpose(rows.map(|r| s.load(&r))).map(|v| s.store(v))
        }
        let portable = run(Portable);
        for (i, col) in portable.iter().enumerate() {
            for (l, &v) in col.iter().enumerate() {
                assert_eq!(v, (10 * l + i) as f32, "lane {l} of column {i}");
            }
        }
        #[cfg(target_arch = "x86_64")]
        if let Some(avx) = Avx2Fma::detect() {
            assert_eq!(run(avx), portable);
        }
    }

    #[test]
    fn the_register_vectors_give_the_bits_of_the_portable_ones() {
        let portable = run(Portable);
        #[cfg(target_arch = "x86_64")]
        if let Some(avx) = Avx2Fma::detect() {
            let avx = run(avx);
            for (p, a) in portable.iter().zip(&avx) {
                assert_eq!(p.to_bits(), a.to_bits());
            }
        }
    }
}
