//! From one CIFAR image of bytes to the f32 input of the network, with the training-time
//! augmentation of recipe v2 (RECIPES.md).
//!
//! Shape letters: C channels (3), H height (32), W width (32). An image is `[C, H, W]`
//! in row-major order, height before width: the 1024 red bytes, then the 1024 green, then
//! the 1024 blue. Every function here maps `[C, H, W]` bytes to `[C, H, W]` f32s.
//!
//! Evaluation data goes through [`to_f32`]: scale to [0, 1], then normalise. Training data
//! goes through [`draw`] and [`augment_to_f32`]: pad the raw bytes, crop 32x32, maybe flip
//! horizontally, then scale and normalise. The random choices of one sample are a [`Draw`]
//! so that the caller decides which random stream each sample reads (one keyed stream per
//! epoch and sample index keeps a run independent of the thread count).
//!
//! Nothing here allocates, prints or spawns threads; the caller parallelises over images.
#![forbid(unsafe_code)]

mod config;
mod draw;
mod pixels;

pub use config::{AugmentConfig, ConfigError, Normalize, PadMode};
pub use draw::{draw, Draw};
pub use pixels::{
    augment_to_f32, augment_to_f32_naive, reflect_index, to_f32, to_f32_naive, Augmenter,
};

/// Channels of an image (red, green, blue).
pub const C: usize = 3;

/// Rows of an image.
pub const H: usize = 32;

/// Columns of an image.
pub const W: usize = 32;

/// Values in one image: `C * H * W` bytes in, as many f32s out.
pub const IMAGE_LEN: usize = C * H * W;
