//! Optimiser, learning-rate schedule, weight averaging and model selection for training
//! (RECIPES.md).
//!
//! Parameters are flat f32 slices, one per parameter tensor, always passed in the same
//! order; optimiser and averaging state is kept per tensor in that order. Every update
//! runs element by element in a fixed order, so a run is bitwise reproducible. Nothing
//! here prints or spawns threads.
//!
//! - [`Adam`]: PyTorch's `torch.optim.Adam` with L2 weight decay added to the gradient.
//! - [`Schedule`]: the learning rate of each epoch (constant, step, cosine annealing).
//! - [`Ema`]: exponential moving average of the weights.
//! - [`Selector`]: which network to keep after each epoch, and when to stop.
#![forbid(unsafe_code)]

mod adam;
mod ema;
mod error;
mod schedule;
mod select;

pub use adam::{Adam, AdamConfig};
pub use ema::Ema;
pub use error::ConfigError;
pub use schedule::Schedule;
pub use select::{Decision, Selected, SelectionConfig, Selector};

/// `base^exp` by repeated squaring. Plain IEEE multiplications give the same bits on
/// every platform, which `powi` (left to LLVM) and `powf` (left to the C library) do not
/// promise.
pub(crate) fn pow_u64(base: f64, exp: u64) -> f64 {
    let mut result = 1.0;
    let mut square = base;
    let mut rest = exp;
    while rest > 0 {
        if rest & 1 == 1 {
            result *= square;
        }
        square *= square;
        rest >>= 1;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::pow_u64;

    #[test]
    fn pow_u64_small_cases() {
        assert_eq!(pow_u64(0.9, 0), 1.0);
        assert_eq!(pow_u64(0.5, 3), 0.125);
        assert_eq!(pow_u64(2.0, 10), 1024.0);
        // 0.9^2 rounds once either way.
        assert_eq!(pow_u64(0.9, 2), 0.9 * 0.9);
        let relative = (pow_u64(0.999, 10_000) / 0.999f64.powf(10_000.0) - 1.0).abs();
        assert!(relative < 1e-12, "{relative}");
    }
}
