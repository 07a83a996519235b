//! Learning rate per epoch.
//!
//! `lr_at(base_lr, epoch)` is the rate used during `epoch` (0-based), in PyTorch's closed
//! forms, evaluated in f64 and rounded to f32 once:
//!
//! ```text
//! constant: base_lr
//! step:     base_lr * gamma^(epoch / step_size)                 (integer division)
//! cosine:   eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / t_max)) / 2
//! ```
//!
//! Past `t_max` the cosine closed form rises again, as PyTorch's `CosineAnnealingLR` does;
//! the recipes stop at `t_max`.

use serde::{Deserialize, Serialize};

use crate::error::{check, ConfigError};
use crate::pow_u64;

/// How the learning rate changes from epoch to epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Schedule {
    /// The base rate throughout (recipe "original").
    #[default]
    Constant,
    /// Multiply by `gamma` every `step_size` epochs (PyTorch's `StepLR`).
    Step { step_size: usize, gamma: f32 },
    /// Half a cosine from the base rate at epoch 0 to `eta_min` at epoch `t_max`
    /// (PyTorch's `CosineAnnealingLR`; recipe v2 uses `t_max = 150`, `eta_min = 3e-5`).
    Cosine { t_max: usize, eta_min: f32 },
}

impl Schedule {
    /// The learning rate used during `epoch` (0-based).
    ///
    /// # Panics
    /// If `step_size` or `t_max` is 0 ([`Schedule::validate`] rejects both).
    pub fn lr_at(&self, base_lr: f32, epoch: usize) -> f32 {
        let base = f64::from(base_lr);
        match *self {
            Schedule::Constant => base_lr,
            Schedule::Step { step_size, gamma } => {
                assert!(step_size > 0, "schedule: step_size must be at least 1");
                let n_decays = (epoch / step_size) as u64;
                (base * pow_u64(f64::from(gamma), n_decays)) as f32
            }
            Schedule::Cosine { t_max, eta_min } => {
                assert!(t_max > 0, "schedule: t_max must be at least 1");
                let eta_min = f64::from(eta_min);
                let phase = std::f64::consts::PI * epoch as f64 / t_max as f64;
                (eta_min + (base - eta_min) * (1.0 + phase.cos()) / 2.0) as f32
            }
        }
    }

    /// Rejects a zero period and non-finite or negative rates.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match *self {
            Schedule::Constant => Ok(()),
            Schedule::Step { step_size, gamma } => {
                check(step_size > 0, "schedule", "step_size", ">= 1", step_size)?;
                let ok = gamma.is_finite() && gamma >= 0.0;
                check(ok, "schedule", "gamma", "finite and >= 0", gamma)
            }
            Schedule::Cosine { t_max, eta_min } => {
                check(t_max > 0, "schedule", "t_max", ">= 1", t_max)?;
                let ok = eta_min.is_finite() && eta_min >= 0.0;
                check(ok, "schedule", "eta_min", "finite and >= 0", eta_min)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_is_the_default_and_never_changes() {
        assert_eq!(Schedule::default(), Schedule::Constant);
        for epoch in [0, 1, 149, 10_000] {
            assert_eq!(Schedule::Constant.lr_at(1e-3, epoch), 1e-3);
        }
    }

    #[test]
    fn validate_rejects_zero_periods() {
        let step = Schedule::Step {
            step_size: 0,
            gamma: 0.1,
        };
        assert_eq!(step.validate().unwrap_err().field, "step_size");
        let cosine = Schedule::Cosine {
            t_max: 0,
            eta_min: 0.0,
        };
        assert_eq!(cosine.validate().unwrap_err().field, "t_max");
        let cosine = Schedule::Cosine {
            t_max: 150,
            eta_min: -1.0,
        };
        assert_eq!(cosine.validate().unwrap_err().field, "eta_min");
        assert_eq!(
            Schedule::Cosine {
                t_max: 150,
                eta_min: 3e-5
            }
            .validate(),
            Ok(())
        );
    }

    #[test]
    fn reads_tagged_toml() {
        let cosine: Schedule =
            toml::from_str("kind = \"cosine\"\nt_max = 150\neta_min = 3e-5").unwrap();
        assert_eq!(
            cosine,
            Schedule::Cosine {
                t_max: 150,
                eta_min: 3e-5
            }
        );
        let constant: Schedule = toml::from_str("kind = \"constant\"").unwrap();
        assert_eq!(constant, Schedule::Constant);
        let unknown =
            toml::from_str::<Schedule>("kind = \"step\"\nstep_size = 3\ngamma = 0.5\nx = 1");
        assert!(unknown.is_err());
    }
}
