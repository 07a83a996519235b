//! The direct convolution with images in vector lanes.
//!
//! Shapes as in the parent module: N batch, C input channels, K output channels, H/W input
//! height and width, KH/KW kernel, OH/OW output; L = `LANES` images side by side.
//!
//! The batch is cut into lane groups of L images, and each group is interleaved so that the
//! L images' values of one pixel sit side by side: a group's input is `[C, HP, WP]` vectors
//! of L values, with a zero border of `padding` and zero margin columns on the right
//! (`LaneDims`). Then every multiply-add of the convolution, whatever the layer's shape, is
//! one vector multiply-add over L images: a layer with few output channels (conv1 of
//! lenet5-bn has K = 6) or few output positions (conv2 has 10x10) fills every lane, where
//! im2col + GEMM leaves GEMM tiles half empty and spends more time copying than computing.
//!
//! Each kernel keeps a tile of accumulator vectors in registers while it walks the rest:
//! - forward, `out[k, oh, ow] = b[k] + Σ_{c,kh,kw} W[k, c, kh, kw] · x[c, oh·s + kh, ow·s + kw]`:
//!   a tile is KB output channels × PB output columns of one output row;
//! - weight gradient, `dW[k, c, kh, kw] = Σ_{oh,ow} d_out[k, oh, ow] · x[c, oh·s + kh, ow·s + kw]`:
//!   a tile is KB output channels × RB kernel columns, summed over the output positions;
//! - input gradient, scattered: `d_input[c, oh·s + kh, ow·s + kw] += Σ_k W[k, c, kh, kw] ·
//!   d_out[k, oh, ow]`: a tile is RB kernel columns × PB output columns, summed over k, then
//!   added onto the pixels it came from.
//!
//! Each lane does the same sequence of fused multiply-adds (`f32::mul_add`) whatever the
//! lane, the group or the CPU: the vector code (compiled for AVX-512 or AVX2 and picked at
//! run time) and the portable fallback give the same bits, only at different speeds.

use multiversion::multiversion;
use rayon::prelude::*;

use super::{ConvDims, ConvGrads};
use crate::parallel::sum_over_groups;
use crate::profile;
use crate::tensor::Tensor;

/// Images per vector: 8 f32 fill one 256-bit register, which both AVX2 and AVX-512 machines
/// multiply-add at full rate (Zen 4 splits a 512-bit operation in two), and a batch of 50
/// wastes only 6 lanes in 56 where 16 lanes would waste 14 in 64.
pub const LANES: usize = 8;

/// One value of each of the L images of a group.
type Lanes = [f32; LANES];

/// `acc + a · x`, lane by lane, each lane one fused multiply-add. Values in, value out: the
/// form the compiler turns into one vector instruction.
#[inline(always)]
fn fma_lanes(a: Lanes, x: Lanes, acc: Lanes) -> Lanes {
    std::array::from_fn(|l| a[l].mul_add(x[l], acc[l]))
}

/// The vector code paths: AVX-512 (with its 32 vector registers) and AVX2, each with FMA.
/// The function the attribute marks is also compiled for the baseline CPU, the fallback.
macro_rules! simd_targets {
    ($item:item) => {
        #[multiversion(targets("x86_64+avx512f+avx512vl+fma", "x86_64+avx2+fma"))]
        $item
    };
}

/// Tile sizes of one layer's three kernels, chosen from the shapes alone (so the bits do
/// not depend on the machine): the tile that wastes the fewest multiply-adds on padding,
/// and of those the largest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaneTiles {
    /// Forward: KB output channels × PB output columns.
    pub forward: (usize, usize),
    /// Weight gradient: KB output channels × RB kernel columns.
    pub weight_grad: (usize, usize),
    /// Input gradient: RB kernel columns × PB output columns.
    pub input_grad: (usize, usize),
}

/// The (rows, cols) tiles each kernel is compiled for: at most 25 accumulator vectors, so
/// that they stay in the 32 registers of AVX-512 beside the operands.
const FORWARD_TILES: [(usize, usize); 5] = [(6, 4), (4, 6), (4, 5), (8, 3), (3, 8)];
const WEIGHT_GRAD_TILES: [(usize, usize); 5] = [(3, 5), (4, 5), (4, 3), (6, 3), (8, 3)];
const INPUT_GRAD_TILES: [(usize, usize); 4] = [(5, 5), (5, 4), (3, 8), (3, 6)];

