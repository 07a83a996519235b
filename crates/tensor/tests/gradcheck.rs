//! Finite-difference gradient checks for the backward of every op, through the tape.
//!
//! Each check projects an op's output onto a scalar L = Σ out · r with fixed pseudo-random
//! weights r, back-propagates, and compares every analytic dL/dx with the central
//! difference (L(x + h) - L(x - h)) / 2h. The ops run in f32; the projection, the
//! differences and the comparison are in f64, so the check measures the op, not itself.

use scratchnet_tensor::ops::batchnorm::{BatchNormConfig, RunningStats};
use scratchnet_tensor::ops::conv::Conv2dConfig;
use scratchnet_tensor::ops::pool::PoolConfig;
use scratchnet_tensor::{Graph, Tensor, Var};

/// Deterministic values in [-1, 1) from a small linear congruential sequence.
fn pseudo_random(shape: &[usize], seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let data = (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f64 / (1u64 << 24) as f64 * 2.0 - 1.0) as f32
        })
        .collect();
    Tensor::from_vec(shape, data)
}

struct Check {
    h: f32,
    rtol: f64,
    atol: f64,
}

const DEFAULT: Check = Check {
    h: 1e-2,
    rtol: 1e-2,
    atol: 1e-3,
};

/// Runs `build` on leaves made from `inputs` and checks the gradient of every input whose
/// flag in `needs_grad` is set.
fn check_grads(
    inputs: &[Tensor],
    needs_grad: &[bool],
    check: Check,
    build: impl Fn(&mut Graph, &[Var]) -> Var,
) {
    let projection = |graph: &mut Graph, values: &[Tensor]| {
        let vars: Vec<Var> = values
            .iter()
            .zip(needs_grad)
            .map(|(v, &g)| graph.leaf(v.clone(), g))
            .collect();
        let out = build(graph, &vars);
        (vars, out)
    };

    // Analytic gradients through the tape.
    let mut graph = Graph::new();
    let (vars, out) = projection(&mut graph, inputs);
    let r = pseudo_random(graph.value(out).shape(), 99);
    let loss = graph.weighted_sum(out, r.clone());
    graph.backward(loss);

    let loss_at = |values: &[Tensor]| -> f64 {
        let mut g = Graph::new();
        let (_, out) = projection(&mut g, values);
        g.value(out)
            .data()
            .iter()
            .zip(r.data())
            .map(|(&a, &b)| a as f64 * b as f64)
            .sum()
    };

    for (input_idx, var) in vars.iter().enumerate() {
        if !needs_grad[input_idx] {
            continue;
        }
        let analytic = graph
            .grad(*var)
            .expect("an input that needs a gradient got one")
            .clone();
        let mut worst = 0.0f64;
        for elem_idx in 0..inputs[input_idx].len() {
            let mut plus = inputs.to_vec();
            plus[input_idx].data_mut()[elem_idx] += check.h;
            let mut minus = inputs.to_vec();
            minus[input_idx].data_mut()[elem_idx] -= check.h;
            let numeric = (loss_at(&plus) - loss_at(&minus)) / (2.0 * check.h as f64);
            let got = analytic.data()[elem_idx] as f64;
            let err = (got - numeric).abs();
            assert!(
                err <= check.atol + check.rtol * numeric.abs(),
                "input {input_idx} element {elem_idx}: analytic {got}, numeric {numeric}"
            );
            worst = worst.max(err);
        }
        assert!(worst.is_finite());
    }
}

#[test]
fn conv2d_gradients_stride_2_padding_1() {
    let x = pseudo_random(&[2, 3, 7, 6], 1);
    let w = pseudo_random(&[4, 3, 3, 3], 2);
    let b = pseudo_random(&[4], 3);
    let cfg = Conv2dConfig {
        stride: 2,
        padding: 1,
    };
    check_grads(&[x, w, b], &[true, true, true], DEFAULT, |g, v| {
        g.conv2d(v[0], v[1], v[2], cfg)
    });
}

