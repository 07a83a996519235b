//! Evaluation of a network on a data set: mean loss, accuracy and the confusion matrix.

use scratchnet_augment::{AugmentConfig, Augmenter};
use scratchnet_cifar::{Dataset, N_CLASSES};
use scratchnet_tensor::nn::Network;
use scratchnet_tensor::ops::loss::cross_entropy_forward;

use crate::data::{make_batch, Mode};

/// Images per evaluation batch: fixed, so results do not depend on any flag.
pub const EVAL_BATCH: usize = 500;

/// What an evaluation measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    /// Mean loss per image (with the recipe's label smoothing).
    pub loss: f64,
    /// Percent of images whose largest logit is the true class.
    pub accuracy: f64,
    pub n_images: usize,
    /// `confusion[true_class][predicted_class]` counts.
    pub confusion: [[u32; N_CLASSES]; N_CLASSES],
}

/// The index of the largest logit (the first one on a tie).
pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (j, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = j;
        }
    }
    best
}

/// Runs `net` in evaluation mode (running batch-norm statistics) over all of `data`.
pub fn evaluate(
    net: &mut Network,
    data: &Dataset,
    augment: &AugmentConfig,
    smoothing: f32,
) -> Evaluation {
    scratchnet_tensor::profile::time("evaluate", || {
        let augmenter = Augmenter::new(augment);
        let mut loss_sum = 0.0f64;
        let mut confusion = [[0u32; N_CLASSES]; N_CLASSES];
        let indices: Vec<usize> = (0..data.len()).collect();
        for chunk in indices.chunks(EVAL_BATCH) {
            let (images, labels) = make_batch(data, chunk, augment, &augmenter, Mode::Eval);
            let logits = net.infer(images);
            let out = cross_entropy_forward(&logits, &labels, smoothing);
            loss_sum += out.losses.iter().map(|&l| l as f64).sum::<f64>();
            for (row, &label) in logits.data().chunks(N_CLASSES).zip(&labels) {
                confusion[label][argmax(row)] += 1;
            }
        }
        let n = data.len();
        let correct: u32 = (0..N_CLASSES).map(|c| confusion[c][c]).sum();
        Evaluation {
            loss: loss_sum / n as f64,
            accuracy: 100.0 * correct as f64 / n as f64,
            n_images: n,
            confusion,
        }
    })
}

/// Per-class precision, recall and F1 from a confusion matrix.
pub fn per_class_scores(confusion: &[[u32; N_CLASSES]; N_CLASSES]) -> Vec<(f64, f64, f64)> {
    (0..N_CLASSES)
        .map(|c| {
            let tp = confusion[c][c] as f64;
            let predicted: f64 = (0..N_CLASSES).map(|t| confusion[t][c] as f64).sum();
            let actual: f64 = confusion[c].iter().map(|&v| v as f64).sum();
            let precision = if predicted > 0.0 { tp / predicted } else { 0.0 };
            let recall = if actual > 0.0 { tp / actual } else { 0.0 };
            let f1 = if precision + recall > 0.0 {
                2.0 * precision * recall / (precision + recall)
            } else {
                0.0
            };
            (precision, recall, f1)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_the_first_of_equal_maxima() {
        assert_eq!(argmax(&[0.0, 2.0, 2.0, -1.0]), 1);
    }

    #[test]
    fn scores_from_a_hand_made_confusion_matrix() {
        // Class 0: 8 right, 2 taken for class 1; class 1: 5 right, nothing else predicted
        // as 1 but those 2. Precision of 1 = 5/7, recall of 0 = 8/10.
        let mut m = [[0u32; N_CLASSES]; N_CLASSES];
        m[0][0] = 8;
        m[0][1] = 2;
        m[1][1] = 5;
        let s = per_class_scores(&m);
        assert!((s[0].0 - 1.0).abs() < 1e-12 && (s[0].1 - 0.8).abs() < 1e-12);
        assert!((s[1].0 - 5.0 / 7.0).abs() < 1e-12 && (s[1].1 - 1.0).abs() < 1e-12);
        assert!((s[1].2 - 2.0 * (5.0 / 7.0) / (5.0 / 7.0 + 1.0)).abs() < 1e-12);
        assert_eq!(s[2], (0.0, 0.0, 0.0));
    }
}
