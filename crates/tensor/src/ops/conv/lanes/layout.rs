//! Interleaving a batch into lane groups and back, and the weight layouts the kernels read.
//! Shapes as in the parent module.

use std::cell::RefCell;

use multiversion::multiversion;
use rayon::prelude::*;

use super::pool::{Pooled, Role};
use super::{LaneDims, Lanes, LANES};
use crate::ops::conv::ConvDims;
use crate::tensor::Tensor;

/// Where one lane group's output (or output gradient) row `oh` keeps the vector of
/// (k, ow): at `oh·row_len + (k / k_block)·block_len + ow·k_block + k % k_block` for rows by
/// position, `[K' / KB, OW, KB]`, and at `oh·row_len + k·ow_len + ow` for rows by channel,
/// `[K', OW']`. The forward result and the input-gradient kernel use rows by channel, whose
/// tiles run along ow; the weight-gradient kernel uses rows by position, whose KB channels
/// at one position lie side by side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct RowLayout {
    pub k_stride: usize,
    pub ow_stride: usize,
    pub k_block: usize,
    pub block_len: usize,
    pub row_len: usize,
}

impl RowLayout {
    pub fn by_channel(k_len: usize, ow_len: usize) -> RowLayout {
        RowLayout {
            k_stride: ow_len,
            ow_stride: 1,
            k_block: k_len,
            block_len: k_len * ow_len,
            row_len: k_len * ow_len,
        }
    }

    pub fn by_position(k_len: usize, ow_len: usize, k_block: usize) -> RowLayout {
        RowLayout {
            k_stride: 1,
            ow_stride: k_block,
            k_block,
            block_len: ow_len * k_block,
            row_len: k_len * ow_len,
        }
    }

    /// Where row `row_idx` of an image `[K, OH, OW]` (row k·OH + oh) starts in a group's
    /// output buffer: at (k, ow = 0) of output row oh.
    pub fn image_row_start(&self, row_idx: usize, oh_len: usize) -> usize {
        let (k, oh) = (row_idx / oh_len, row_idx % oh_len);
        oh * self.row_len + self.at(k, 0)
    }

    /// The index of (k, ow) in a row.
    pub fn at(&self, k: usize, ow: usize) -> usize {
        (k / self.k_block) * self.block_len
            + (k % self.k_block) * self.k_stride
            + ow * self.ow_stride
    }
}