#[test]
fn conv2d_gradients_lenet_like_kernel_5() {
    let x = pseudo_random(&[3, 2, 9, 9], 4);
    let w = pseudo_random(&[3, 2, 5, 5], 5);
    let b = pseudo_random(&[3], 6);
    let cfg = Conv2dConfig::default();
    check_grads(&[x, w, b], &[true, true, true], DEFAULT, |g, v| {
        g.conv2d(v[0], v[1], v[2], cfg)
    });
}

#[test]
fn conv2d_gradients_full_window() {
    // The kernel covers the whole input: the fully connected path of conv3 in lenet5-bn.
    let x = pseudo_random(&[3, 2, 4, 4], 25);
    let w = pseudo_random(&[5, 2, 4, 4], 26);
    let b = pseudo_random(&[5], 27);
    let cfg = Conv2dConfig::default();
    check_grads(&[x, w, b], &[true, true, true], DEFAULT, |g, v| {
        g.conv2d(v[0], v[1], v[2], cfg)
    });
}

#[test]
fn batch_norm_training_gradients() {
    let x = pseudo_random(&[3, 2, 3, 4], 7);
    let gamma = Tensor::from_vec(&[2], vec![1.3, -0.7]);
    let beta = Tensor::from_vec(&[2], vec![0.2, 0.5]);
    check_grads(&[x, gamma, beta], &[true, true, true], DEFAULT, |g, v| {
        let mut running = RunningStats::new(2);
        g.batch_norm2d(
            v[0],
            v[1],
            v[2],
            &mut running,
            BatchNormConfig::default(),
            true,
        )
    });
}

#[test]
fn batch_norm_evaluation_gradients() {
    let x = pseudo_random(&[2, 3, 2, 2], 8);
    let gamma = Tensor::from_vec(&[3], vec![1.3, -0.7, 0.4]);
    let beta = Tensor::from_vec(&[3], vec![0.2, 0.5, -0.1]);
    check_grads(&[x, gamma, beta], &[true, true, true], DEFAULT, |g, v| {
        let mut running = RunningStats {
            mean: vec![0.1, -0.2, 0.3],
            var: vec![0.5, 2.0, 1.5],
            n_batches: 4,
        };
        g.batch_norm2d(
            v[0],
            v[1],
            v[2],
            &mut running,
            BatchNormConfig::default(),
            false,
        )
    });
}

#[test]
fn tanh_gradients() {
    let x = pseudo_random(&[2, 3, 4], 9);
    check_grads(&[x], &[true], DEFAULT, |g, v| g.tanh(v[0]));
}

#[test]
fn relu_gradients() {
    // Values kept at least 0.05 from the kink at 0 so that x ± h stays on one side.
    let x = pseudo_random(&[2, 3, 4], 10);
    let data = x
        .data()
        .iter()
        .map(|&v| if v.abs() < 0.05 { v + 0.1 } else { v })
        .collect();
    let x = Tensor::from_vec(x.shape(), data);
    check_grads(&[x], &[true], DEFAULT, |g, v| g.relu(v[0]));
}

#[test]
fn avg_pool_gradients() {
    let x = pseudo_random(&[2, 2, 6, 4], 11);
    let cfg = PoolConfig {
        kernel: 2,
        stride: 2,
    };
    check_grads(&[x], &[true], DEFAULT, |g, v| g.avg_pool2d(v[0], cfg));
}

#[test]
fn avg_pool_overlapping_windows_gradients() {
    let x = pseudo_random(&[1, 2, 5, 5], 12);
    let cfg = PoolConfig {
        kernel: 3,
        stride: 1,
    };
    check_grads(&[x], &[true], DEFAULT, |g, v| g.avg_pool2d(v[0], cfg));
}

