//! Adam with L2 weight decay, as `torch.optim.Adam` (amsgrad and maximize off).
//!
//! One step, for every element of every parameter tensor, with t the step count after
//! the increment:
//!
//! ```text
//! g = grad + weight_decay * p          (L2 in the gradient, not decoupled AdamW)
//! m = beta1 * m + (1 - beta1) * g
//! v = beta2 * v + (1 - beta2) * g * g
//! step_size = lr / (1 - beta1^t)
//! denom = sqrt(v) / sqrt(1 - beta2^t) + eps
//! p = p - step_size * m / denom
//! ```
//!
//! The bias corrections are computed in f64 from t and rounded to f32 once per step, as
//! PyTorch computes them in Python floats and hands them to its f32 kernels; everything
//! per element is f32, in the order written above.
//!
//! The betas take part in those f64 scalars as the decimals the config wrote, not as
//! their f32 values: `0.999f32` is 0.99899995, so `1 - beta2` from it would be 1.0000467e-3,
//! 5e-5 off the 1e-3 that PyTorch gets from the Python float 0.999.

use serde::{Deserialize, Serialize};

use crate::error::{check, ConfigError};
use crate::pow_u64;

/// Adam's hyperparameters. The default is PyTorch's, without weight decay.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdamConfig {
    /// Base learning rate; the schedule scales it and passes the result to [`Adam::step`].
    pub lr: f32,
    /// Decay of the first moment (mean of the gradient).
    pub beta1: f32,
    /// Decay of the second moment (mean of the squared gradient).
    pub beta2: f32,
    /// Added to the denominator, after the bias correction.
    pub eps: f32,
    /// L2 penalty coefficient, added to the gradient as `weight_decay * p`.
    pub weight_decay: f32,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

impl AdamConfig {
    /// The ranges PyTorch's constructor accepts, plus finiteness.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let non_negative = |x: f32| x.is_finite() && x >= 0.0;
        let beta = |x: f32| (0.0..1.0).contains(&x);
        let finite_non_negative = "finite and >= 0";
        check(
            non_negative(self.lr),
            "adam",
            "lr",
            finite_non_negative,
            self.lr,
        )?;
        check(beta(self.beta1), "adam", "beta1", "in [0, 1)", self.beta1)?;
        check(beta(self.beta2), "adam", "beta2", "in [0, 1)", self.beta2)?;
        check(
            non_negative(self.eps),
            "adam",
            "eps",
            finite_non_negative,
            self.eps,
        )?;
        let wd = self.weight_decay;
        check(
            non_negative(wd),
            "adam",
            "weight_decay",
            finite_non_negative,
            wd,
        )
    }
}

/// Adam's state. The fields are public so that the trainer can checkpoint and restore
/// them; `m[i]` and `v[i]` belong to parameter tensor `i`.
#[derive(Clone, Debug, PartialEq)]
pub struct Adam {
    pub config: AdamConfig,
    /// Steps taken so far; the bias corrections use it after the increment.
    pub step: u64,
    /// First moments, one buffer per parameter tensor.
    pub m: Vec<Vec<f32>>,
    /// Second moments, one buffer per parameter tensor.
    pub v: Vec<Vec<f32>>,
}

impl Adam {
    /// Fresh state (zero moments, step 0) for tensors of the given lengths.
    pub fn new(config: AdamConfig, param_lens: &[usize]) -> Adam {
        let zeros = || param_lens.iter().map(|&len| vec![0.0; len]).collect();
        Adam {
            config,
            step: 0,
            m: zeros(),
            v: zeros(),
        }
    }

    /// One update of every parameter tensor with learning rate `lr` (the schedule's value
    /// for this epoch; `config.lr` is only the base it starts from).
    ///
    /// # Panics
    /// If the number of tensors or any tensor's length differs between `params`, `grads`
    /// and the state.
    #[track_caller]
    pub fn step(&mut self, lr: f32, params: &mut [&mut [f32]], grads: &[&[f32]]) {
        self.check_shapes(params, grads);
        self.step += 1;

        // 1. Per-step scalars, in f64 from the step count, then rounded to f32.
        let AdamConfig {
            beta1,
            beta2,
            eps,
            weight_decay,
            ..
        } = self.config;
        let beta1_written = as_written(beta1);
        let beta2_written = as_written(beta2);
        let bias_correction1 = 1.0 - pow_u64(beta1_written, self.step);
        let bias_correction2 = 1.0 - pow_u64(beta2_written, self.step);
        let step_size = (f64::from(lr) / bias_correction1) as f32;
        let bias_correction2_sqrt = bias_correction2.sqrt() as f32;
        let one_minus_beta1 = (1.0 - beta1_written) as f32;
        let one_minus_beta2 = (1.0 - beta2_written) as f32;

        // 2. Element by element, tensor by tensor.
        let state = self.m.iter_mut().zip(self.v.iter_mut());
        for ((param, grad), (m, v)) in params.iter_mut().zip(grads).zip(state) {
            for (((p, &grad), m), v) in param.iter_mut().zip(grad.iter()).zip(m).zip(v) {
                // PyTorch skips the decay term when it is 0, which matters for inf weights.
                let g = if weight_decay != 0.0 {
                    grad + weight_decay * *p
                } else {
                    grad
                };
                *m = beta1 * *m + one_minus_beta1 * g;
                *v = beta2 * *v + one_minus_beta2 * g * g;
                let denom = v.sqrt() / bias_correction2_sqrt + eps;
                *p -= step_size * *m / denom;
            }
        }
    }