/// Of `tiles`, the one whose padded extent `round_up(rows) · round_up(cols)` is least, the
/// largest tile on a tie.
fn best_tile(tiles: &[(usize, usize)], rows: usize, cols: usize) -> (usize, usize) {
    let work = |&(r, c): &(usize, usize)| rows.next_multiple_of(r) * cols.next_multiple_of(c);
    let best = tiles.iter().map(work).min().expect("a tile");
    *tiles
        .iter()
        .filter(|t| work(t) == best)
        .max_by_key(|(r, c)| r * c)
        .expect("a tile")
}

/// The sizes of one layer's interleaved buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaneDims {
    pub d: ConvDims,
    pub tiles: LaneTiles,
    /// Lane groups: N / L rounded up.
    pub groups: usize,
    /// Input rows with the zero border: H + 2·padding.
    pub hp: usize,
    /// Input columns with the zero border and enough margin for every tile's reads.
    pub wp: usize,
    /// Output channels and columns of the forward result, rounded up to its tile.
    pub k_fwd: usize,
    pub ow_fwd: usize,
    /// Output channels rounded up to the weight-gradient tile.
    pub k_dw: usize,
    /// Output columns rounded up to the input-gradient tile.
    pub ow_dx: usize,
}

/// Where one lane group's output (or output gradient) row `oh` keeps the vector of
/// (k, ow): at `oh·row_len + (k / k_block)·block_len + ow·k_block + k % k_block` for rows by
/// position, `[K' / KB, OW, KB]`, and at `oh·row_len + k·ow_len + ow` for rows by channel,
/// `[K', OW']`. The forward result and the input-gradient kernel use rows by channel, whose
/// tiles run along ow; the weight-gradient kernel uses rows by position, whose KB channels
/// at one position lie side by side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RowLayout {
    k_stride: usize,
    ow_stride: usize,
    k_block: usize,
    block_len: usize,
    row_len: usize,
}

impl RowLayout {
    fn by_channel(k_len: usize, ow_len: usize) -> RowLayout {
        RowLayout {
            k_stride: ow_len,
            ow_stride: 1,
            k_block: k_len,
            block_len: k_len * ow_len,
            row_len: k_len * ow_len,
        }
    }

    fn by_position(k_len: usize, ow_len: usize, k_block: usize) -> RowLayout {
        RowLayout {
            k_stride: 1,
            ow_stride: k_block,
            k_block,
            block_len: ow_len * k_block,
            row_len: k_len * ow_len,
        }
    }

    /// The index of (k, ow) in a row.
    fn at(&self, k: usize, ow: usize) -> usize {
        (k / self.k_block) * self.block_len + (k % self.k_block) * self.k_stride + ow * self.ow_stride
    }
}

impl LaneDims {
    pub fn new(d: ConvDims) -> LaneDims {
        let tiles = LaneTiles {
            forward: best_tile(&FORWARD_TILES, d.k, d.ow),
            weight_grad: best_tile(&WEIGHT_GRAD_TILES, d.k, d.kw),
            input_grad: best_tile(&INPUT_GRAD_TILES, d.kw, d.ow),
        };
        let (kb_fwd, pb_fwd) = tiles.forward;
        let (kb_dw, rb_dw) = tiles.weight_grad;
        let (rb_dx, pb_dx) = tiles.input_grad;
        let (ow_fwd, ow_dx) = (d.ow.next_multiple_of(pb_fwd), d.ow.next_multiple_of(pb_dx));
        // The right-most column each kernel touches, plus one.
        let reach = [
            (ow_fwd - 1) * d.stride + d.kw,
            (d.ow - 1) * d.stride + d.kw.next_multiple_of(rb_dw),
            (ow_dx - 1) * d.stride + d.kw.next_multiple_of(rb_dx),
        ];
        LaneDims {
            d,
            tiles,
            groups: d.n.div_ceil(LANES),
            hp: d.h + 2 * d.padding,
            wp: reach.into_iter().fold(d.w + 2 * d.padding, usize::max),
            k_fwd: d.k.next_multiple_of(kb_fwd),
            ow_fwd,
            k_dw: d.k.next_multiple_of(kb_dw),
            ow_dx,
        }
    }

