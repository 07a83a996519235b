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
    fn load(self, v: &[f32; WIDTH]) -> Self::V;
    fn store(self, v: Self::V) -> [f32; WIDTH];
    /// `a · b + c`, each lane rounded once.
    fn mul_add(self, a: Self::V, b: Self::V, c: Self::V) -> Self::V;
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
}

#[cfg(target_arch = "x86_64")]
pub use x86::Avx2Fma;

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod x86 {
    use std::arch::x86_64::{
        __m256, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_set1_ps, _mm256_storeu_ps,
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
        let c = s.load(&[0.1, 0.2, 0.3, 0.4, -0.5, 0.6, 0.7, f32::MAX]);
        s.store(s.mul_add(a, b, s.mul_add(b, c, a)))
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
