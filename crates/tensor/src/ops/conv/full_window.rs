//! The convolution whose kernel covers its whole unpadded input: one output position per
//! image, so it is a fully connected layer and runs as one GEMM on views of the tensors.
//!
//! Shapes: N batch, C input channels, K output channels, H/W = KH/KW;
//! `[N, C, H, W] -> [N, K, 1, 1]`.

use rayon::prelude::*;

use super::{ConvDims, ConvGrads};
use crate::gemm::{gemm, MatMut, MatRef};
use crate::tensor::Tensor;

impl ConvDims {
    /// Whether the kernel covers the whole unpadded input, one output per image: then an
    /// image's im2col matrix is the image itself, `[C·KH·KW, 1]`, and the convolution is a
    /// fully connected layer (conv3 of lenet5-bn).
    pub fn is_full_window(&self) -> bool {
        self.padding == 0 && self.kh == self.h && self.kw == self.w
    }
}

/// The full-window convolution as one product over the batch, on views of the input and
/// the output instead of copies: out[N, K] = X[N, C·H·W] · Wᵀ + b.
pub(super) fn full_window_forward(
    input: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    d: &ConvDims,
) -> Tensor {
    let image_len = d.c * d.h * d.w;
    let mut out = Tensor::zeros(&[d.n, d.k, 1, 1]);
    let w_t = MatRef::row_major(weight.data(), d.k, image_len).t();
    let g = d.images_per_gemm();
    out.data_mut()
        .par_chunks_mut(g * d.k)
        .zip(input.data().par_chunks(g * image_len))
        .for_each(|(out_group, images)| {
            let n_images = images.len() / image_len;
            for row in out_group.chunks_mut(d.k) {
                row.copy_from_slice(bias.data());
            }
            let x = MatRef::row_major(images, n_images, image_len);
            gemm(
                1.0,
                x,
                w_t,
                1.0,
                MatMut::row_major(out_group, n_images, d.k),
            );
        });
    out
}

/// Gradients of `full_window_forward`: dW = d_outᵀ · X over the whole batch in one
/// product (its inner dimension is the batch), db = Σ_n d_out, dX = d_out · W.
pub(super) fn full_window_backward(
    input: &Tensor,
    weight: &Tensor,
    d_out: &Tensor,
    d: &ConvDims,
    want_input: bool,
) -> ConvGrads {
    let image_len = d.c * d.h * d.w;
    let g_mat = MatRef::row_major(d_out.data(), d.n, d.k);
    let mut d_weight = Tensor::zeros(weight.shape());
    let x = MatRef::row_major(input.data(), d.n, image_len);
    gemm(
        1.0,
        g_mat.t(),
        x,
        0.0,
        MatMut::row_major(d_weight.data_mut(), d.k, image_len),
    );
    let mut d_bias = Tensor::zeros(&[d.k]);
    for row in d_out.data().chunks(d.k) {
        d_bias
            .data_mut()
            .iter_mut()
            .zip(row)
            .for_each(|(b, &v)| *b += v);
    }
    let d_input = want_input.then(|| {
        let mut d_input = Tensor::zeros(input.shape());
        let w = MatRef::row_major(weight.data(), d.k, image_len);
        let g = d.images_per_gemm();
        d_input
            .data_mut()
            .par_chunks_mut(g * image_len)
            .zip(d_out.data().par_chunks(g * d.k))
            .for_each(|(d_images, d_out_group)| {
                let n_images = d_out_group.len() / d.k;
                let g_group = MatRef::row_major(d_out_group, n_images, d.k);
                let dst = MatMut::row_major(d_images, n_images, image_len);
                gemm(1.0, g_group, w, 0.0, dst);
            });
        d_input
    });
    ConvGrads {
        d_input,
        d_weight,
        d_bias,
    }
}