    /// Vectors in one group's interleaved input (or input gradient): C·HP·WP.
    fn group_input_len(&self) -> usize {
        self.d.c * self.hp * self.wp
    }
}

/// Fills `dst[i]` with value `at + i` of each of the images in `images` (`image_len` values
/// each; lane l from image l), zero in the lanes past the last image.
#[inline]
fn gather_lanes<'a>(
    images: &[f32],
    image_len: usize,
    at: usize,
    dst: impl ExactSizeIterator<Item = &'a mut Lanes>,
) {
    let len = dst.len();
    let n_images = images.len() / image_len;
    let zeros = [0.0f32; 64];
    let rows: [&[f32]; LANES] = std::array::from_fn(|l| {
        if l < n_images {
            &images[l * image_len + at..][..len]
        } else {
            &zeros[..len.min(zeros.len())]
        }
    });
    if n_images < LANES && len > zeros.len() {
        // A short last group with rows longer than the zero row: lane by lane.
        for (i, v) in dst.enumerate() {
            *v = std::array::from_fn(|l| if l < n_images { rows[l][i] } else { 0.0 });
        }
        return;
    }
    for (i, v) in dst.enumerate() {
        *v = std::array::from_fn(|l| rows[l][i]);
    }
}

/// The inverse of `gather_lanes`: value `at + i` of image l is lane l of `src[i]`, for the
/// images in `images`.
#[inline]
fn scatter_lanes(src: &[Lanes], images: &mut [f32], image_len: usize, at: usize) {
    for (l, image) in images.chunks_mut(image_len).enumerate() {
        for (value, v) in image[at..at + src.len()].iter_mut().zip(src) {
            *value = v[l];
        }
    }
}

/// `[N, C, H, W]` -> `[groups, C, HP, WP]` vectors: image `g·L + l` in lane `l` of group `g`,
/// zeros in the border, the margin and the lanes past N.
fn interleave_input(input: &[f32], ld: &LaneDims) -> Vec<f32> {
    let d = &ld.d;
    let image_len = d.c * d.h * d.w;
    let mut out = vec![0.0f32; ld.groups * ld.group_input_len() * LANES];
    out.par_chunks_mut(ld.group_input_len() * LANES)
        .zip(input.par_chunks(LANES * image_len))
        .for_each(|(group, images)| {
            let (group, _) = group.as_chunks_mut::<LANES>();
            for c in 0..d.c {
                for y in 0..d.h {
                    let at = (c * ld.hp + y + d.padding) * ld.wp + d.padding;
                    let dst = group[at..at + d.w].iter_mut();
                    gather_lanes(images, image_len, (c * d.h + y) * d.w, dst);
                }
            }
        });
    out
}

/// `[N, K, OH, OW]` -> `[groups, OH, ...]` vectors in the row layout `rows`, zeros in the
/// padding: the layout the backward kernels read the output gradient in.
fn interleave_output(d_out: &[f32], ld: &LaneDims, rows: RowLayout) -> Vec<f32> {
    let d = &ld.d;
    let image_len = d.k * d.oh * d.ow;
    let group_len = d.oh * rows.row_len;
    let mut out = vec![0.0f32; ld.groups * group_len * LANES];
    out.par_chunks_mut(group_len * LANES)
        .zip(d_out.par_chunks(LANES * image_len))
        .for_each(|(group, images)| {
            let (group, _) = group.as_chunks_mut::<LANES>();
            for k in 0..d.k {
                for oh in 0..d.oh {
                    let at = oh * rows.row_len + rows.at(k, 0);
                    let dst = group[at..].iter_mut().step_by(rows.ow_stride).take(d.ow);
                    gather_lanes(images, image_len, (k * d.oh + oh) * d.ow, dst);
                }
            }
        });
    out
}

