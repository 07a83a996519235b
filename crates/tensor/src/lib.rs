//! scratchnet's core: an f32 tensor, a reverse-mode autograd tape and the ops of a small
//! convolutional network, each op's forward and backward side by side.

#![deny(unsafe_code)]

pub mod gemm;
pub mod graph;
pub mod nn;
pub mod ops;
pub mod parallel;
pub mod profile;
pub mod rng;
pub mod simd;
pub mod tensor;

pub use graph::{Graph, Var};
pub use tensor::Tensor;