    #[track_caller]
    fn check_shapes(&self, params: &[&mut [f32]], grads: &[&[f32]]) {
        let n_tensors = self.m.len();
        assert!(
            params.len() == n_tensors && grads.len() == n_tensors && self.v.len() == n_tensors,
            "adam: {} param tensors, {} grad tensors, state for {} (m) and {} (v)",
            params.len(),
            grads.len(),
            n_tensors,
            self.v.len()
        );
        for tensor_idx in 0..n_tensors {
            let lens = [
                params[tensor_idx].len(),
                grads[tensor_idx].len(),
                self.m[tensor_idx].len(),
                self.v[tensor_idx].len(),
            ];
            assert!(
                lens.iter().all(|&len| len == lens[0]),
                "adam: tensor {tensor_idx} has param len {}, grad len {}, m len {}, v len {}",
                lens[0],
                lens[1],
                lens[2],
                lens[3]
            );
        }
    }
}

/// The f64 of the shortest decimal that rounds to `x`, which is what a config file wrote
/// (`0.999` for `0.999f32`). Rust prints that decimal the same way on every platform.
fn as_written(x: f32) -> f64 {
    x.to_string().parse().expect("an f32 prints as a valid f64")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_minus_beta_uses_the_written_decimal() {
        assert_eq!(as_written(0.999), 0.999f64);
        assert_eq!(as_written(0.9), 0.9f64);
        assert_eq!((1.0 - as_written(0.999)) as f32, 1e-3f32);
        assert_eq!(as_written(f32::INFINITY), f64::INFINITY);
    }

    #[test]
    fn default_is_pytorch_default() {
        let cfg = AdamConfig::default();
        assert_eq!((cfg.lr, cfg.beta1, cfg.beta2), (1e-3, 0.9, 0.999));
        assert_eq!((cfg.eps, cfg.weight_decay), (1e-8, 0.0));
        assert_eq!(cfg.validate(), Ok(()));
    }

    #[test]
    fn validate_names_the_bad_field() {
        let cfg = AdamConfig {
            beta2: 1.0,
            ..AdamConfig::default()
        };
        let err = cfg.validate().unwrap_err();
        assert_eq!(err.field, "beta2");
        assert_eq!(err.to_string(), "adam.beta2 must be in [0, 1), found 1");
        let cfg = AdamConfig {
            weight_decay: -1e-3,
            ..AdamConfig::default()
        };
        assert_eq!(cfg.validate().unwrap_err().field, "weight_decay");
    }

    #[test]
    fn zero_gradient_leaves_parameters_and_counts_the_step() {
        let mut adam = Adam::new(AdamConfig::default(), &[3]);
        let mut p = [1.0, -2.0, 3.0];
        adam.step(1e-3, &mut [&mut p], &[&[0.0; 3]]);
        assert_eq!(p, [1.0, -2.0, 3.0]);
        assert_eq!(adam.step, 1);
    }

    #[test]
    fn same_inputs_give_same_bits() {
        let run = || {
            let cfg = AdamConfig {
                weight_decay: 5e-4,
                ..AdamConfig::default()
            };
            let mut adam = Adam::new(cfg, &[4, 2]);
            let mut a = [0.1, -0.2, 0.3, -0.4];
            let mut b = [1.5, -2.5];
            for step in 0..100 {
                let s = step as f32;
                let grad_a = [s.sin(), s.cos(), 0.01 * s, -0.5];
                let grad_b = [(0.3 * s).sin(), 1e-3];
                adam.step(1e-3, &mut [&mut a, &mut b], &[&grad_a, &grad_b]);
            }
            (a.map(f32::to_bits), b.map(f32::to_bits))
        };
        assert_eq!(run(), run());
    }

    #[test]
    #[should_panic(expected = "adam: tensor 1 has param len 2, grad len 3, m len 2, v len 2")]
    fn mismatched_lengths_panic_with_lengths() {
        let mut adam = Adam::new(AdamConfig::default(), &[1, 2]);
        let mut a = [0.0];
        let mut b = [0.0; 2];
        adam.step(1e-3, &mut [&mut a, &mut b], &[&[0.0], &[0.0; 3]]);
    }

    #[test]
    #[should_panic(expected = "adam: 1 param tensors, 2 grad tensors, state for 2 (m) and 2 (v)")]
    fn mismatched_tensor_counts_panic_with_counts() {
        let mut adam = Adam::new(AdamConfig::default(), &[1, 1]);
        let mut a = [0.0];
        adam.step(1e-3, &mut [&mut a], &[&[0.0], &[0.0]]);
    }
}
