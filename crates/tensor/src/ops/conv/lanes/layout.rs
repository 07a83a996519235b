//! Interleaving a batch into lane groups and back, and the weight layouts the kernels read.
//! Shapes as in the parent module.

use rayon::prelude::*;

use super::pool::{Pooled, Role};
use super::{LaneDims, Lanes, LANES};
use crate::ops::conv::ConvDims;
use crate::simd::{simd_kernel, Simd};
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

simd_kernel!(narrow, fn rows_to_lanes<>(
    src: [&[f32]; LANES],
    dst: &mut [Lanes],
    stride: usize,
) => rows_to_lanes_with);

/// Moves `LANES` image rows into vectors: lane l of `dst[i · stride]` = `src[l][i]`. Blocks
/// of L columns of the L rows are transposed as L x L squares (moves only: the same values
/// on every code path).
#[inline(always)]
fn rows_to_lanes_with<S: Simd>(s: S, src: [&[f32]; LANES], dst: &mut [Lanes], stride: usize) {
    let len = src[0].len();
    let blocked = len - len % LANES;
    for x0 in (0..blocked).step_by(LANES) {
        let square: [S::V; LANES] =
            std::array::from_fn(|l| s.load(src[l][x0..].first_chunk().expect("L values")));
        for (i, column) in s.transpose(square).into_iter().enumerate() {
            dst[(x0 + i) * stride] = s.store(column);
        }
    }
    for i in blocked..len {
        dst[i * stride] = std::array::from_fn(|l| src[l][i]);
    }
}

/// The L images of `group` in `batch` (`[N, image_len]`): lane l reads image group·L + l,
/// or `zeros` (at least `image_len` long) past the last image.
fn group_images<'a>(
    batch: &'a [f32],
    image_len: usize,
    group: usize,
    zeros: &'a [f32],
) -> [&'a [f32]; LANES] {
    std::array::from_fn(|l| {
        let at = (group * LANES + l) * image_len;
        batch.get(at..at + image_len).unwrap_or_else(|| &zeros[..image_len])
    })
}

/// `[N, C, H, W]` -> `[groups, C, HP, WP]` vectors: image `g·L + l` in lane `l` of group `g`,
/// zeros in the border, the margin and the lanes past N (a buffer from the pool: every
/// value but the padding is written). One task per (group, channel) plane.
pub(super) fn interleave_input(input: &[f32], ld: &LaneDims) -> Pooled {
    let d = &ld.d;
    let (plane, image_len) = (d.h * d.w, d.c * d.h * d.w);
    let zeros = vec![0.0f32; if d.n % LANES == 0 { 0 } else { image_len }];
    let mut out = Pooled::take(Role::Input, *ld, ld.groups * ld.group_input_len() * LANES);
    out.par_chunks_mut(ld.hp * ld.wp * LANES)
        .enumerate()
        .for_each(|(task, dst)| {
            let (group, c) = (task / d.c, task % d.c);
            let images = group_images(input, image_len, group, &zeros);
            let (dst, _) = dst.as_chunks_mut::<LANES>();
            for y in 0..d.h {
                let src = images.map(|image| &image[c * plane + y * d.w..][..d.w]);
                let at = ld.padded_row_start(y);
                rows_to_lanes(src, &mut dst[at..at + d.w], 1);
            }
        });
    out
}

/// `[N, K, OH, OW]` -> `[groups, OH, ...]` vectors in the row layout `rows`, zeros in the
/// padding: the layout the backward kernels read the output gradient in. One task per
/// (group, output row).
pub(super) fn interleave_output(d_out: &[f32], ld: &LaneDims, rows: RowLayout) -> Pooled {
    let d = &ld.d;
    let image_len = d.k * d.oh * d.ow;
    let zeros = vec![0.0f32; if d.n % LANES == 0 { 0 } else { image_len }];
    let mut out = Pooled::take(Role::OutputGrad, *ld, ld.groups * d.oh * rows.row_len * LANES);
    out.par_chunks_mut(rows.row_len * LANES)
        .enumerate()
        .for_each(|(task, dst)| {
            let (group, oh) = (task / d.oh, task % d.oh);
            let images = group_images(d_out, image_len, group, &zeros);
            let (dst, _) = dst.as_chunks_mut::<LANES>();
            for k in 0..d.k {
                let src = images.map(|image| &image[(k * d.oh + oh) * d.ow..][..d.ow]);
                rows_to_lanes(src, &mut dst[rows.at(k, 0)..], rows.ow_stride);
            }
        });
    out
}

/// Lane `l` of `src[i]` into `dst[i]`, for every i of `dst`.
fn lane_of(src: &[Lanes], l: usize, dst: &mut [f32]) {
    for (v, s) in dst.iter_mut().zip(src) {
        *v = s[l];
    }
}

/// The inverse of `interleave_output` for rows by channel: `[groups, OH, K', OW']` vectors ->
/// `[N, K, OH, OW]`, one task per image.
pub(super) fn deinterleave_output(src: &[f32], ld: &LaneDims, rows: RowLayout) -> Tensor {
    let d = &ld.d;
    let group_len = d.oh * rows.row_len * LANES;
    assert_eq!(
        rows.ow_stride, 1,
        "deinterleave_output reads rows by channel"
    );
    let mut out = Tensor::zeros(&[d.n, d.k, d.oh, d.ow]);
    out.data_mut()
        .par_chunks_mut(d.k * d.oh * d.ow)
        .enumerate()
        .for_each(|(n, image)| {
            let group = super::lane_group(src, n / LANES, group_len);
            for (row_idx, row) in image.chunks_exact_mut(d.ow).enumerate() {
                lane_of(&group[rows.image_row_start(row_idx, d.oh)..], n % LANES, row);
            }
        });
    out
}

/// The inverse of `interleave_input`, dropping the border: `[groups, C, HP, WP]` vectors ->
/// `[N, C, H, W]`, one task per image.
pub(super) fn deinterleave_input(src: &[f32], ld: &LaneDims) -> Tensor {
    let d = &ld.d;
    let group_len = ld.group_input_len() * LANES;
    let mut out = Tensor::zeros(&[d.n, d.c, d.h, d.w]);
    out.data_mut()
        .par_chunks_mut(d.c * d.h * d.w)
        .enumerate()
        .for_each(|(n, image)| {
            let group = super::lane_group(src, n / LANES, group_len);
            for (row_idx, row) in image.chunks_exact_mut(d.w).enumerate() {
                lane_of(&group[ld.padded_row_start(row_idx)..], n % LANES, row);
            }
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
