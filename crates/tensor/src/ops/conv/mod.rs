//! 2-d convolution by im2col and GEMM, with a plain-loop twin.
//!
//! Shapes: N batch, C input channels, K output channels, H/W input height and width,
//! KH/KW kernel height and width, OH/OW output height and width.
//! `[N, C, H, W] * weight [K, C, KH, KW] + bias [K] -> [N, K, OH, OW]`, with
//! OH = (H + 2 * padding - KH) / stride + 1 and likewise OW; padding is zeros.
//!
//! For each image the im2col matrix `cols` has one row per (c, kh, kw) and one column per
//! output position (oh, ow), so the convolution is one product: out = W · cols + b, with W
//! seen as a [K, C·KH·KW] matrix.
//!
//! Three algorithms compute it (`ConvAlgorithm`): the direct convolution with images in
//! vector lanes (`lanes.rs`, the default), im2col + GEMM (this file and `im2col.rs`, images
//! grouped side by side where a layer has few output positions) and, for a kernel that
//! covers its whole input, one GEMM over the batch (`full_window.rs`). This file holds the
//! dimensions, the choice, the im2col path, the plain-loop twins and the tape op.

use rayon::prelude::*;

use crate::gemm::{gemm, MatMut, MatRef};
use crate::graph::{Backward, Grads, Graph, Var};
use crate::parallel::{sum_over_groups, REDUCE_GROUP};
use crate::tensor::Tensor;

mod full_window;
mod im2col;
mod lanes;

use full_window::{full_window_backward, full_window_forward};
pub use im2col::{col2im, im2col};
use im2col::{gather_group, im2col_group, with_scratch};
use lanes::{lanes_backward, lanes_forward};
pub use lanes::{Pooled, LANES};

/// Stride and zero padding, the same along height and width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dConfig {
    pub stride: usize,
    pub padding: usize,
}

impl Default for Conv2dConfig {
    fn default() -> Self {
        Conv2dConfig {
            stride: 1,
            padding: 0,
        }
    }
}

/// The dimensions of one convolution, bound once and passed around.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvDims {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub kh: usize,
    pub kw: usize,
    pub oh: usize,
    pub ow: usize,
    pub stride: usize,
    pub padding: usize,
}

impl ConvDims {
    /// Checks that input and weight fit together and works out the output size.
    #[track_caller]
    pub fn new(input: &[usize], weight: &[usize], cfg: Conv2dConfig) -> ConvDims {
        let (Some([n, c, h, w]), Some([k, wc, kh, kw])) = (dims4(input), dims4(weight)) else {
            panic!("conv2d wants 4-d input and weight, got {input:?} and {weight:?}")
        };
        assert_eq!(
            c, wc,
            "conv2d: input {input:?} has {c} channels, weight {weight:?} wants {wc}"
        );
        assert!(cfg.stride > 0, "conv2d: stride must be positive");
        assert!(
            h + 2 * cfg.padding >= kh && w + 2 * cfg.padding >= kw,
            "conv2d: kernel {kh}x{kw} larger than padded input {h}x{w} (padding {})",
            cfg.padding
        );
        let oh = (h + 2 * cfg.padding - kh) / cfg.stride + 1;
        let ow = (w + 2 * cfg.padding - kw) / cfg.stride + 1;
        ConvDims {
            n,
            c,
            h,
            w,
            k,
            kh,
            kw,
            oh,
            ow,
            stride: cfg.stride,
            padding: cfg.padding,
        }
    }

    /// Rows of the im2col matrix: C·KH·KW.
    pub fn col_rows(&self) -> usize {
        self.c * self.kh * self.kw
    }

    /// Columns of the im2col matrix: OH·OW.
    pub fn col_cols(&self) -> usize {
        self.oh * self.ow
    }

    /// Multiply-adds of the forward pass over the batch.
    pub fn forward_macs(&self) -> usize {
        self.n * self.k * self.col_rows() * self.col_cols()
    }

