//! The lanes convolution against its exact specification: scalar loops that do the same
//! fused multiply-adds in the same order. The vector code is picked at run time (AVX-512,
//! AVX2 or the portable build), so these tests pin that what runs here gives the very bits
//! of the specification, which is what every CPU computes. A mismatch means that the vector
//! code sums in another order somewhere, and two machines would then disagree.
//!
//! Shapes: N batch, C input channels, K output channels, H/W input, KH/KW kernel, OH/OW
//! output; L = LANES images per vector.

mod common;

use common::ramp;
use scratchnet_tensor::ops::conv::{
    conv2d_backward, conv2d_forward_with, Conv2dConfig, ConvAlgorithm, ConvDims, LANES,
};
use scratchnet_tensor::Tensor;

/// x[n, c, ..] at the pixel tap (kh, kw) of output (oh, ow) reads, zero in the padding
/// (the kernels read the padding's zeros too).
fn tap(
    x: &Tensor,
    d: &ConvDims,
    n: usize,
    c: usize,
    (oh, ow): (usize, usize),
    (kh, kw): (usize, usize),
) -> f32 {
    match d.input_pixel(oh, ow, kh, kw) {
        Some((y, xx)) => x.data()[((n * d.c + c) * d.h + y) * d.w + xx],
        None => 0.0,
    }
}

/// out[n, k, oh, ow]: start at b[k], then one fused multiply-add per (c, kh, kw) in that
/// order, the padding's zeros included.
fn forward_spec(x: &Tensor, w: &Tensor, b: &Tensor, d: &ConvDims) -> Vec<f32> {
    let mut out = Vec::new();
    for n in 0..d.n {
        for k in 0..d.k {
            for oh in 0..d.oh {
                for ow in 0..d.ow {
                    let mut acc = b.data()[k];
                    for c in 0..d.c {
                        for kh in 0..d.kh {
                            for kw in 0..d.kw {
                                let x_v = tap(x, d, n, c, (oh, ow), (kh, kw));
                                let w_v = w.data()[((k * d.c + c) * d.kh + kh) * d.kw + kw];
                                acc = w_v.mul_add(x_v, acc);
                            }
                        }
                    }
                    out.push(acc);
                }
            }
        }
    }
    out
}

/// What lane `lane` of lane group `group` holds: (image, first output row, rows). A full
/// group holds L images whole. The group of the r = N mod L images left over cuts each
/// image's output rows into bands of ceil(OH / min(L / r, OH)) rows, one lane per (image,
/// band), band-major within an image; rows of a band past OH count as zero gradient. `None`:
/// an empty lane.
fn lane_holds(d: &ConvDims, group: usize, lane: usize) -> Option<(usize, usize, usize)> {
    let full = d.n / LANES;
    if group < full {
        return Some((group * LANES + lane, 0, d.oh));
    }
    let images = d.n % LANES;
    let band = d.oh.div_ceil((LANES / images).min(d.oh));
    let parts = d.oh.div_ceil(band);
    (lane < images * parts).then(|| (full * LANES + lane / parts, lane % parts * band, band))
}

/// dW[k, c, kh, kw] and db[k]: each lane sums over the (oh, ow) it holds in order, dW by
/// fused multiply-adds from zero (db by plain additions); the L lanes of a group are added in
/// lane order (`Iterator::sum`); the groups' sums are added in group order, each starting
/// from zero.
fn weight_grad_spec(x: &Tensor, g: &Tensor, d: &ConvDims) -> (Vec<f32>, Vec<f32>) {
    let groups = d.n.div_ceil(LANES);
    let g_at = |n: usize, k: usize, oh: usize, ow: usize| {
        if oh < d.oh {
            g.data()[((n * d.k + k) * d.oh + oh) * d.ow + ow]
        } else {
            0.0
        }
    };
    // One lane's sum of `term(image, oh, ow)` over what it holds, from zero.
    let lane_sum = |group: usize, lane: usize, term: &dyn Fn(usize, usize, usize, f32) -> f32| {
        let mut acc = 0.0f32;
        if let Some((n, oh0, rows)) = lane_holds(d, group, lane) {
            for oh in oh0..oh0 + rows {
                for ow in 0..d.ow {
                    acc = term(n, oh, ow, acc);
                }
            }
        }
        acc
    };
    let mut d_weight = Vec::new();
    for k in 0..d.k {
        for c in 0..d.c {
            for kh in 0..d.kh {
                for kw in 0..d.kw {
                    let mut total = 0.0f32;
                    for group in 0..groups {
                        let lanes: [f32; LANES] = std::array::from_fn(|lane| {
                            lane_sum(group, lane, &|n, oh, ow, acc| {
                                g_at(n, k, oh, ow).mul_add(tap(x, d, n, c, (oh, ow), (kh, kw)), acc)
                            })
                        });
                        total += 0.0 + lanes.iter().sum::<f32>();
                    }
                    d_weight.push(total);
                }
            }
        }
    }
    let mut d_bias = Vec::new();
    for k in 0..d.k {
        let mut total = 0.0f32;
        for group in 0..groups {
            let lanes: [f32; LANES] = std::array::from_fn(|lane| {
                lane_sum(group, lane, &|n, oh, ow, acc| acc + g_at(n, k, oh, ow))
            });
            total += 0.0 + lanes.iter().sum::<f32>();
        }
        d_bias.push(total);
    }
    (d_weight, d_bias)
}

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

fn check_bits(input: [usize; 4], weight: [usize; 4], cfg: Conv2dConfig) {
    let d = ConvDims::new(&input, &weight, cfg);
    let x = ramp(&input, 0.02, 1);
    let w = ramp(&weight, 0.01, 2);
    let b = ramp(&[weight[0]], 0.1, 3);
    let (out, saved) = conv2d_forward_with(ConvAlgorithm::Lanes, &x, &w, &b, cfg);
    assert_eq!(bits(out.data()), bits(&forward_spec(&x, &w, &b, &d)));

    let d_out = ramp(out.shape(), 0.03, 4);
    let grads = conv2d_backward(&saved, &x, &w, &d_out, false);
    let (d_weight, d_bias) = weight_grad_spec(&x, &d_out, &d);
    assert_eq!(bits(grads.d_weight.data()), bits(&d_weight));
    assert_eq!(bits(grads.d_bias.data()), bits(&d_bias));
}

#[test]
fn lanes_conv_gives_the_bits_of_its_specification_at_the_lenet_shapes() {
    // 10 images: one full lane group and one of 2.
    check_bits([10, 3, 32, 32], [6, 3, 5, 5], Conv2dConfig::default());
    check_bits([10, 6, 14, 14], [16, 6, 5, 5], Conv2dConfig::default());
}

#[test]
fn lanes_conv_gives_the_bits_of_its_specification_with_stride_and_padding() {
    let cfg = Conv2dConfig {
        stride: 2,
        padding: 1,
    };
    check_bits([3, 4, 9, 8], [5, 4, 3, 3], cfg);
}
