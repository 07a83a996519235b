//! Interleaving a batch into lane groups and back, and the weight layouts the kernels read.
//! Shapes as in the parent module.

use super::{LaneDims, Lanes, Tail, LANES};
use crate::ops::conv::ConvDims;
use crate::simd::{simd_kernel, Simd};

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

simd_kernel!(narrow, fn lanes_to_rows<>(
    src: &[Lanes],
    images: &mut [f32],
    image_len: usize,
    row_start: usize,
) => lanes_to_rows_with);

/// The inverse of `rows_to_lanes` for one row of each image in `images` (`[n, image_len]`,
/// n <= L): `images[l][row_start + i]` = lane l of `src[i]`, for every i of `src`.
#[inline(always)]
fn lanes_to_rows_with<S: Simd>(
    s: S,
    src: &[Lanes],
    images: &mut [f32],
    image_len: usize,
    row_start: usize,
) {
    let n_images = images.len() / image_len;
    let (blocks, rest) = src.as_chunks::<LANES>();
    for (b, block) in blocks.iter().enumerate() {
        let columns: [S::V; LANES] = std::array::from_fn(|i| s.load(&block[i]));
        for (l, row) in s.transpose(columns).into_iter().take(n_images).enumerate() {
            let at = l * image_len + row_start + b * LANES;
            images[at..at + LANES].copy_from_slice(&s.store(row));
        }
    }
    let done = blocks.len() * LANES;
    for (l, image) in images.chunks_exact_mut(image_len).enumerate() {
        for (i, v) in rest.iter().enumerate() {
            image[row_start + done + i] = v[l];
        }
    }
}

/// The inverse of `interleave_output` for a full group, rows by channel: one lane group's
/// `[OH, K', OW']` vectors -> its images `[n, K, OH, OW]`.
pub(super) fn deinterleave_output_group(
    group: &[f32],
    ld: &LaneDims,
    rows: RowLayout,
    images: &mut [f32],
) {
    let d = &ld.d;
    assert_eq!(
        rows.ow_stride, 1,
        "deinterleave_output_group reads rows by channel"
    );
    let (group, _) = group.as_chunks::<LANES>();
    for row_idx in 0..d.k * d.oh {
        let at = rows.image_row_start(row_idx, d.oh);
        lanes_to_rows(
            &group[at..at + d.ow],
            images,
            d.k * d.oh * d.ow,
            row_idx * d.ow,
        );
    }
}

/// The inverse of `interleave_input` for a full group, dropping the border: one lane group's
/// `[C, HP, WP]` vectors -> its images `[n, C, H, W]`.
pub(super) fn deinterleave_input_group(group: &[f32], ld: &LaneDims, images: &mut [f32]) {
    let d = &ld.d;
    let (group, _) = group.as_chunks::<LANES>();
    for row_idx in 0..d.c * d.h {
        let at = ld.padded_row_start(row_idx);
        lanes_to_rows(&group[at..at + d.w], images, d.c * d.h * d.w, row_idx * d.w);
    }
}

/// A lane group's input, `[C, HP, WP]` vectors of the group's dims `group_ld`, from the batch
/// `input` `[N, C, H, W]` of the layer `ld`. `lane(l)` says what lane l holds: (image n of
/// the batch, first output row oh0), or `None` for an empty lane; a full group's lane l holds
/// image g·L + l from row 0, the tail's hold bands of rows (`Tail`). Lane l gets the
/// zero-padded rows of its image that its output rows from oh0 on read; zeros above and
/// below the image and in the empty lanes. The border columns and the margin are left as
/// they are (zero in a buffer from the pool).
pub(super) fn interleave_input(
    input: &[f32],
    ld: &LaneDims,
    group_ld: &LaneDims,
    lane: impl Fn(usize) -> Option<(usize, usize)>,
    group: &mut [f32],
) {
    let d = &ld.d;
    let image_len = d.c * d.h * d.w;
    let zeros = vec![0.0f32; d.w];
    let (group, _) = group.as_chunks_mut::<LANES>();
    for c in 0..d.c {
        for yp in 0..group_ld.hp {
            let src: [&[f32]; LANES] = std::array::from_fn(|l| {
                let row = lane(l).and_then(|(n, oh0)| {
                    let y = (oh0 * d.stride + yp).checked_sub(d.padding)?;
                    (y < d.h).then(|| &input[n * image_len + (c * d.h + y) * d.w..][..d.w])
                });
                row.unwrap_or(&zeros)
            });
            let at = (c * group_ld.hp + yp) * group_ld.wp + d.padding;
            rows_to_lanes(src, &mut group[at..at + d.w], 1);
        }
    }
}