/// The inverse of `interleave_output` for rows by channel: `[groups, OH, K', OW']` vectors ->
/// `[N, K, OH, OW]`.
fn deinterleave_output(src: &[f32], ld: &LaneDims, rows: RowLayout) -> Tensor {
    let d = &ld.d;
    let image_len = d.k * d.oh * d.ow;
    let group_len = d.oh * rows.row_len;
    assert_eq!(rows.ow_stride, 1, "deinterleave_output reads rows by channel");
    let mut out = Tensor::zeros(&[d.n, d.k, d.oh, d.ow]);
    out.data_mut()
        .par_chunks_mut(LANES * image_len)
        .zip(src.par_chunks(group_len * LANES))
        .for_each(|(images, group)| {
            let (group, _) = group.as_chunks::<LANES>();
            for k in 0..d.k {
                for oh in 0..d.oh {
                    let at = oh * rows.row_len + rows.at(k, 0);
                    scatter_lanes(&group[at..at + d.ow], images, image_len, (k * d.oh + oh) * d.ow);
                }
            }
        });
    out
}

/// The inverse of `interleave_input`, dropping the border: `[groups, C, HP, WP]` vectors ->
/// `[N, C, H, W]`.
fn deinterleave_input(src: &[f32], ld: &LaneDims) -> Tensor {
    let d = &ld.d;
    let image_len = d.c * d.h * d.w;
    let mut out = Tensor::zeros(&[d.n, d.c, d.h, d.w]);
    out.data_mut()
        .par_chunks_mut(LANES * image_len)
        .zip(src.par_chunks(ld.group_input_len() * LANES))
        .for_each(|(images, group)| {
            let (group, _) = group.as_chunks::<LANES>();
            for c in 0..d.c {
                for y in 0..d.h {
                    let at = (c * ld.hp + y + d.padding) * ld.wp + d.padding;
                    scatter_lanes(&group[at..at + d.w], images, image_len, (c * d.h + y) * d.w);
                }
            }
        });
    out
}