thread_local! {
    /// One lane group in image order, `[image_len]` vectors: the step between the images
    /// and a padded layout, reused by every call on this thread.
    static FLAT: RefCell<Vec<Lanes>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on this thread's flat buffer of `len` vectors (contents unspecified).
fn with_flat<T>(len: usize, f: impl FnOnce(&mut [Lanes]) -> T) -> T {
    FLAT.with(|cell| {
        let mut flat = cell.borrow_mut();
        if flat.len() < len {
            flat.resize(len, [0.0; LANES]);
        }
        f(&mut flat[..len])
    })
}

/// `flat[i]` = value i of each image in `images` (`[n, image_len]`, n <= L): lane l from image
/// l, zero in the lanes past the last image. Blocks of L values of the L images are
/// transposed as L x L squares. Also compiled for AVX2 (moves only: the same values).
#[multiversion(targets("x86_64+avx2"))]
fn transpose_to_lanes(images: &[f32], image_len: usize, flat: &mut [Lanes]) {
    let n_images = images.len() / image_len;
    let rows: [&[f32]; LANES] = std::array::from_fn(|l| {
        let image = l.min(n_images - 1);
        &images[image * image_len..][..image_len]
    });
    let (blocks, _) = flat.as_chunks_mut::<LANES>();
    let n_blocked = blocks.len() * LANES;
    for (b, block) in blocks.iter_mut().enumerate() {
        let square: [Lanes; LANES] =
            std::array::from_fn(|l| *rows[l][b * LANES..].first_chunk().expect("L values"));
        *block = std::array::from_fn(|i| std::array::from_fn(|l| square[l][i]));
    }
    for (i, v) in flat.iter_mut().enumerate().skip(n_blocked) {
        *v = std::array::from_fn(|l| rows[l][i]);
    }
    // The lanes past the last image were filled with copies of it: clear them.
    if n_images < LANES {
        for v in flat.iter_mut() {
            v[n_images..].fill(0.0);
        }
    }
}

/// The inverse of `transpose_to_lanes`: value i of image l is lane l of `flat[i]`, for the
/// images in `images`. Also compiled for AVX2.
#[multiversion(targets("x86_64+avx2"))]
fn transpose_from_lanes(flat: &[Lanes], images: &mut [f32], image_len: usize) {
    let (blocks, _) = flat.as_chunks::<LANES>();
    for (l, image) in images.chunks_mut(image_len).enumerate() {
        let (image_blocks, _) = image.as_chunks_mut::<LANES>();
        for (out, block) in image_blocks.iter_mut().zip(blocks) {
            *out = std::array::from_fn(|i| block[i][l]);
        }
        for (i, value) in image.iter_mut().enumerate().skip(blocks.len() * LANES) {
            *value = flat[i][l];
        }
    }
}

/// `[N, C, H, W]` -> `[groups, C, HP, WP]` vectors: image `g·L + l` in lane `l` of group `g`,
/// zeros in the border, the margin and the lanes past N (a buffer from the pool: every
/// value but the padding is written).
pub(super) fn interleave_input(input: &[f32], ld: &LaneDims) -> Pooled {
    let d = &ld.d;
    let image_len = d.c * d.h * d.w;
    let mut out = Pooled::take(Role::Input, *ld, ld.groups * ld.group_input_len() * LANES);
    out.par_chunks_mut(ld.group_input_len() * LANES)
        .zip(input.par_chunks(LANES * image_len))
        .for_each(|(group, images)| {
            let (group, _) = group.as_chunks_mut::<LANES>();
            with_flat(image_len, |flat| {
                transpose_to_lanes(images, image_len, flat);
                for (row_idx, row) in flat.chunks_exact(d.w).enumerate() {
                    let at = ld.padded_row_start(row_idx);
                    group[at..at + d.w].copy_from_slice(row);
                }
            })
        });
    out
}

/// `[N, K, OH, OW]` -> `[groups, OH, ...]` vectors in the row layout `rows`, zeros in the
/// padding: the layout the backward kernels read the output gradient in.
pub(super) fn interleave_output(d_out: &[f32], ld: &LaneDims, rows: RowLayout) -> Pooled {
    let d = &ld.d;
    let image_len = d.k * d.oh * d.ow;
    let group_len = d.oh * rows.row_len;
    let mut out = Pooled::take(Role::OutputGrad, *ld, ld.groups * group_len * LANES);
    out.par_chunks_mut(group_len * LANES)
        .zip(d_out.par_chunks(LANES * image_len))
        .for_each(|(group, images)| {
            let (group, _) = group.as_chunks_mut::<LANES>();
            with_flat(image_len, |flat| {
                transpose_to_lanes(images, image_len, flat);
                for (row_idx, row) in flat.chunks_exact(d.ow).enumerate() {
                    let at = rows.image_row_start(row_idx, d.oh);
                    let dst = group[at..].iter_mut().step_by(rows.ow_stride);
                    for (v, value) in dst.zip(row) {
                        *v = *value;
                    }
                }
            })
        });
    out
}

/// The inverse of `interleave_output` for rows by channel: `[groups, OH, K', OW']` vectors ->
/// `[N, K, OH, OW]`.
pub(super) fn deinterleave_output(src: &[f32], ld: &LaneDims, rows: RowLayout) -> Tensor {
    let d = &ld.d;
    let image_len = d.k * d.oh * d.ow;
    let group_len = d.oh * rows.row_len;
    assert_eq!(
        rows.ow_stride, 1,
        "deinterleave_output reads rows by channel"
    );
    let mut out = Tensor::zeros(&[d.n, d.k, d.oh, d.ow]);
    out.data_mut()
        .par_chunks_mut(LANES * image_len)
        .zip(src.par_chunks(group_len * LANES))
        .for_each(|(images, group)| {
            let (group, _) = group.as_chunks::<LANES>();
            with_flat(image_len, |flat| {
                for (row_idx, row) in flat.chunks_exact_mut(d.ow).enumerate() {
                    let at = rows.image_row_start(row_idx, d.oh);
                    row.copy_from_slice(&group[at..at + d.ow]);
                }
                transpose_from_lanes(flat, images, image_len);
            })
        });
    out
}

/// The inverse of `interleave_input`, dropping the border: `[groups, C, HP, WP]` vectors ->
/// `[N, C, H, W]`.
pub(super) fn deinterleave_input(src: &[f32], ld: &LaneDims) -> Tensor {
    let d = &ld.d;
    let image_len = d.c * d.h * d.w;
    let mut out = Tensor::zeros(&[d.n, d.c, d.h, d.w]);
    out.data_mut()
        .par_chunks_mut(LANES * image_len)
        .zip(src.par_chunks(ld.group_input_len() * LANES))
        .for_each(|(images, group)| {
            let (group, _) = group.as_chunks::<LANES>();
            with_flat(image_len, |flat| {
                for (row_idx, row) in flat.chunks_exact_mut(d.w).enumerate() {
                    let at = ld.padded_row_start(row_idx);
                    row.copy_from_slice(&group[at..at + d.w]);
                }
                transpose_from_lanes(flat, images, image_len);
            })
        });
    out
}

/// `weight [K, C, KH, KW]` -> blocks of `rows` output channels, `[K / rows, C·KH·KW, rows]`,
/// zero in the channels past K: the KB weights a forward or weight-gradient tile
/// broadcasts are then side by side.
pub(super) fn weight_by_channel_blocks(weight: &[f32], d: &ConvDims, rows: usize) -> Vec<f32> {
    let col_rows = d.col_rows();
    let n_blocks = d.k.div_ceil(rows);
    let mut out = vec![0.0f32; n_blocks * col_rows * rows];
    for (k, filter) in weight.chunks(col_rows).enumerate() {
        let (block, kk) = (k / rows, k % rows);
        for (r, &value) in filter.iter().enumerate() {
            out[(block * col_rows + r) * rows + kk] = value;
        }
    }
    out
}

/// `weight [K, C, KH, KW]` -> `[C, KH, KW / cols, K, cols]`, zero in the kernel columns
/// past KW: the RB weights of one input-gradient tile side by side.
pub(super) fn weight_by_column_blocks(weight: &[f32], d: &ConvDims, cols: usize) -> Vec<f32> {
    let n_blocks = d.kw.div_ceil(cols);
    let mut out = vec![0.0f32; d.c * d.kh * n_blocks * d.k * cols];
    for k in 0..d.k {
        for c in 0..d.c {
            for kh in 0..d.kh {
                for kw in 0..d.kw {
                    let value = weight[((k * d.c + c) * d.kh + kh) * d.kw + kw];
                    let block = (c * d.kh + kh) * n_blocks + kw / cols;
                    out[(block * d.k + k) * cols + kw % cols] = value;
                }
            }
        }
    }
    out
}