    /// The input pixel (y, x) that kernel tap (kh, kw) of output (oh, ow) reads, or `None`
    /// where the tap falls in the zero padding.
    pub fn input_pixel(
        &self,
        oh: usize,
        ow: usize,
        kh: usize,
        kw: usize,
    ) -> Option<(usize, usize)> {
        let y = (oh * self.stride + kh).checked_sub(self.padding)?;
        let x = (ow * self.stride + kw).checked_sub(self.padding)?;
        (y < self.h && x < self.w).then_some((y, x))
    }
}

fn dims4(shape: &[usize]) -> Option<[usize; 4]> {
    shape.try_into().ok()
}

/// How a convolution is computed. Each gives the gradients of its own forward pass; they
/// differ in the order of their sums, so in the last bits of their results.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvAlgorithm {
    /// Direct loops over an interleaved batch, one vector multiply-add for L images.
    Lanes,
    /// im2col matrices and matrixmultiply's GEMM.
    Im2col,
    /// One GEMM over the batch; only for a kernel that covers its whole unpadded input.
    FullWindow,
}

impl ConvAlgorithm {
    /// The name `scratchnet bench` prints.
    pub fn name(self) -> &'static str {
        match self {
            ConvAlgorithm::Lanes => "lanes",
            ConvAlgorithm::Im2col => "im2col",
            ConvAlgorithm::FullWindow => "full-window-gemm",
        }
    }
}

impl ConvDims {
    /// The algorithm `conv2d_forward` uses, from the shapes alone: the full-window GEMM where
    /// it applies, else the lanes. Measured on lenet5-bn (`scratchnet bench conv`), the lanes
    /// beat im2col on conv1 and conv2, whose GEMMs are too small (6 or 16 rows, 150 deep)
    /// to pay for their copies; conv3 has one output position, a plain GEMM.
    pub fn algorithm(&self) -> ConvAlgorithm {
        if self.is_full_window() {
            ConvAlgorithm::FullWindow
        } else {
            ConvAlgorithm::Lanes
        }
    }
}

/// What the backward pass keeps from the forward pass: the dimensions, the algorithm and,
/// for the lanes, the interleaved input (the size of the input, and interleaving it again
/// would cost a pass over it). The im2col matrices are not kept: they are rebuilt image by
/// image in backward, where one image's matrix fits in the core's cache and a batch's
/// does not.
pub struct ConvSaved {
    pub dims: ConvDims,
    pub algorithm: ConvAlgorithm,
    pub lanes_input: Option<Pooled>,
}

/// The gradients of one convolution. `d_input` is `None` when it was not asked for.
pub struct ConvGrads {
    pub d_input: Option<Tensor>,
    pub d_weight: Tensor,
    pub d_bias: Tensor,
}

/// Output positions one GEMM should cover at least. Few columns make the GEMM pay its
/// packing and edge handling for little arithmetic: a layer with few output positions per
/// image (conv2 of lenet5-bn has 100, conv3 one) puts several images side by side in one
/// product instead.
const MIN_GEMM_COLS: usize = 256;

/// The fewest groups a batch is cut into, so that every thread of a small machine gets
/// work even where one GEMM could take the whole batch.
const MIN_GROUPS: usize = 4;

impl ConvDims {
    /// G, the images side by side in one GEMM: the fewest with G·OH·OW >= MIN_GEMM_COLS,
    /// but no more than leave MIN_GROUPS groups. It depends on the shapes only, never on
    /// the thread count.
    pub fn images_per_gemm(&self) -> usize {
        let wanted = MIN_GEMM_COLS.div_ceil(self.col_cols());
        wanted.min(self.n.div_ceil(MIN_GROUPS)).max(1)
    }

    /// Images summed on one thread in the weight gradient: whole GEMM groups, at least
    /// `REDUCE_GROUP` images and enough for MIN_GEMM_COLS output positions. In dW the
    /// output positions are the GEMM's inner dimension: a short one makes every partial
    /// product read and write all of dW for little arithmetic (conv3 of lenet5-bn, with
    /// one position per image, then sums the whole batch in one product).
    fn images_per_reduction(&self) -> usize {
        let g = self.images_per_gemm();
        let wanted = REDUCE_GROUP.max(MIN_GEMM_COLS.div_ceil(self.col_cols()));
        (g * wanted.div_ceil(g)).min(self.n.max(1))
    }
}

