//! Fast kernels against their plain-loop twins, and ops against values worked out by hand.

mod common;

use common::ramp;
use scratchnet_tensor::ops::batchnorm::{batch_norm2d_forward, BatchNormConfig, RunningStats};
use scratchnet_tensor::ops::conv::{
    conv2d_backward, conv2d_backward_naive, conv2d_forward, conv2d_forward_naive,
    conv2d_forward_with, Conv2dConfig, ConvAlgorithm, ConvDims,
};
use scratchnet_tensor::ops::loss::cross_entropy_forward;
use scratchnet_tensor::ops::pool::{
    avg_pool2d_backward, avg_pool2d_backward_naive, avg_pool2d_forward, avg_pool2d_forward_naive,
    max_pool2d_forward, PoolConfig,
};
use scratchnet_tensor::Tensor;

#[track_caller]
fn assert_close(a: &Tensor, b: &Tensor, tol: f32) {
    assert_eq!(a.shape(), b.shape());
    for (i, (x, y)) in a.data().iter().zip(b.data()).enumerate() {
        assert!(
            (x - y).abs() <= tol * (1.0 + y.abs()),
            "element {i}: {x} vs {y}"
        );
    }
}

/// Every algorithm that applies (the lanes, im2col + GEMM, and the full-window GEMM where
/// the kernel covers the input) against the seven direct loops, forward and backward. They
/// sum in different orders, so they agree to f32 rounding: about 1e-7 per term, and the
/// largest sums here (dW at conv1: 7 images x 784 positions) stay within 1e-4 relative.
fn check_conv_against_naive(input: [usize; 4], weight: [usize; 4], cfg: Conv2dConfig) {
    let tol = 1e-4;
    let x = ramp(&input, 0.02, 1);
    let w = ramp(&weight, 0.01, 2);
    let b = ramp(&[weight[0]], 0.1, 3);
    let naive = conv2d_forward_naive(&x, &w, &b, cfg);
    let d_out = ramp(naive.shape(), 0.03, 4);
    let g_naive = conv2d_backward_naive(&x, &w, &d_out, cfg);

    let mut algorithms = vec![ConvAlgorithm::Lanes, ConvAlgorithm::Im2col];
    if ConvDims::new(&input, &weight, cfg).is_full_window() {
        algorithms.push(ConvAlgorithm::FullWindow);
    }
    for algorithm in algorithms {
        let (fast, saved) = conv2d_forward_with(algorithm, &x, &w, &b, cfg);
        assert_close(&fast, &naive, tol);
        let g_fast = conv2d_backward(&saved, &x, &w, &d_out, true);
        assert_close(
            g_fast.d_input.as_ref().unwrap(),
            g_naive.d_input.as_ref().unwrap(),
            tol,
        );
        assert_close(&g_fast.d_weight, &g_naive.d_weight, tol);
        assert_close(&g_fast.d_bias, &g_naive.d_bias, tol);
    }
}

#[test]
fn conv_equals_naive_with_stride_2_and_padding_1() {
    check_conv_against_naive(
        [3, 4, 9, 8],
        [5, 4, 3, 3],
        Conv2dConfig {
            stride: 2,
            padding: 1,
        },
    );
}

#[test]
fn conv_equals_naive_with_stride_2_padding_1_kernel_5() {
    check_conv_against_naive(
        [2, 3, 11, 11],
        [4, 3, 5, 5],
        Conv2dConfig {
            stride: 2,
            padding: 1,
        },
    );
}

#[test]
fn conv_equals_naive_when_padding_exceeds_what_the_stride_reaches() {
    // Stride 3 with padding 2 leaves whole kernel columns of some output positions in the
    // padding, and a 1x1 kernel with padding gives all-zero border outputs.
    check_conv_against_naive(
        [2, 2, 7, 8],
        [3, 2, 3, 3],
        Conv2dConfig {
            stride: 3,
            padding: 2,
        },
    );
    check_conv_against_naive(
        [1, 3, 4, 5],
        [2, 3, 1, 1],
        Conv2dConfig {
            stride: 1,
            padding: 2,
        },
    );
    check_conv_against_naive(
        [1, 1, 3, 3],
        [1, 1, 5, 5],
        Conv2dConfig {
            stride: 1,
            padding: 1,
        },
    );
}

