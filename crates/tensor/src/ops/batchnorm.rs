//! Batch normalisation over the channels of an NCHW tensor, as PyTorch's `BatchNorm2d`.
//!
//! Shapes: N batch, C channels, H/W height and width; `[N, C, H, W] -> [N, C, H, W]`.
//! In training, each channel is normalised with the mean and biased variance of its
//! M = N·H·W values, and the running estimates move towards the batch's mean and
//! unbiased variance by `momentum`. In evaluation the running estimates are used.

use multiversion::multiversion;
use rayon::prelude::*;

use crate::graph::{Backward, Grads, Graph, Var};
use crate::ops::activation::tanh_scalar;
use crate::tensor::Tensor;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNormConfig {
    pub momentum: f32,
    pub eps: f32,
}

impl Default for BatchNormConfig {
    /// PyTorch's defaults.
    fn default() -> Self {
        BatchNormConfig {
            momentum: 0.1,
            eps: 1e-5,
        }
    }
}

/// The running estimates a batch-norm layer keeps between batches.
#[derive(Clone, Debug, PartialEq)]
pub struct RunningStats {
    pub mean: Vec<f32>,
    pub var: Vec<f32>,
    /// Training batches seen so far (PyTorch's `num_batches_tracked`).
    pub n_batches: i64,
}

impl RunningStats {
    /// Mean 0 and variance 1, as PyTorch starts.
    pub fn new(n_channels: usize) -> RunningStats {
        RunningStats {
            mean: vec![0.0; n_channels],
            var: vec![1.0; n_channels],
            n_batches: 0,
        }
    }
}

/// What the backward pass needs besides the input: each channel's mean and 1/σ, from
/// which it recomputes x̂ = (x - μ)/σ rather than keep a copy of the activations.
pub struct BatchNormSaved {
    pub mean: Vec<f32>,
    pub inv_std: Vec<f32>,
    /// Whether batch statistics were used (training) or the running ones (evaluation).
    pub training: bool,
}

pub struct BatchNormGrads {
    pub d_input: Tensor,
    pub d_gamma: Tensor,
    pub d_beta: Tensor,
}

/// Lanes of the partial sums: independent accumulators the compiler can keep in one
/// vector register. Their number is fixed, so the summation order is too.
const LANES: usize = 8;

/// Σ f(x) over a slice in f32, in `LANES` interleaved partial sums added at the end.
fn lane_sum(values: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = values.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a += f(v);
        }
    }
    for (a, &v) in acc.iter_mut().zip(tail) {
        *a += f(v);
    }
    acc.iter().sum()
}

/// Σ a·f(b) in f32 lanes, as `lane_sum`.
fn lane_dot(a: &[f32], b: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (chunks_a, chunks_b) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (tail_a, tail_b) = (chunks_a.remainder(), chunks_b.remainder());
    for (ca, cb) in chunks_a.zip(chunks_b) {
        for ((s, &x), &y) in acc.iter_mut().zip(ca).zip(cb) {
            *s += x * f(y);
        }
    }
    for ((s, &x), &y) in acc.iter_mut().zip(tail_a).zip(tail_b) {
        *s += x * f(y);
    }
    acc.iter().sum()
}

/// Per-channel mean and biased variance, channels in parallel: two passes, each plane
/// summed in f32 lanes and the planes added in f64.
fn channel_stats(input: &Tensor) -> Vec<(f64, f64)> {
    let [n, c, h, w] = input.dims4();
    let plane = h * w;
    let x = input.data();
    let m = (n * plane) as f64;
    (0..c)
        .into_par_iter()
        .map(|c_idx| {
            let planes = || (0..n).map(move |n_idx| &x[(n_idx * c + c_idx) * plane..][..plane]);
            let sum: f64 = planes().map(|p| lane_sum(p, |v| v) as f64).sum();
            let mean = sum / m;
            let mean32 = mean as f32;
            let sq: f64 = planes()
                .map(|p| lane_sum(p, |v| (v - mean32) * (v - mean32)) as f64)
                .sum();
            (mean, sq / m)
        })
        .collect()
}

/// Panics unless gamma, beta and the running statistics have one entry per channel of
/// `input` `[N, C, H, W]`.
#[track_caller]
fn check_channels(input: &Tensor, gamma: &Tensor, beta: &Tensor, running: &RunningStats) {
    let c = input.dims4()[1];
    assert!(
        gamma.shape() == [c] && beta.shape() == [c] && running.mean.len() == c,
        "batch_norm2d: input {:?} has {c} channels, gamma {:?}, beta {:?}, running {}",
        input.shape(),
        gamma.shape(),
        beta.shape(),
        running.mean.len()
    );
}