/// `weight [K, C, KH, KW]` -> blocks of `rows` output channels, `[K / rows, C·KH·KW, rows]`,
/// zero in the channels past K: the KB weights a forward or weight-gradient tile
/// broadcasts are then side by side.
fn weight_by_channel_blocks(weight: &[f32], d: &ConvDims, rows: usize) -> Vec<f32> {
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
fn weight_by_column_blocks(weight: &[f32], d: &ConvDims, cols: usize) -> Vec<f32> {
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

/// `[N, C, H, W] -> [N, K, OH, OW]`: bias, then one tile of KB × PB accumulators at a time,
/// each lane group's output rows in parallel.
pub(super) fn lanes_forward(input: &Tensor, weight: &Tensor, bias: &Tensor, d: &ConvDims) -> Tensor {
    let ld = LaneDims::new(*d);
    let (kb, pb) = ld.tiles.forward;
    let x = interleave_input(input.data(), &ld);
    let w = weight_by_channel_blocks(weight.data(), d, kb);
    let mut b = bias.data().to_vec();
    b.resize(ld.k_fwd, 0.0);

    let rows = RowLayout::by_channel(ld.k_fwd, ld.ow_fwd);
    let group_input_len = ld.group_input_len() * LANES;
    let mut out = vec![0.0f32; ld.groups * d.oh * rows.row_len * LANES];
    out.par_chunks_mut(rows.row_len * LANES)
        .enumerate()
        .for_each(|(task, out_row)| {
            let (group, oh) = (task / d.oh, task % d.oh);
            let (x_group, _) = x[group * group_input_len..][..group_input_len].as_chunks::<LANES>();
            let (out_row, _) = out_row.as_chunks_mut::<LANES>();
            let args = (x_group, w.as_slice(), b.as_slice(), &ld, oh);
            match (kb, pb) {
                (6, 4) => forward_row::<6, 4>(args, out_row),
                (4, 6) => forward_row::<4, 6>(args, out_row),
                (4, 5) => forward_row::<4, 5>(args, out_row),
                (8, 3) => forward_row::<8, 3>(args, out_row),
                (3, 8) => forward_row::<3, 8>(args, out_row),
                tile => unreachable!("no forward kernel for the tile {tile:?}"),
            }
        });
    deinterleave_output(&out, &ld, rows)
}

/// What the forward row kernel reads: a group's input `[C, HP, WP]`, the weight blocks,
/// the bias (padded to `k_fwd`), the dims and the output row `oh`.
type ForwardArgs<'a> = (&'a [Lanes], &'a [f32], &'a [f32], &'a LaneDims, usize);

simd_targets! {
/// One output row `oh` of one lane group, `[k_fwd, ow_fwd]` vectors (overwritten).
fn forward_row<const KB: usize, const PB: usize>(args: ForwardArgs<'_>, out_row: &mut [Lanes]) {
    let (x, w, bias, ld, oh) = args;
    let d = &ld.d;
    let col_rows = d.col_rows();
    let (w_blocks, _) = w.as_chunks::<KB>();
    for k0 in (0..ld.k_fwd).step_by(KB) {
        let w_block = &w_blocks[k0 / KB * col_rows..][..col_rows];
        for ow0 in (0..ld.ow_fwd).step_by(PB) {
            // 1. the accumulators start at the bias
            let mut acc = [[[0.0f32; LANES]; PB]; KB];
            for (acc_k, &b) in acc.iter_mut().zip(&bias[k0..k0 + KB]) {
                *acc_k = [[b; LANES]; PB];
            }

            // 2. acc[kk][pb] += W[k0 + kk, c, kh, kw] · x[c, oh·s + kh, (ow0 + pb)·s + kw]
            for c in 0..d.c {
                for kh in 0..d.kh {
                    let y = oh * d.stride + kh;
                    let x_row = &x[(c * ld.hp + y) * ld.wp..][..ld.wp];
                    for kw in 0..d.kw {
                        let w_k = w_block[(c * d.kh + kh) * d.kw + kw];
                        let x_v: [Lanes; PB] =
                            std::array::from_fn(|pb| x_row[(ow0 + pb) * d.stride + kw]);
                        for (acc_k, &w) in acc.iter_mut().zip(&w_k) {
                            for (a, &x_p) in acc_k.iter_mut().zip(&x_v) {
                                *a = fma_lanes([w; LANES], x_p, *a);
                            }
                        }
                    }
                }
            }

            // 3. store the tile
            for (kk, acc_k) in acc.iter().enumerate() {
                let at = (k0 + kk) * ld.ow_fwd + ow0;
                out_row[at..at + PB].copy_from_slice(acc_k);
            }
        }
    }
}
}

/// Gradients of `lanes_forward`, into fresh tensors: dW and db summed over the lane groups in
/// a fixed order, d_input (when asked for) scattered plane by plane.
pub(super) fn lanes_backward(
    input: &Tensor,
    weight: &Tensor,
    d_out: &Tensor,
    d: &ConvDims,
    want_input: bool,
) -> ConvGrads {
    let ld = LaneDims::new(*d);
    let group_input_len = ld.group_input_len() * LANES;
    let col_rows = d.col_rows();
    // One layout of the output gradient serves both kernels.
    let rows = RowLayout::by_position(ld.k_dw, ld.ow_dx, ld.tiles.weight_grad.0);
    let (x, g) = profile::time("conv2d.lanes.interleave", || {
        (
            interleave_input(input.data(), &ld),
            interleave_output(d_out.data(), &ld, rows),
        )
    });
    let group_grad_len = d.oh * rows.row_len * LANES;

    // dW[k, c, kh, kw] = Σ_{oh,ow} d_out[k, oh, ow] · x[c, oh·s + kh, ow·s + kw] and
    // db[k] = Σ_{oh,ow} d_out[k, oh, ow], one lane group per partial sum.
    let grads = profile::time("conv2d.lanes.weight_grad", || {
        let group_grad_len = d.oh * rows.row_len * LANES;
        sum_over_groups(ld.groups, 1, d.k * col_rows + d.k, |group, _, acc| {
            let (x_group, _) = x[group * group_input_len..][..group_input_len].as_chunks::<LANES>();
            let (g_group, _) = g[group * group_grad_len..][..group_grad_len].as_chunks::<LANES>();
            let (acc_w, acc_b) = acc.split_at_mut(d.k * col_rows);
            let args = (x_group, g_group, &ld, rows);
            match ld.tiles.weight_grad {
                (3, 5) => weight_grad_group::<3, 5>(args, acc_w),
                (4, 5) => weight_grad_group::<4, 5>(args, acc_w),
                (4, 3) => weight_grad_group::<4, 3>(args, acc_w),
                (6, 3) => weight_grad_group::<6, 3>(args, acc_w),
                (8, 3) => weight_grad_group::<8, 3>(args, acc_w),
                tile => unreachable!("no weight-gradient kernel for the tile {tile:?}"),
            }
            bias_grad_group(g_group, &ld, rows, acc_b);
        })
    });
    let (d_weight, d_bias) = grads.split_at(d.k * col_rows);
    let d_weight = Tensor::from_vec(weight.shape(), d_weight.to_vec());
    let d_bias = Tensor::from_vec(&[d.k], d_bias.to_vec());

    // d_input[c, oh·s + kh, ow·s + kw] += Σ_k W[k, c, kh, kw] · d_out[k, oh, ow], one task per
    // (lane group, input channel) plane.
    let d_input = want_input.then(|| {
        profile::time("conv2d.lanes.input_grad", || {
            let (rb, pb) = ld.tiles.input_grad;
            let w = weight_by_column_blocks(weight.data(), d, rb);
            let plane_len = ld.hp * ld.wp;
            let mut d_x = vec![0.0f32; ld.groups * group_input_len];
            d_x.par_chunks_mut(plane_len * LANES)
                .enumerate()
                .for_each(|(task, d_plane)| {
                    let (group, c) = (task / d.c, task % d.c);
                    let (g_group, _) =
                        g[group * group_grad_len..][..group_grad_len].as_chunks::<LANES>();
                    let (d_plane, _) = d_plane.as_chunks_mut::<LANES>();
                    let args = (g_group, w.as_slice(), &ld, rows, c);
                    match (rb, pb) {
                        (5, 5) => input_grad_plane::<5, 5>(args, d_plane),
                        (5, 4) => input_grad_plane::<5, 4>(args, d_plane),
                        (3, 8) => input_grad_plane::<3, 8>(args, d_plane),
                        (3, 6) => input_grad_plane::<3, 6>(args, d_plane),
                        tile => unreachable!("no input-gradient kernel for the tile {tile:?}"),
                    }
                });
            deinterleave_input(&d_x, &ld)
        })
    });

    ConvGrads {
        d_input,
        d_weight,
        d_bias,
    }
}

/// The sum of one vector's lanes, always in lane order.
fn lane_sum(v: &Lanes) -> f32 {
    v.iter().sum()
}

/// What the weight-gradient kernel reads: a group's input `[C, HP, WP]`, its output gradient
/// in rows by position `[OH, k_dw / KB, ow_dx, KB]`, the dims and that layout.
type WeightGradArgs<'a> = (&'a [Lanes], &'a [Lanes], &'a LaneDims, RowLayout);

simd_targets! {
/// Adds one lane group's dW `[K, C·KH·KW]` into `acc_w`: KB × RB accumulators at a time, each
/// summed over the output positions lane by lane and then across its lanes.
fn weight_grad_group<const KB: usize, const RB: usize>(args: WeightGradArgs<'_>, acc_w: &mut [f32]) {
    let (x, g, ld, rows) = args;
    let d = &ld.d;
    let col_rows = d.col_rows();
    for k0 in (0..d.k).step_by(KB) {
        for c in 0..d.c {
            for kh in 0..d.kh {
                for kw0 in (0..d.kw).step_by(RB) {
                    // acc[kk][rr] = Σ_{oh,ow} d_out[k0 + kk, oh, ow] · x[c, oh·s + kh, ow·s + kw0 + rr]
                    let mut acc = [[[0.0f32; LANES]; RB]; KB];
                    for oh in 0..d.oh {
                        let x_row = &x[(c * ld.hp + oh * d.stride + kh) * ld.wp..][..ld.wp];
                        let g_block = &g[oh * rows.row_len + rows.at(k0, 0)..][..KB * d.ow];
                        // Position ow: the gradient vectors of its KB channels, and the RB
                        // input columns from ow·s + kw0 on.
                        let (g_by_position, _) = g_block.as_chunks::<KB>();
                        for (ow, &g_v) in g_by_position.iter().enumerate() {
                            // Operands copied into locals first, so that the accumulators
                            // can stay in registers (the compiler cannot otherwise tell that
                            // writing them leaves `g` and `x` unchanged).
                            let x_v: [Lanes; RB] =
                                std::array::from_fn(|rr| x_row[ow * d.stride + kw0 + rr]);
                            for (acc_k, g_k) in acc.iter_mut().zip(&g_v) {
                                for (a, x_r) in acc_k.iter_mut().zip(&x_v) {
                                    *a = fma_lanes(*g_k, *x_r, *a);
                                }
                            }
                        }
                    }
                    for (kk, acc_k) in acc.iter().enumerate() {
                        let k = k0 + kk;
                        for (rr, acc_kr) in acc_k.iter().enumerate() {
                            let kw = kw0 + rr;
                            if k < d.k && kw < d.kw {
                                acc_w[k * col_rows + (c * d.kh + kh) * d.kw + kw] += lane_sum(acc_kr);
                            }
                        }
                    }
                }
            }
        }
    }
}
}

/// Adds one lane group's db `[K]` into `acc_b`: each channel summed over its positions lane
/// by lane, then across the lanes. `g` is in rows by position (`RowLayout::by_position`).
fn bias_grad_group(g: &[Lanes], ld: &LaneDims, rows: RowLayout, acc_b: &mut [f32]) {
    let d = &ld.d;
    for (k, b) in acc_b.iter_mut().enumerate() {
        let mut acc = [0.0f32; LANES];
        for oh in 0..d.oh {
            for ow in 0..d.ow {
                let v = &g[oh * rows.row_len + rows.at(k, ow)];
                for (a, v_l) in acc.iter_mut().zip(v) {
                    *a += v_l;
                }
            }
        }
        *b += lane_sum(&acc);
    }
}

/// What the input-gradient kernel reads: a group's output gradient in rows by position,
/// the weight blocks of `weight_by_column_blocks`, the dims, the gradient's row layout and
/// the input channel.
type InputGradArgs<'a> = (&'a [Lanes], &'a [f32], &'a LaneDims, RowLayout, usize);