#[test]
fn conv_equals_naive_when_images_share_a_gemm() {
    // 3x3 outputs: 22 images are cut into at least four GEMM groups, 6 images each
    // (6 = ceil(22 / 4)), so groups of 6, 6, 6 and a short last one of 4.
    check_conv_against_naive([22, 3, 7, 7], [5, 3, 5, 5], Conv2dConfig::default());
    // One output position per image, as conv3 of lenet5-bn: groups of 18, 18, 18, 16.
    check_conv_against_naive([70, 4, 5, 5], [9, 4, 5, 5], Conv2dConfig::default());
}

/// The images left after the full lane groups share one group in bands of output rows
/// (`Tail`): every remainder 1 to 7 (batches 9 to 15) and none (16), with and without padding
/// and stride, and the batch of 50 training uses.
#[test]
fn conv_equals_naive_for_every_tail_of_lane_groups() {
    let strided = Conv2dConfig {
        stride: 2,
        padding: 1,
    };
    for n in 9..=16 {
        check_conv_against_naive([n, 2, 9, 10], [3, 2, 3, 3], strided);
        check_conv_against_naive([n, 2, 12, 7], [3, 2, 5, 5], Conv2dConfig::default());
    }
    check_conv_against_naive([50, 6, 14, 14], [16, 6, 5, 5], Conv2dConfig::default());
}

/// The lanes backward without the forward's interleaved input (it interleaves the input
/// again, full groups and tail) gives the very bits it gives with it.
#[test]
fn lanes_backward_without_the_saved_input_gives_the_same_bits() {
    let cases = [
        ([10, 6, 14, 14], [16, 6, 5, 5], Conv2dConfig::default()),
        (
            [11, 2, 9, 10],
            [3, 2, 3, 3],
            Conv2dConfig {
                stride: 2,
                padding: 1,
            },
        ),
    ];
    for (input, weight, cfg) in cases {
        let x = ramp(&input, 0.02, 1);
        let w = ramp(&weight, 0.01, 2);
        let b = ramp(&[weight[0]], 0.1, 3);
        let (out, mut saved) = conv2d_forward_with(ConvAlgorithm::Lanes, &x, &w, &b, cfg);
        let d_out = ramp(out.shape(), 0.03, 4);
        let with = conv2d_backward(&saved, &x, &w, &d_out, true);
        saved.lanes_input = None;
        let without = conv2d_backward(&saved, &x, &w, &d_out, true);
        let bits = |t: &Tensor| t.data().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&with.d_weight), bits(&without.d_weight));
        assert_eq!(bits(&with.d_bias), bits(&without.d_bias));
        assert_eq!(
            bits(with.d_input.as_ref().unwrap()),
            bits(without.d_input.as_ref().unwrap())
        );
    }
}

#[test]
fn conv_equals_naive_at_the_lenet_shapes() {
    let cfg = Conv2dConfig::default();
    check_conv_against_naive([7, 3, 32, 32], [6, 3, 5, 5], cfg);
    check_conv_against_naive([7, 6, 14, 14], [16, 6, 5, 5], cfg);
    check_conv_against_naive([7, 16, 5, 5], [120, 16, 5, 5], cfg);
}

#[test]
fn conv_backward_skips_the_input_gradient_when_not_wanted() {
    let x = ramp(&[2, 3, 8, 8], 0.02, 1);
    let w = ramp(&[4, 3, 3, 3], 0.01, 2);
    let b = Tensor::zeros(&[4]);
    let (out, saved) = conv2d_forward(&x, &w, &b, Conv2dConfig::default());
    let g = conv2d_backward(&saved, &x, &w, &out, false);
    assert!(g.d_input.is_none());
}