/// Normalises `input`, updating `running` in training. Overwrites nothing of the caller's
/// but `running`.
pub fn batch_norm2d_forward(
    input: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running: &mut RunningStats,
    cfg: BatchNormConfig,
    training: bool,
) -> (Tensor, BatchNormSaved) {
    let [n, c, h, w] = input.dims4();
    check_channels(input, gamma, beta, running);
    let plane = h * w;
    let (mean, inv_std): (Vec<f32>, Vec<f32>) = if training {
        let m = n * plane;
        assert!(
            m > 1,
            "batch_norm2d in training needs more than one value per channel"
        );
        let stats = channel_stats(input);
        let unbias = m as f64 / (m as f64 - 1.0);
        let mom = cfg.momentum as f64;
        for (c_idx, &(mean, var)) in stats.iter().enumerate() {
            let rm = &mut running.mean[c_idx];
            *rm = ((1.0 - mom) * *rm as f64 + mom * mean) as f32;
            let rv = &mut running.var[c_idx];
            *rv = ((1.0 - mom) * *rv as f64 + mom * var * unbias) as f32;
        }
        running.n_batches += 1;
        stats
            .iter()
            .map(|&(mean, var)| (mean as f32, (1.0 / (var + cfg.eps as f64).sqrt()) as f32))
            .unzip()
    } else {
        let inv_std = running
            .var
            .iter()
            .map(|&v| 1.0 / (v + cfg.eps).sqrt())
            .collect();
        (running.mean.clone(), inv_std)
    };

    let mut out = Tensor::zeros(input.shape());
    out.data_mut()
        .par_chunks_mut(c * plane)
        .zip(input.data().par_chunks(c * plane))
        .for_each(|(out_image, image)| {
            for c_idx in 0..c {
                let range = c_idx * plane..(c_idx + 1) * plane;
                let (g, b) = (gamma.data()[c_idx], beta.data()[c_idx]);
                let (mu, s) = (mean[c_idx], inv_std[c_idx]);
                for (o, &x) in out_image[range.clone()].iter_mut().zip(&image[range]) {
                    *o = normalise(x, [g, mu, s, b]);
                }
            }
        });
    let saved = BatchNormSaved {
        mean,
        inv_std,
        training,
    };
    (out, saved)
}

/// What `batch_norm2d_eval_in_place` applies after the normalisation, in the same pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThenApply {
    Nothing,
    Tanh,
    Relu,
}

/// `batch_norm2d_forward` in evaluation mode (running statistics), overwriting its input,
/// and then `then` on each value in the same pass: evaluation without a tape, where the
/// input is dropped anyway, reads and writes the batch once instead of three times. Each
/// value goes through the same operations as in `batch_norm2d_forward` and `tanh_forward`
/// (or `relu_forward`), so the bits are the same.
pub fn batch_norm2d_eval_in_place(
    x: &mut Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running: &RunningStats,
    cfg: BatchNormConfig,
    then: ThenApply,
) {
    let [_, c, h, w] = x.dims4();
    check_channels(x, gamma, beta, running);
    let plane = h * w;
    let inv_std: Vec<f32> = running
        .var
        .iter()
        .map(|&v| 1.0 / (v + cfg.eps).sqrt())
        .collect();
    x.data_mut().par_chunks_mut(c * plane).for_each(|image| {
        for (c_idx, channel) in image.chunks_mut(plane).enumerate() {
            let (g, b) = (gamma.data()[c_idx], beta.data()[c_idx]);
            let (mu, s) = (running.mean[c_idx], inv_std[c_idx]);
            normalise_in_place(channel, [g, mu, s, b], then);
        }
    });
}

/// y = g · ((x - mu) · s) + b: one value of the batch norm, in the one order both passes
/// use (so that they give the same bits).
#[inline(always)]
fn normalise(x: f32, [g, mu, s, b]: [f32; 4]) -> f32 {
    g * ((x - mu) * s) + b
}

/// `v = then(normalise(v))` over a channel, also compiled for AVX2 (without FMA:
/// the multiplies and adds stay separate, so the bits are the baseline build's).
#[multiversion(targets("x86_64+avx2"))]
fn normalise_in_place(channel: &mut [f32], gmsb: [f32; 4], then: ThenApply) {
    match then {
        ThenApply::Nothing => channel.iter_mut().for_each(|v| *v = normalise(*v, gmsb)),
        ThenApply::Tanh => channel
            .iter_mut()
            .for_each(|v| *v = tanh_scalar(normalise(*v, gmsb))),
        ThenApply::Relu => channel
            .iter_mut()
            .for_each(|v| *v = normalise(*v, gmsb).max(0.0)),
    }
}

