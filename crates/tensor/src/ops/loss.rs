//! Softmax cross-entropy with optional label smoothing.
//!
//! Shapes: N batch, K classes; logits `[N, K]`, labels `[N]` -> a scalar, the mean loss.
//! With smoothing ε the target is (1 - ε) on the true class plus ε / K on every class,
//! and loss_n = -Σ_k target_k · log softmax(logits_n)_k (PyTorch's `label_smoothing`).

use crate::graph::{Backward, Grads, Graph, Var};
use crate::tensor::Tensor;

/// What a forward pass yields besides the mean loss.
pub struct CrossEntropyOut {
    pub mean_loss: f32,
    /// loss_n of every sample.
    pub losses: Vec<f32>,
    /// softmax(logits), `[N, K]`: the backward pass needs them.
    pub probs: Tensor,
}

/// log softmax by subtracting the row maximum first, so exp never overflows.
pub fn cross_entropy_forward(logits: &Tensor, labels: &[usize], smoothing: f32) -> CrossEntropyOut {
    let [n, k] = logits.dims2();
    assert_eq!(
        labels.len(),
        n,
        "cross_entropy: {n} rows of logits, {} labels",
        labels.len()
    );
    let mut probs = Tensor::zeros(&[n, k]);
    let mut losses = Vec::with_capacity(n);
    for ((row, p), &label) in logits
        .data()
        .chunks(k)
        .zip(probs.data_mut().chunks_mut(k))
        .zip(labels)
    {
        assert!(label < k, "cross_entropy: label {label} with {k} classes");
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum_exp: f64 = row.iter().map(|&z| ((z - max) as f64).exp()).sum();
        let log_sum = sum_exp.ln();
        let mut loss = 0.0f64;
        for (j, (&z, p)) in row.iter().zip(p.iter_mut()).enumerate() {
            let log_p = (z - max) as f64 - log_sum;
            *p = log_p.exp() as f32;
            let target = smoothing as f64 / k as f64
                + if j == label {
                    1.0 - smoothing as f64
                } else {
                    0.0
                };
            loss -= target * log_p;
        }
        losses.push(loss as f32);
    }
    let mean_loss = (losses.iter().map(|&l| l as f64).sum::<f64>() / n as f64) as f32;
    CrossEntropyOut {
        mean_loss,
        losses,
        probs,
    }
}

/// d logits = d_loss · (probs - target) / N; a fresh tensor.
pub fn cross_entropy_backward(
    probs: &Tensor,
    labels: &[usize],
    smoothing: f32,
    d_loss: f32,
) -> Tensor {
    let [n, k] = probs.dims2();
    let scale = d_loss / n as f32;
    let mut d_logits = probs.clone();
    for (row, &label) in d_logits.data_mut().chunks_mut(k).zip(labels) {
        for (j, d) in row.iter_mut().enumerate() {
            let target = smoothing / k as f32 + if j == label { 1.0 - smoothing } else { 0.0 };
            *d = (*d - target) * scale;
        }
    }
    d_logits
}

struct CrossEntropyBackward {
    logits: Var,
    labels: Vec<usize>,
    smoothing: f32,
    probs: Tensor,
}

impl Backward for CrossEntropyBackward {
    fn name(&self) -> &'static str {
        "cross_entropy.backward"
    }

    fn backward(&self, _values: &[Tensor], d_out: &Tensor, grads: &mut Grads<'_>) {
        let d_logits =
            cross_entropy_backward(&self.probs, &self.labels, self.smoothing, d_out.data()[0]);
        grads.add(self.logits, d_logits);
    }
}

impl Graph {
    /// The mean loss as a `[1]` value, and each sample's loss.
    pub fn cross_entropy(
        &mut self,
        logits: Var,
        labels: &[usize],
        smoothing: f32,
    ) -> (Var, Vec<f32>) {
        let out = crate::profile::time("cross_entropy.forward", || {
            cross_entropy_forward(self.value(logits), labels, smoothing)
        });
        let op = CrossEntropyBackward {
            logits,
            labels: labels.to_vec(),
            smoothing,
            probs: out.probs,
        };
        let loss = self.push_op(Tensor::from_vec(&[1], vec![out.mean_loss]), &[logits], op);
        (loss, out.losses)
    }
}

struct WeightedSumBackward {
    input: Var,
    weights: Tensor,
}

impl Backward for WeightedSumBackward {
    fn name(&self) -> &'static str {
        "weighted_sum.backward"
    }

    fn backward(&self, _values: &[Tensor], d_out: &Tensor, grads: &mut Grads<'_>) {
        let scale = d_out.data()[0];
        let d_input: Vec<f32> = self.weights.data().iter().map(|&w| w * scale).collect();
        grads.add(self.input, Tensor::from_vec(self.weights.shape(), d_input));
    }
}

impl Graph {
    /// Σ input · weights as a `[1]` value: projects any output onto a scalar, which is how
    /// the gradient checks seed an arbitrary d_out.
    pub fn weighted_sum(&mut self, input: Var, weights: Tensor) -> Var {
        let x = self.value(input);
        assert_eq!(x.shape(), weights.shape(), "weighted_sum: shapes differ");
        let total: f64 = x
            .data()
            .iter()
            .zip(weights.data())
            .map(|(&a, &b)| a as f64 * b as f64)
            .sum();
        let out = Tensor::from_vec(&[1], vec![total as f32]);
        self.push_op(out, &[input], WeightedSumBackward { input, weights })
    }
}