simd_targets! {
/// One lane group's input-gradient plane of channel `c`, `[HP, WP]` vectors (zero on entry;
/// added into): RB × PB accumulators at a time, each summed over k, then scattered.
fn input_grad_plane<const RB: usize, const PB: usize>(args: InputGradArgs<'_>, d_plane: &mut [Lanes]) {
    let (g, w, ld, rows, c) = args;
    let d = &ld.d;
    let n_blocks = d.kw.div_ceil(RB);
    let (w_blocks, _) = w.as_chunks::<RB>();
    for oh in 0..d.oh {
        let g_row = &g[oh * rows.row_len..][..rows.row_len];
        for kh in 0..d.kh {
            let y = oh * d.stride + kh;
            for block in 0..n_blocks {
                let kw0 = block * RB;
                let w_block = &w_blocks[((c * d.kh + kh) * n_blocks + block) * d.k..][..d.k];
                for ow0 in (0..ld.ow_dx).step_by(PB) {
                    // 1. acc[rr][pb] = Σ_k W[k, c, kh, kw0 + rr] · d_out[k, oh, ow0 + pb]
                    let mut acc = [[[0.0f32; LANES]; PB]; RB];
                    for (k, &w_k) in w_block.iter().enumerate() {
                        let at = rows.at(k, ow0);
                        let g_v: [Lanes; PB] =
                            std::array::from_fn(|pb| g_row[at + pb * rows.ow_stride]);
                        for (acc_r, &w) in acc.iter_mut().zip(&w_k) {
                            for (a, g_p) in acc_r.iter_mut().zip(&g_v) {
                                *a = fma_lanes([w; LANES], *g_p, *a);
                            }
                        }
                    }

                    // 2. d_input[c, y, (ow0 + pb)·s + kw0 + rr] += acc[rr][pb]
                    let d_row = &mut d_plane[y * ld.wp..][..ld.wp];
                    for (rr, acc_r) in acc.iter().enumerate() {
                        for (pb, acc_rp) in acc_r.iter().enumerate() {
                            let v = &mut d_row[(ow0 + pb) * d.stride + kw0 + rr];
                            for (v_l, a_l) in v.iter_mut().zip(acc_rp) {
                                *v_l += a_l;
                            }
                        }
                    }
                }
            }
        }
    }
}
}