#[test]
fn batch_norm_statistics_match_hand_values() {
    // One channel, values 1, 2, 3, 4: mean 2.5, biased variance 1.25 (normalisation),
    // unbiased variance 5/3 (running estimate), as PyTorch's BatchNorm2d defines them.
    let x = Tensor::from_vec(&[2, 1, 1, 2], vec![1.0, 2.0, 3.0, 4.0]);
    let gamma = Tensor::from_vec(&[1], vec![2.0]);
    let beta = Tensor::from_vec(&[1], vec![0.5]);
    let mut running = RunningStats::new(1);
    let cfg = BatchNormConfig::default();
    let (y, _) = batch_norm2d_forward(&x, &gamma, &beta, &mut running, cfg, true);
    let inv_std = 1.0 / (1.25f32 + 1e-5).sqrt();
    let expected: Vec<f32> = [1.0f32, 2.0, 3.0, 4.0]
        .iter()
        .map(|v| 2.0 * (v - 2.5) * inv_std + 0.5)
        .collect();
    assert_close(&y, &Tensor::from_vec(&[2, 1, 1, 2], expected), 1e-6);
    // running = 0.9 · (0, 1) + 0.1 · (2.5, 5/3)
    assert!((running.mean[0] - 0.25).abs() < 1e-7);
    assert!((running.var[0] - (0.9 + 0.1 * 5.0 / 3.0)).abs() < 1e-6);
    assert_eq!(running.n_batches, 1);

    // Evaluation uses the running estimates and leaves them alone.
    let before = running.clone();
    let (y_eval, _) = batch_norm2d_forward(&x, &gamma, &beta, &mut running, cfg, false);
    assert_eq!(running, before);
    let s = 1.0 / (running.var[0] + 1e-5).sqrt();
    assert!((y_eval.data()[0] - (2.0 * (1.0 - 0.25) * s + 0.5)).abs() < 1e-6);
}

#[test]
fn cross_entropy_matches_hand_values() {
    // logits (1, 2, 3), label 2: loss = log(1 + e⁻¹ + e⁻²) = 0.40760596.
    // With smoothing 0.1 over K = 3, target (1/30, 1/30, 1/30 + 0.9) and
    // loss = Σ -t·log p = (2.40760596 + 1.40760596 + 0.40760596)/30 + 0.9 · 0.40760596
    //      = 0.50760596.
    let logits = Tensor::from_vec(&[1, 3], vec![1.0, 2.0, 3.0]);
    let plain = cross_entropy_forward(&logits, &[2], 0.0);
    assert!(
        (plain.mean_loss - 0.407_605_96).abs() < 1e-6,
        "{}",
        plain.mean_loss
    );
    let smooth = cross_entropy_forward(&logits, &[2], 0.1);
    assert!(
        (smooth.mean_loss - 0.507_605_96).abs() < 1e-6,
        "{}",
        smooth.mean_loss
    );
}

#[test]
fn cross_entropy_is_stable_for_huge_logits() {
    let logits = Tensor::from_vec(&[1, 3], vec![1000.0, 0.0, -1000.0]);
    let out = cross_entropy_forward(&logits, &[0], 0.0);
    assert_eq!(out.mean_loss, 0.0);
    let out = cross_entropy_forward(&logits, &[1], 0.0);
    assert!((out.mean_loss - 1000.0).abs() < 1e-3);
    assert!(out.probs.data().iter().all(|p| p.is_finite()));
}

#[test]
fn pooling_matches_hand_values() {
    // 4x4 plane 0..15; 2x2 windows: averages 2.5, 4.5, 10.5, 12.5 and maxima 5, 7, 13, 15.
    let x = Tensor::from_vec(&[1, 1, 4, 4], (0..16).map(|v| v as f32).collect());
    let cfg = PoolConfig {
        kernel: 2,
        stride: 2,
    };
    assert_eq!(avg_pool2d_forward(&x, cfg).data(), [2.5, 4.5, 10.5, 12.5]);
    let (max, argmax) = max_pool2d_forward(&x, cfg);
    assert_eq!(max.data(), [5.0, 7.0, 13.0, 15.0]);
    assert_eq!(argmax, [5, 7, 13, 15]);
}

#[test]
fn the_2x2_pooling_path_equals_the_general_loops() {
    // Odd sizes leave a last row and column outside every window.
    for shape in [[2, 3, 28, 28], [1, 2, 7, 9]] {
        let x = ramp(&shape, 0.1, 5);
        let cfg = PoolConfig {
            kernel: 2,
            stride: 2,
        };
        let fast = avg_pool2d_forward(&x, cfg);
        assert_close(&fast, &avg_pool2d_forward_naive(&x, cfg), 1e-6);
        let d_out = ramp(fast.shape(), 0.2, 6);
        let fast_back = avg_pool2d_backward(&d_out, &shape, cfg);
        assert_close(
            &fast_back,
            &avg_pool2d_backward_naive(&d_out, &shape, cfg),
            1e-6,
        );
    }
}
