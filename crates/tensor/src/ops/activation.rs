//! Element-wise activations; any shape in, the same shape out.

use multiversion::multiversion;
use rayon::prelude::*;

use crate::graph::{Backward, Grads, Graph, Var};
use crate::tensor::Tensor;

/// Elements handed to one task; fixed, so the split does not depend on the thread count.
const ELEMENTS_PER_TASK: usize = 1 << 14;

fn map(input: &Tensor, f: impl Fn(f32) -> f32 + Sync) -> Tensor {
    map_slices(input, |x, o| {
        o.iter_mut().zip(x).for_each(|(o, &x)| *o = f(x))
    })
}

/// A fresh tensor, filled piece by piece by `f(input piece, output piece)`.
fn map_slices(input: &Tensor, f: impl Fn(&[f32], &mut [f32]) + Sync) -> Tensor {
    let mut out = Tensor::zeros(input.shape());
    out.data_mut()
        .par_chunks_mut(ELEMENTS_PER_TASK)
        .zip(input.data().par_chunks(ELEMENTS_PER_TASK))
        .for_each(|(o, x)| f(x, o));
    out
}

fn zip_map(a: &Tensor, b: &Tensor, f: impl Fn(f32, f32) -> f32 + Sync) -> Tensor {
    assert_eq!(
        a.shape(),
        b.shape(),
        "element-wise op on shapes {:?} and {:?}",
        a.shape(),
        b.shape()
    );
    let mut out = Tensor::zeros(a.shape());
    out.data_mut()
        .par_chunks_mut(ELEMENTS_PER_TASK)
        .zip(a.data().par_chunks(ELEMENTS_PER_TASK))
        .zip(b.data().par_chunks(ELEMENTS_PER_TASK))
        .for_each(|((o, a), b)| {
            for ((o, &a), &b) in o.iter_mut().zip(a).zip(b) {
                *o = f(a, b);
            }
        });
    out
}

/// ln 2 split in two so that k·ln2 is exact in the high part (Cody and Waite's trick).
const LN2_HI: f32 = 0.693_145_75;
const LN2_LO: f32 = 1.428_606_8e-6;

/// 1.5·2²³: adding it to an f32 of magnitude below 2²² rounds it to an integer.
const ROUND_MAGIC: f32 = 12_582_912.0;

/// tanh(|x|) rounds to 1 in f32 from here on.
const TANH_SATURATES: f32 = 9.0;

/// e^y - 1 for y in [-2·TANH_SATURATES, 0], in plain f32 arithmetic that the compiler
/// vectorises. y = k·ln2 + r with |r| <= ln2/2, e^r - 1 by its Taylor series to r⁸/8!
/// (the first term left out is below 1e-9 relative), then e^y - 1 = 2^k·(e^r - 1) + (2^k - 1),
/// which has no cancellation: for k = 0 it is the series itself.
#[inline(always)]
fn expm1_nonpositive(y: f32) -> f32 {
    // Round y·log2(e) to the nearest integer k by adding 1.5·2²³, which pushes every
    // fraction bit out; k then sits in the low mantissa bits of `shifted`. Unlike `round`
    // this needs no libm call, and 2^k is built from those bits with integer vector ops.
    let shifted = y * std::f32::consts::LOG2_E + ROUND_MAGIC;
    let k = shifted - ROUND_MAGIC;
    let r = (y - k * LN2_HI) - k * LN2_LO;
    let mut p = 1.0 / 40320.0;
    for c in [
        1.0 / 5040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
    ] {
        p = p * r + c;
    }
    let em1_r = p * r;
    let k_bits = shifted.to_bits().wrapping_sub(ROUND_MAGIC.to_bits());
    let two_k = f32::from_bits(k_bits.wrapping_add(127) << 23);
    two_k * em1_r + (two_k - 1.0)
}

/// tanh(x) = -expm1(-2|x|) / (2 + expm1(-2|x|)), with the sign of x. Agrees with the f64
/// tanh to within 2e-7 everywhere (see `fast_tanh_is_within_a_few_ulp`), is the same on
/// every machine (no libm), and is several times faster than `f32::tanh`.
#[inline(always)]
pub fn tanh_scalar(x: f32) -> f32 {
    // Not `min`: that would turn a NaN into 9 and hide a diverged run.
    let a = if x.abs() > TANH_SATURATES {
        TANH_SATURATES
    } else {
        x.abs()
    };
    let e = expm1_nonpositive(-2.0 * a);
    (-e / (2.0 + e)).copysign(x)
}

/// y = tanh(x)
pub fn tanh_forward(input: &Tensor) -> Tensor {
    map_slices(input, tanh_slice)
}

/// y = tanh(x), overwriting x: `tanh_forward` for evaluation without a tape.
pub fn tanh_in_place(x: &mut Tensor) {
    x.data_mut()
        .par_chunks_mut(ELEMENTS_PER_TASK)
        .for_each(tanh_slice_in_place);
}

/// `tanh_scalar` over a slice in place, compiled as `tanh_slice` is.
#[multiversion(targets("x86_64+avx2"))]
fn tanh_slice_in_place(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = tanh_scalar(*v);
    }
}