/// `[N, C, H, W] -> [N, K, OH, OW]` by the algorithm the shapes choose (`ConvDims::algorithm`).
pub fn conv2d_forward(
    input: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    cfg: Conv2dConfig,
) -> (Tensor, ConvSaved) {
    let d = ConvDims::new(input.shape(), weight.shape(), cfg);
    conv2d_forward_with(d.algorithm(), input, weight, bias, cfg)
}

/// `conv2d_forward` by the given algorithm.
///
/// # Panics
/// If the shapes do not fit, or `FullWindow` is asked for a kernel smaller than its input.
pub fn conv2d_forward_with(
    algorithm: ConvAlgorithm,
    input: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    cfg: Conv2dConfig,
) -> (Tensor, ConvSaved) {
    let d = ConvDims::new(input.shape(), weight.shape(), cfg);
    assert_eq!(bias.shape(), [d.k], "conv2d: bias must be [{}]", d.k);
    let (out, lanes_input) = match algorithm {
        ConvAlgorithm::Lanes => {
            let (out, x) = lanes_forward(input, weight, bias, &d);
            (out, Some(x))
        }
        ConvAlgorithm::Im2col => (im2col_forward(input, weight, bias, &d), None),
        ConvAlgorithm::FullWindow => {
            assert!(
                d.is_full_window(),
                "conv2d: {d:?} is not a full-window convolution"
            );
            (full_window_forward(input, weight, bias, &d), None)
        }
    };
    let saved = ConvSaved {
        dims: d,
        algorithm,
        lanes_input,
    };
    (out, saved)
}

/// The im2col forward pass, one group of G images per task: im2col, GEMM, bias.
fn im2col_forward(input: &Tensor, weight: &Tensor, bias: &Tensor, d: &ConvDims) -> Tensor {
    let d = *d;
    let (col_rows, plane) = (d.col_rows(), d.col_cols());
    let (image_len, out_len) = (d.c * d.h * d.w, d.k * plane);
    let g = d.images_per_gemm();
    let mut out = Tensor::zeros(&[d.n, d.k, d.oh, d.ow]);
    let w = MatRef::row_major(weight.data(), d.k, col_rows);

    out.data_mut()
        .par_chunks_mut(g * out_len)
        .zip(input.data().par_chunks(g * image_len))
        .for_each(|(out_group, images)| {
            let n_cols = images.len() / image_len * plane;
            let tmp_len = if n_cols == plane { 0 } else { d.k * n_cols };
            with_scratch(col_rows * n_cols, tmp_len, |cols, tmp| {
                // 1. im2col
                im2col_group(images, &d, cols);
                let cols_view = MatRef::row_major(cols, col_rows, n_cols);

                if n_cols == plane {
                    // 2. one image: the GEMM adds onto the bias in place,
                    //    out[K, OH·OW] = b + W[K, C·KH·KW] · cols[C·KH·KW, OH·OW]
                    for (out_plane, &b) in out_group.chunks_mut(plane).zip(bias.data()) {
                        out_plane.fill(b);
                    }
                    gemm(
                        1.0,
                        w,
                        cols_view,
                        1.0,
                        MatMut::row_major(out_group, d.k, plane),
                    );
                } else {
                    // 2. several images: tmp[K, G·OH·OW] = W · cols, then 3. each image's
                    //    planes move to NCHW with the bias added.
                    gemm(1.0, w, cols_view, 0.0, MatMut::row_major(tmp, d.k, n_cols));
                    for (i, out_image) in out_group.chunks_mut(out_len).enumerate() {
                        for (k, out_plane) in out_image.chunks_mut(plane).enumerate() {
                            let src = &tmp[k * n_cols + i * plane..k * n_cols + (i + 1) * plane];
                            let b = bias.data()[k];
                            out_plane.iter_mut().zip(src).for_each(|(o, &v)| *o = v + b);
                        }
                    }
                }
            })
        });
    out
}