/// A lane group's output gradient, `[band, ...]` vectors in the row layout `rows`, from the
/// batch `d_out` `[N, K, OH, OW]`: lane l holds `band` output rows of its image from oh0 on
/// (`lane` as for `interleave_input`); zeros past the last output row and in the empty
/// lanes. The layout the backward kernels
/// read.
pub(super) fn interleave_output(
    d_out: &[f32],
    ld: &LaneDims,
    band: usize,
    lane: impl Fn(usize) -> Option<(usize, usize)>,
    rows: RowLayout,
    group: &mut [f32],
) {
    let d = &ld.d;
    let image_len = d.k * d.oh * d.ow;
    let zeros = vec![0.0f32; d.ow];
    let (group, _) = group.as_chunks_mut::<LANES>();
    for k in 0..d.k {
        for oh in 0..band {
            let src: [&[f32]; LANES] = std::array::from_fn(|l| {
                let row = lane(l).and_then(|(n, oh0)| {
                    (oh0 + oh < d.oh)
                        .then(|| &d_out[n * image_len + (k * d.oh + oh0 + oh) * d.ow..][..d.ow])
                });
                row.unwrap_or(&zeros)
            });
            let at = rows.image_row_start(k * band + oh, band);
            rows_to_lanes(src, &mut group[at..], rows.ow_stride);
        }
    }
}

/// The inverse of `interleave_output` for the tail, rows by channel: the tail group's vectors ->
/// its images `[r, K, OH, OW]`, each output row from the one lane whose band holds it.
pub(super) fn deinterleave_output_tail(
    group: &[f32],
    ld: &LaneDims,
    tail: &Tail,
    rows: RowLayout,
    images: &mut [f32],
) {
    let d = &ld.d;
    let image_len = d.k * d.oh * d.ow;
    let (group, _) = group.as_chunks::<LANES>();
    for l in 0..LANES {
        let Some((n, oh0)) = tail.lane(l) else { break };
        let image = &mut images[(n - tail.first) * image_len..][..image_len];
        for k in 0..d.k {
            for oh in 0..tail.band.min(d.oh - oh0) {
                let at = rows.image_row_start(k * tail.band + oh, tail.band);
                let row = &mut image[(k * d.oh + oh0 + oh) * d.ow..][..d.ow];
                for (v, src) in row.iter_mut().zip(&group[at..]) {
                    *v = src[l];
                }
            }
        }
    }
}

/// The inverse of `interleave_input` for the tail's input gradient: each pixel of the tail's
/// images `[r, C, H, W]` is the sum, in band order, of what the bands that read it hold for
/// it (a pixel no band reads gets zero).
pub(super) fn deinterleave_input_tail(
    group: &[f32],
    ld: &LaneDims,
    tail: &Tail,
    images: &mut [f32],
) {
    let (d, t) = (&ld.d, &tail.ld);
    let (group, _) = group.as_chunks::<LANES>();
    for (i, image) in images.chunks_exact_mut(d.c * d.h * d.w).enumerate() {
        for (row_idx, row) in image.chunks_exact_mut(d.w).enumerate() {
            let (c, y) = (row_idx / d.h, row_idx % d.h);
            let mut first = true;
            for part in 0..tail.parts {
                let l = i * tail.parts + part;
                let Some(yp) = (y + d.padding).checked_sub(part * tail.band * d.stride) else {
                    break;
                };
                if yp >= t.hp {
                    continue;
                }
                let src = &group[(c * t.hp + yp) * t.wp + d.padding..][..d.w];
                for (v, s) in row.iter_mut().zip(src) {
                    *v = if first { s[l] } else { *v + s[l] };
                }
                first = false;
            }
            if first {
                row.fill(0.0);
            }
        }
    }
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