#[test]
fn max_pool_gradients() {
    // Distinct values 0.05 apart, shuffled, so that a step of h = 0.01 never changes which
    // element wins a window.
    let n = 2 * 2 * 4 * 6;
    let mut values: Vec<f32> = (0..n).map(|i| i as f32 * 0.05 - 1.0).collect();
    let order = pseudo_random(&[n], 13);
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|&a, &b| order.data()[a].total_cmp(&order.data()[b]));
    values = idx.iter().map(|&i| values[i]).collect();
    let x = Tensor::from_vec(&[2, 2, 4, 6], values);
    let cfg = PoolConfig {
        kernel: 2,
        stride: 2,
    };
    check_grads(&[x], &[true], DEFAULT, |g, v| g.max_pool2d(v[0], cfg));
}

#[test]
fn flatten_gradients() {
    let x = pseudo_random(&[2, 3, 2, 2], 14);
    check_grads(&[x], &[true], DEFAULT, |g, v| g.flatten(v[0]));
}

#[test]
fn linear_gradients() {
    let x = pseudo_random(&[4, 5], 15);
    let w = pseudo_random(&[3, 5], 16);
    let b = pseudo_random(&[3], 17);
    check_grads(&[x, w, b], &[true, true, true], DEFAULT, |g, v| {
        g.linear(v[0], v[1], v[2])
    });
}

#[test]
fn cross_entropy_gradients_with_and_without_smoothing() {
    let labels = [2usize, 0, 4];
    for smoothing in [0.0, 0.05, 0.3] {
        let logits = pseudo_random(&[3, 5], 18);
        let logits = Tensor::from_vec(&[3, 5], logits.data().iter().map(|v| v * 3.0).collect());
        check_grads(&[logits], &[true], DEFAULT, |g, v| {
            g.cross_entropy(v[0], &labels, smoothing).0
        });
    }
}

#[test]
fn weighted_sum_gradients() {
    let x = pseudo_random(&[3, 4], 19);
    let weights = pseudo_random(&[3, 4], 20);
    check_grads(&[x], &[true], DEFAULT, |g, v| {
        g.weighted_sum(v[0], weights.clone())
    });
}

#[test]
fn a_value_used_twice_gets_the_sum_of_both_gradients() {
    // y = x · xᵀ + b: x is both the input and the weight of one linear op, so the tape must
    // add two gradients into it: dL/dx = d_out · x + d_outᵀ · x.
    let x = pseudo_random(&[3, 3], 21);
    let b = Tensor::zeros(&[3]);
    check_grads(&[x, b], &[true, false], DEFAULT, |g, v| {
        g.linear(v[0], v[0], v[1])
    });
}

#[test]
fn the_whole_network_has_correct_parameter_gradients() {
    use scratchnet_tensor::nn::{Layer, Network};
    let layers = vec![
        Layer::Conv2d {
            in_channels: 2,
            out_channels: 3,
            kernel: 3,
            stride: 1,
            padding: 1,
        },
        Layer::BatchNorm2d { channels: 3 },
        Layer::Tanh,
        Layer::AvgPool2d {
            kernel: 2,
            stride: 2,
        },
        Layer::Flatten,
        Layer::Linear {
            in_features: 12,
            out_features: 4,
        },
    ];
    let net = Network::new(layers, 5);
    let x = pseudo_random(&[3, 2, 4, 4], 24);
    let mut inputs = vec![x];
    inputs.extend(net.params.iter().map(|p| p.value.clone()));
    let mut needs = vec![false];
    needs.extend(std::iter::repeat_n(true, net.params.len()));
    let labels = [1usize, 3, 0];
    check_grads(&inputs, &needs, DEFAULT, |g, v| {
        // Rebuild the network's forward by hand from leaves so every parameter is checked.
        let mut running = RunningStats::new(3);
        let x = g.conv2d(
            v[0],
            v[1],
            v[2],
            Conv2dConfig {
                stride: 1,
                padding: 1,
            },
        );
        let x = g.batch_norm2d(
            x,
            v[3],
            v[4],
            &mut running,
            BatchNormConfig::default(),
            true,
        );
        let x = g.tanh(x);
        let x = g.avg_pool2d(
            x,
            PoolConfig {
                kernel: 2,
                stride: 2,
            },
        );
        let x = g.flatten(x);
        let logits = g.linear(x, v[5], v[6]);
        g.cross_entropy(logits, &labels, 0.05).0
    });
}
