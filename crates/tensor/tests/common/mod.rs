//! Helpers shared by the tensor crate's test files.

use scratchnet_tensor::Tensor;

/// A deterministic tensor of `shape` whose values run over 101 levels in [-50, 50]·`scale`
/// in a scrambled order (`offset` shifts it), so that neighbouring values differ.
pub fn ramp(shape: &[usize], scale: f32, offset: usize) -> Tensor {
    let n: usize = shape.iter().product();
    let data = (0..n)
        .map(|i| (((i + offset) * 37 % 101) as f32 - 50.0) * scale)
        .collect();
    Tensor::from_vec(shape, data)
}
