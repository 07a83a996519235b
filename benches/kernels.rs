//! Divan benchmarks of the hot kernels at the shapes of lenet5-bn, batch 50.
//!
//! Run with `cargo bench -p scratchnet-tensor`. Each conv layer is measured forward and
//! backward by the algorithm training uses (`default`: the lanes for conv0 and conv4, the
//! full-window GEMM for conv8), by im2col + GEMM and by the naive loops, with its FLOP count
//! as the throughput counter (divan prints it as items/s: divide by 1e9 for GFLOP/s).

use divan::counter::ItemsCount;
use divan::Bencher;
use scratchnet_tensor::ops::activation::tanh_forward;
use scratchnet_tensor::ops::batchnorm::{batch_norm2d_forward, BatchNormConfig, RunningStats};
use scratchnet_tensor::ops::conv::{
    conv2d_backward, conv2d_backward_naive, conv2d_forward, conv2d_forward_naive,
    conv2d_forward_with, Conv2dConfig, ConvAlgorithm, ConvDims,
};
use scratchnet_tensor::ops::pool::{avg_pool2d_forward, PoolConfig};
use scratchnet_tensor::Tensor;

fn main() {
    divan::main();
}

const N: usize = 50;

/// (name, input [N, C, H, W], weight [K, C, KH, KW], whether the input needs a gradient)
const CONVS: [(&str, [usize; 4], [usize; 4], bool); 3] = [
    ("conv0", [N, 3, 32, 32], [6, 3, 5, 5], false),
    ("conv4", [N, 6, 14, 14], [16, 6, 5, 5], true),
    ("conv8", [N, 16, 5, 5], [120, 16, 5, 5], true),
];

fn ramp(shape: &[usize], seed: usize) -> Tensor {
    let n: usize = shape.iter().product();
    let data = (0..n)
        .map(|i| (((i + seed) * 37 % 101) as f32 - 50.0) * 0.01)
        .collect();
    Tensor::from_vec(shape, data)
}

struct Case {
    x: Tensor,
    w: Tensor,
    b: Tensor,
    d_out: Tensor,
    want_input: bool,
    macs: usize,
}

fn case(layer: usize) -> Case {
    let (_, input, weight, want_input) = CONVS[layer];
    let x = ramp(&input, 1);
    let w = ramp(&weight, 2);
    let b = ramp(&weight[..1], 3);
    let (out, _) = conv2d_forward(&x, &w, &b, Conv2dConfig::default());
    let d_out = ramp(out.shape(), 4);
    let macs = ConvDims::new(x.shape(), w.shape(), Conv2dConfig::default()).forward_macs();
    Case {
        x,
        w,
        b,
        d_out,
        want_input,
        macs,
    }
}

#[divan::bench(args = [0, 1, 2])]
fn conv_forward_default(bencher: Bencher, layer: usize) {
    let c = case(layer);
    bencher
        .counter(ItemsCount::new(2 * c.macs))
        .bench(|| conv2d_forward(&c.x, &c.w, &c.b, Conv2dConfig::default()));
}

#[divan::bench(args = [0, 1, 2])]
fn conv_backward_default(bencher: Bencher, layer: usize) {
    let c = case(layer);
    let (_, saved) = conv2d_forward(&c.x, &c.w, &c.b, Conv2dConfig::default());
    let flops = 2 * c.macs * if c.want_input { 2 } else { 1 };
    bencher
        .counter(ItemsCount::new(flops))
        .bench(|| conv2d_backward(&saved, &c.x, &c.w, &c.d_out, c.want_input));
}

#[divan::bench(args = [0, 1, 2])]
fn conv_forward_im2col(bencher: Bencher, layer: usize) {
    let c = case(layer);
    let cfg = Conv2dConfig::default();
    bencher
        .counter(ItemsCount::new(2 * c.macs))
        .bench(|| conv2d_forward_with(ConvAlgorithm::Im2col, &c.x, &c.w, &c.b, cfg));
}

#[divan::bench(args = [0, 1, 2])]
fn conv_backward_im2col(bencher: Bencher, layer: usize) {
    let c = case(layer);
    let cfg = Conv2dConfig::default();
    let (_, saved) = conv2d_forward_with(ConvAlgorithm::Im2col, &c.x, &c.w, &c.b, cfg);
    let flops = 2 * c.macs * if c.want_input { 2 } else { 1 };
    bencher
        .counter(ItemsCount::new(flops))
        .bench(|| conv2d_backward(&saved, &c.x, &c.w, &c.d_out, c.want_input));
}

#[divan::bench(args = [0, 1, 2], sample_count = 10)]
fn conv_forward_naive(bencher: Bencher, layer: usize) {
    let c = case(layer);
    bencher
        .counter(ItemsCount::new(2 * c.macs))
        .bench(|| conv2d_forward_naive(&c.x, &c.w, &c.b, Conv2dConfig::default()));
}

#[divan::bench(args = [0, 1, 2], sample_count = 10)]
fn conv_backward_naive(bencher: Bencher, layer: usize) {
    let c = case(layer);
    bencher
        .counter(ItemsCount::new(4 * c.macs))
        .bench(|| conv2d_backward_naive(&c.x, &c.w, &c.d_out, Conv2dConfig::default()));
}

#[divan::bench]
fn batch_norm_tanh_conv0_output(bencher: Bencher) {
    let x = ramp(&[N, 6, 28, 28], 5);
    let gamma = Tensor::from_vec(&[6], vec![1.0; 6]);
    let beta = Tensor::zeros(&[6]);
    bencher.bench(|| {
        let mut running = RunningStats::new(6);
        let cfg = BatchNormConfig::default();
        let (y, _) = batch_norm2d_forward(&x, &gamma, &beta, &mut running, cfg, true);
        tanh_forward(&y)
    });
}

#[divan::bench]
fn tanh_conv0_output(bencher: Bencher) {
    let x = ramp(&[N, 6, 28, 28], 6);
    bencher
        .counter(ItemsCount::new(x.len()))
        .bench(|| tanh_forward(&x));
}

#[divan::bench]
fn avg_pool_conv0_output(bencher: Bencher) {
    let x = ramp(&[N, 6, 28, 28], 7);
    let cfg = PoolConfig {
        kernel: 2,
        stride: 2,
    };
    bencher
        .counter(ItemsCount::new(x.len()))
        .bench(|| avg_pool2d_forward(&x, cfg));
}