/// Gradients of `batch_norm2d_forward`, into fresh tensors.
pub fn batch_norm2d_backward(
    saved: &BatchNormSaved,
    input: &Tensor,
    gamma: &Tensor,
    d_out: &Tensor,
) -> BatchNormGrads {
    let [n, c, h, w] = d_out.dims4();
    let plane = h * w;
    let m = (n * plane) as f32;
    let x = input.data();
    let g = d_out.data();

    // dγ_c = Σ d_out · x̂ and dβ_c = Σ d_out over the channel's M values: each plane in f32
    // lanes, the planes added in f64.
    let sums: Vec<(f64, f64)> = (0..c)
        .into_par_iter()
        .map(|c_idx| {
            let mut d_gamma = 0.0f64;
            let mut d_beta = 0.0f64;
            for n_idx in 0..n {
                let range = (n_idx * c + c_idx) * plane..(n_idx * c + c_idx + 1) * plane;
                let (go, x_plane) = (&g[range.clone()], &x[range]);
                let (mu, s) = (saved.mean[c_idx], saved.inv_std[c_idx]);
                d_gamma += lane_dot(go, x_plane, |v| (v - mu) * s) as f64;
                d_beta += lane_sum(go, |v| v) as f64;
            }
            (d_gamma, d_beta)
        })
        .collect();
    let d_gamma: Vec<f32> = sums.iter().map(|s| s.0 as f32).collect();
    let d_beta: Vec<f32> = sums.iter().map(|s| s.1 as f32).collect();

    let mut d_input = Tensor::zeros(d_out.shape());
    d_input
        .data_mut()
        .par_chunks_mut(c * plane)
        .enumerate()
        .for_each(|(n_idx, d_image)| {
            for c_idx in 0..c {
                let base = n_idx * c * plane + c_idx * plane;
                let scale = gamma.data()[c_idx] * saved.inv_std[c_idx];
                let dst = &mut d_image[c_idx * plane..(c_idx + 1) * plane];
                let (go, x_plane) = (&g[base..base + plane], &x[base..base + plane]);
                if saved.training {
                    // dx = γ/σ · (d_out - mean(d_out) - x̂ · mean(d_out · x̂))
                    let (mean_dg, mean_db) = (d_gamma[c_idx] / m, d_beta[c_idx] / m);
                    let (mu, s) = (saved.mean[c_idx], saved.inv_std[c_idx]);
                    for ((d, &go), &x) in dst.iter_mut().zip(go).zip(x_plane) {
                        *d = scale * (go - mean_db - (x - mu) * s * mean_dg);
                    }
                } else {
                    // The running statistics are constants: dx = γ/σ · d_out.
                    for (d, &go) in dst.iter_mut().zip(go) {
                        *d = scale * go;
                    }
                }
            }
        });
    BatchNormGrads {
        d_input,
        d_gamma: Tensor::from_vec(&[c], d_gamma),
        d_beta: Tensor::from_vec(&[c], d_beta),
    }
}

struct BatchNormBackward {
    input: Var,
    gamma: Var,
    beta: Var,
    saved: BatchNormSaved,
}

impl Backward for BatchNormBackward {
    fn name(&self) -> &'static str {
        "batch_norm2d.backward"
    }

    fn backward(&self, values: &[Tensor], d_out: &Tensor, grads: &mut Grads<'_>) {
        let (input, gamma) = (&values[self.input.0], &values[self.gamma.0]);
        let g = batch_norm2d_backward(&self.saved, input, gamma, d_out);
        grads.add(self.input, g.d_input);
        grads.add(self.gamma, g.d_gamma);
        grads.add(self.beta, g.d_beta);
    }
}

impl Graph {
    /// `[N, C, H, W] -> [N, C, H, W]`; updates `running` when `training`.
    pub fn batch_norm2d(
        &mut self,
        input: Var,
        gamma: Var,
        beta: Var,
        running: &mut RunningStats,
        cfg: BatchNormConfig,
        training: bool,
    ) -> Var {
        let (out, saved) = crate::profile::time("batch_norm2d.forward", || {
            batch_norm2d_forward(
                self.value(input),
                self.value(gamma),
                self.value(beta),
                running,
                cfg,
                training,
            )
        });
        let op = BatchNormBackward {
            input,
            gamma,
            beta,
            saved,
        };
        self.push_op(out, &[input, gamma, beta], op)
    }
}