/// Gradients of `conv2d_forward`, into fresh tensors (overwrites nothing of the caller's),
/// by the algorithm of the forward pass.
pub fn conv2d_backward(
    saved: &ConvSaved,
    input: &Tensor,
    weight: &Tensor,
    d_out: &Tensor,
    want_input: bool,
) -> ConvGrads {
    let d = saved.dims;
    match saved.algorithm {
        ConvAlgorithm::Lanes => {
            let x = saved.lanes_input.as_ref();
            lanes_backward(input, x, weight, d_out, &d, want_input)
        }
        ConvAlgorithm::Im2col => im2col_backward(input, weight, d_out, &d, want_input),
        ConvAlgorithm::FullWindow => full_window_backward(input, weight, d_out, &d, want_input),
    }
}

/// The im2col backward pass.
fn im2col_backward(
    input: &Tensor,
    weight: &Tensor,
    d_out: &Tensor,
    d: &ConvDims,
    want_input: bool,
) -> ConvGrads {
    let d = *d;
    let (col_rows, plane) = (d.col_rows(), d.col_cols());
    let (image_len, out_len) = (d.c * d.h * d.w, d.k * plane);
    let g = d.images_per_gemm();

    // dW = Σ_groups d_out_g · cols_gᵀ and db = Σ d_out, in fixed groups of images,
    // rebuilding each group's cols. The product is formed as its transpose,
    // dWᵀ[C·KH·KW, K] = cols_g · d_out_gᵀ, so that the long matrix cols is read row by row.
    let grads_len = d.k * col_rows + d.k;
    let d_weight_and_bias = sum_over_groups(
        d.n,
        d.images_per_reduction(),
        grads_len,
        |start, end, acc| {
            let (acc_w, acc_b) = acc.split_at_mut(d.k * col_rows);
            with_scratch(col_rows * g * plane, d.k * g * plane, |cols, gathered| {
                for first in (start..end).step_by(g) {
                    let last = (first + g).min(end);
                    let n_cols = (last - first) * plane;
                    im2col_group(&input.data()[first * image_len..last * image_len], &d, cols);
                    let d_out_g =
                        gather_group(&d_out.data()[first * out_len..last * out_len], &d, gathered);
                    gemm(
                        1.0,
                        MatRef::row_major(&cols[..col_rows * n_cols], col_rows, n_cols),
                        MatRef::row_major(d_out_g, d.k, n_cols).t(),
                        1.0,
                        MatMut::strided(acc_w, col_rows, d.k, 1, col_rows),
                    );
                    for (b, row) in acc_b.iter_mut().zip(d_out_g.chunks(n_cols)) {
                        *b += row.iter().sum::<f32>();
                    }
                }
            })
        },
    );
    let (d_weight, d_bias) = d_weight_and_bias.split_at(d.k * col_rows);
    let d_weight = Tensor::from_vec(weight.shape(), d_weight.to_vec());
    let d_bias = Tensor::from_vec(&[d.k], d_bias.to_vec());

    // d_cols_g = Wᵀ · d_out_g, then col2im folds each image's block back onto its pixels.
    let d_input = want_input.then(|| {
        let mut d_input = Tensor::zeros(&[d.n, d.c, d.h, d.w]);
        let w_t = MatRef::row_major(weight.data(), d.k, col_rows).t();
        d_input
            .data_mut()
            .par_chunks_mut(g * image_len)
            .zip(d_out.data().par_chunks(g * out_len))
            .for_each(|(d_images, d_out_group)| {
                let n_cols = d_out_group.len() / out_len * plane;
                with_scratch(col_rows * n_cols, d.k * n_cols, |d_cols, gathered| {
                    let d_out_g = gather_group(d_out_group, &d, gathered);
                    gemm(
                        1.0,
                        w_t,
                        MatRef::row_major(d_out_g, d.k, n_cols),
                        0.0,
                        MatMut::row_major(d_cols, col_rows, n_cols),
                    );
                    for (i, d_image) in d_images.chunks_mut(image_len).enumerate() {
                        col2im(&d_cols[i * plane..], &d, d_image, n_cols);
                    }
                })
            });
        d_input
    });

    ConvGrads {
        d_input,
        d_weight,
        d_bias,
    }
}