/// `tanh_scalar` over a slice, also compiled for AVX2 (8 lanes instead of SSE2's 4), the
/// one that runs picked at start. The same bits either way: `tanh_scalar` multiplies and
/// adds separately, and the compiler never fuses the two on its own (FMA is not enabled
/// here in any case).
#[multiversion(targets("x86_64+avx2"))]
fn tanh_slice(x: &[f32], out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = tanh_scalar(v);
    }
}

/// The libm tanh, the readable twin of `tanh_forward`.
pub fn tanh_forward_naive(input: &Tensor) -> Tensor {
    map(input, f32::tanh)
}

/// dx = d_out · (1 - y²), from the forward output y; a fresh tensor.
pub fn tanh_backward(out: &Tensor, d_out: &Tensor) -> Tensor {
    zip_map(out, d_out, |y, go| go * (1.0 - y * y))
}

/// y = max(x, 0)
pub fn relu_forward(input: &Tensor) -> Tensor {
    map(input, |x| x.max(0.0))
}

/// dx = d_out where y > 0, else 0 (the subgradient at 0 is taken as 0, as PyTorch does).
pub fn relu_backward(out: &Tensor, d_out: &Tensor) -> Tensor {
    zip_map(out, d_out, |y, go| if y > 0.0 { go } else { 0.0 })
}

/// Both activations keep only their output: the input and the output are the same node
/// pair on the tape, so the output is read back from the tape's values.
struct ActivationBackward {
    input: Var,
    out: Var,
    name: &'static str,
    derivative: fn(&Tensor, &Tensor) -> Tensor,
}

impl Backward for ActivationBackward {
    fn name(&self) -> &'static str {
        self.name
    }

    fn backward(&self, values: &[Tensor], d_out: &Tensor, grads: &mut Grads<'_>) {
        grads.add(self.input, (self.derivative)(&values[self.out.0], d_out));
    }
}

impl Graph {
    fn activation(
        &mut self,
        input: Var,
        names: [&'static str; 2],
        forward: fn(&Tensor) -> Tensor,
        derivative: fn(&Tensor, &Tensor) -> Tensor,
    ) -> Var {
        let out = crate::profile::time(names[0], || forward(self.value(input)));
        let out_var = Var(self.len());
        let op = ActivationBackward {
            input,
            out: out_var,
            name: names[1],
            derivative,
        };
        self.push_op(out, &[input], op)
    }

    pub fn tanh(&mut self, input: Var) -> Var {
        self.activation(
            input,
            ["tanh.forward", "tanh.backward"],
            tanh_forward,
            tanh_backward,
        )
    }

    pub fn relu(&mut self, input: Var) -> Var {
        self.activation(
            input,
            ["relu.forward", "relu.backward"],
            relu_forward,
            relu_backward,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_tanh_is_within_a_few_ulp() {
        // Against the f64 tanh over [-12, 12] in steps of 1e-4 and around 0.
        let mut worst = 0.0f64;
        let mut x = -12.0f64;
        while x <= 12.0 {
            let got = tanh_scalar(x as f32) as f64;
            let want = (x as f32 as f64).tanh();
            worst = worst.max((got - want).abs() / want.abs().clamp(1e-3, 1.0));
            x += 1e-4;
        }
        assert!(worst < 4e-7, "worst scaled error {worst}");
        for x in [1e-30f32, 1e-10, 1e-5, -1e-3, 0.3466, 0.3467] {
            let (got, want) = (tanh_scalar(x) as f64, (x as f64).tanh());
            assert!(
                (got - want).abs() <= 2.5e-7 * want.abs(),
                "tanh({x}) = {got}, want {want}"
            );
        }
        assert_eq!(tanh_scalar(0.0), 0.0);
        assert_eq!(tanh_scalar(50.0), 1.0);
        assert_eq!(tanh_scalar(-50.0), -1.0);
        assert!(tanh_scalar(f32::NAN).is_nan());
    }

    #[test]
    fn the_vector_tanh_gives_the_bits_of_tanh_scalar() {
        // tanh_forward runs the AVX2 build of the loop where the CPU has it; tanh_scalar
        // here is the baseline build. A fused multiply-add would change the last bits.
        let x: Vec<f32> = (0..20_000)
            .map(|i| (i as f32 - 10_000.0) * 1.3e-3)
            .collect();
        let y = tanh_forward(&Tensor::from_vec(&[x.len()], x.clone()));
        for (&v, &got) in x.iter().zip(y.data()) {
            assert_eq!(got.to_bits(), tanh_scalar(v).to_bits(), "tanh({v})");
        }
    }

    #[test]
    fn fast_tanh_matches_its_libm_twin() {
        let x = Tensor::from_vec(&[5, 7], (0..35).map(|i| (i as f32 - 17.0) * 0.37).collect());
        let (fast, naive) = (tanh_forward(&x), tanh_forward_naive(&x));
        for (a, b) in fast.data().iter().zip(naive.data()) {
            assert!((a - b).abs() < 3e-7, "{a} vs {b}");
        }
    }
}
