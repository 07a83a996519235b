//! The ops of the network, one file per op family, forward and backward side by side.

pub mod activation;
pub mod batchnorm;
pub mod conv;
pub mod linear;
pub mod loss;
pub mod pool;
pub mod shape;
