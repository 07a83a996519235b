//! The data of a run: the split into training and validation images, the shuffled order
//! of an epoch, and turning a batch of byte images into an f32 tensor.
//!
//! Shapes: B batch, C = 3 channels, H = W = 32; a batch is `[B, C, H, W]`.

use std::path::Path;

use anyhow::{bail, Context, Result};
use rand::seq::SliceRandom;
use rayon::prelude::*;
use scratchnet_augment::{draw, AugmentConfig, Augmenter};
use scratchnet_cifar::{Dataset, IMAGE_BYTES};
use scratchnet_tensor::rng::{keyed_rng, Purpose};
use scratchnet_tensor::Tensor;

/// The training images and the held-out validation images.
#[derive(Debug)]
pub struct Split {
    pub train: Dataset,
    pub val: Dataset,
}

/// Validation is the last `val_size` records of the training batches; `train_limit` keeps
/// the first N of the rest.
pub fn split(all: Dataset, val_size: usize, train_limit: Option<usize>) -> Result<Split> {
    let n = all.len();
    if val_size == 0 || val_size >= n {
        bail!(
            "--val-size {val_size} must be between 1 and {} (the training set has {n} images)",
            n - 1
        );
    }
    let n_train = n - val_size;
    let limit = train_limit.unwrap_or(n_train);
    if limit == 0 || limit > n_train {
        bail!(
            "--train-limit {limit} must be between 1 and {n_train} (images left after validation)"
        );
    }
    let mut train = all;
    let val = train.split_off(n_train);
    train.truncate(limit);
    Ok(Split { train, val })
}

/// Loads the training batches from `dir` and splits them.
pub fn load_split(dir: &Path, val_size: usize, train_limit: Option<usize>) -> Result<Split> {
    let all = scratchnet_cifar::load_train(dir).context("loading the training batches")?;
    split(all, val_size, train_limit)
}

/// The order of the training samples in `epoch`: a Fisher-Yates shuffle drawn from the
/// stream (seed, Shuffle, epoch).
pub fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut keyed_rng(seed, Purpose::Shuffle, epoch as u64, 0));
    order
}

/// How a batch is made: augmented for training (with the run's seed and the epoch keying
/// every draw), or only scaled and normalised for evaluation.
#[derive(Clone, Copy)]
pub enum Mode {
    Train { seed: u64, epoch: usize },
    Eval,
}

/// The images `indices` of `data` as a `[B, 3, 32, 32]` tensor and their labels. Each image
/// is one task; its random draws come from the stream (seed, Augment, epoch, index), so the
/// batch is the same whatever the thread count.
pub fn make_batch(
    data: &Dataset,
    indices: &[usize],
    cfg: &AugmentConfig,
    augmenter: &Augmenter,
    mode: Mode,
) -> (Tensor, Vec<usize>) {
    scratchnet_tensor::profile::time("data.batch", || {
        let mut images = vec![0.0f32; indices.len() * IMAGE_BYTES];
        images
            .par_chunks_mut(IMAGE_BYTES)
            .zip(indices.par_iter())
            .for_each(|(out, &idx)| match mode {
                Mode::Train { seed, epoch } => {
                    let mut rng = keyed_rng(seed, Purpose::Augment, epoch as u64, idx as u64);
                    let choice = draw(cfg, &mut rng);
                    augmenter.augment_to_f32(data.image(idx), &choice, out);
                }
                Mode::Eval => augmenter.to_f32(data.image(idx), out),
            });
        let labels = indices.iter().map(|&i| data.label(i) as usize).collect();
        (
            Tensor::from_vec(&[indices.len(), 3, 32, 32], images),
            labels,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(n: usize) -> Dataset {
        let images = (0..n * IMAGE_BYTES).map(|i| (i % 251) as u8).collect();
        let labels = (0..n).map(|i| (i % 10) as u8).collect();
        Dataset::new(images, labels).unwrap()
    }

    #[test]
    fn validation_is_the_tail_and_train_limit_the_head() {
        let s = split(tiny(20), 5, Some(7)).unwrap();
        assert_eq!(s.train.len(), 7);
        assert_eq!(s.val.len(), 5);
        assert_eq!(s.val.label(0), 15 % 10);
        assert_eq!(s.train.label(6), 6);
    }

    #[test]
    fn impossible_split_sizes_are_errors_naming_the_flag() {
        assert!(split(tiny(20), 20, None)
            .unwrap_err()
            .to_string()
            .contains("--val-size"));
        assert!(split(tiny(20), 5, Some(16))
            .unwrap_err()
            .to_string()
            .contains("--train-limit"));
    }

    #[test]
    fn epoch_order_is_a_permutation_that_changes_with_the_epoch() {
        let a = epoch_order(100, 1, 0);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_eq!(a, epoch_order(100, 1, 0));
        assert_ne!(a, epoch_order(100, 1, 1));
    }
}