/// The direct seven-loop convolution: the specification `conv2d_forward` is tested against.
pub fn conv2d_forward_naive(
    input: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    cfg: Conv2dConfig,
) -> Tensor {
    let d = ConvDims::new(input.shape(), weight.shape(), cfg);
    let (x, wt) = (input.data(), weight.data());
    let mut out = Tensor::zeros(&[d.n, d.k, d.oh, d.ow]);
    let o = out.data_mut();
    for n in 0..d.n {
        for k in 0..d.k {
            for oh in 0..d.oh {
                for ow in 0..d.ow {
                    let mut acc = bias.data()[k];
                    for c in 0..d.c {
                        for kh in 0..d.kh {
                            for kw in 0..d.kw {
                                let Some((y, xx)) = d.input_pixel(oh, ow, kh, kw) else {
                                    continue;
                                };
                                acc += x[((n * d.c + c) * d.h + y) * d.w + xx]
                                    * wt[((k * d.c + c) * d.kh + kh) * d.kw + kw];
                            }
                        }
                    }
                    o[((n * d.k + k) * d.oh + oh) * d.ow + ow] = acc;
                }
            }
        }
    }
    out
}

/// The direct loops of the convolution's gradients: the twin of `conv2d_backward`.
pub fn conv2d_backward_naive(
    input: &Tensor,
    weight: &Tensor,
    d_out: &Tensor,
    cfg: Conv2dConfig,
) -> ConvGrads {
    let d = ConvDims::new(input.shape(), weight.shape(), cfg);
    let (x, wt, g) = (input.data(), weight.data(), d_out.data());
    let mut d_input = Tensor::zeros(input.shape());
    let mut d_weight = Tensor::zeros(weight.shape());
    let mut d_bias = Tensor::zeros(&[d.k]);
    for n in 0..d.n {
        for k in 0..d.k {
            for oh in 0..d.oh {
                for ow in 0..d.ow {
                    let go = g[((n * d.k + k) * d.oh + oh) * d.ow + ow];
                    d_bias.data_mut()[k] += go;
                    for c in 0..d.c {
                        for kh in 0..d.kh {
                            for kw in 0..d.kw {
                                let Some((y, xx)) = d.input_pixel(oh, ow, kh, kw) else {
                                    continue;
                                };
                                let x_idx = ((n * d.c + c) * d.h + y) * d.w + xx;
                                let w_idx = ((k * d.c + c) * d.kh + kh) * d.kw + kw;
                                d_weight.data_mut()[w_idx] += go * x[x_idx];
                                d_input.data_mut()[x_idx] += go * wt[w_idx];
                            }
                        }
                    }
                }
            }
        }
    }
    ConvGrads {
        d_input: Some(d_input),
        d_weight,
        d_bias,
    }
}

struct Conv2dBackward {
    input: Var,
    weight: Var,
    bias: Var,
    saved: ConvSaved,
}

impl Backward for Conv2dBackward {
    fn name(&self) -> &'static str {
        "conv2d.backward"
    }

    fn backward(&self, values: &[Tensor], d_out: &Tensor, grads: &mut Grads<'_>) {
        let (input, weight) = (&values[self.input.0], &values[self.weight.0]);
        let g = conv2d_backward(&self.saved, input, weight, d_out, grads.wants(self.input));
        if let Some(d_input) = g.d_input {
            grads.add(self.input, d_input);
        }
        grads.add(self.weight, g.d_weight);
        grads.add(self.bias, g.d_bias);
    }
}

impl Graph {
    /// `[N, C, H, W] -> [N, K, OH, OW]`; see the module docs.
    pub fn conv2d(&mut self, input: Var, weight: Var, bias: Var, cfg: Conv2dConfig) -> Var {
        let (out, saved) = crate::profile::time("conv2d.forward", || {
            conv2d_forward(self.value(input), self.value(weight), self.value(bias), cfg)
        });
        let op = Conv2dBackward {
            input,
            weight,
            bias,
            saved,
        };
        self.push_op(out, &[input, weight, bias], op)
    }
}
