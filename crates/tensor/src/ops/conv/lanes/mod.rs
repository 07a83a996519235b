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
//! Files: this one holds the dims, the tiles and the two passes; `layout.rs` interleaves
//! and de-interleaves, `kernels.rs` holds the three kernels, `pool.rs` keeps the
//! interleaved buffers between calls.
//!
//! Each lane does the same sequence of fused multiply-adds whatever the lane, the group or
//! the CPU: the kernels are generic over the vector type of `crate::simd`, whose AVX2
//! register and portable `[f32; 8]` give the same bits, only at different speeds
//! (`tests/lanes_bits.rs` holds the result to scalar loops in that order). The tiles, which
//! fix the order in which the input gradient's pieces are added, come from the shapes.

use rayon::prelude::*;

use super::{ConvDims, ConvGrads};
use crate::profile;
use crate::tensor::Tensor;

mod kernels;
mod layout;
mod pool;

use kernels::{bias_grad_block, forward_row, input_grad_plane, weight_grad_block};
use layout::{
    deinterleave_input, deinterleave_output, interleave_input, interleave_output,
    weight_by_channel_blocks, weight_by_column_blocks, RowLayout,
};
pub use pool::Pooled;
use pool::Role;

/// Images per vector: 8 f32 fill one 256-bit register, which both AVX2 and AVX-512 machines
/// multiply-add at full rate (Zen 4 splits a 512-bit operation in two), and a batch of 50
/// wastes only 6 lanes in 56 where 16 lanes would waste 14 in 64.
pub const LANES: usize = 8;

/// One value of each of the L images of a group.
type Lanes = [f32; LANES];

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

/// The (rows, cols) tiles each kernel is compiled for: at most 25 accumulator vectors for the
/// forward and input-gradient kernels (`simd_kernel!(wide, ..)`: 32 registers with AVX-512)
/// and 10 for the weight gradient (`narrow`: 16 registers; its wider tiles on AVX-512 were
/// 6% slower in a paired run), leaving room for the operands. lenet5-bn uses (6, 4) and (4, 5) forward, (2, 5) for dW
/// and (5, 5) for d_input.
const FORWARD_TILES: [(usize, usize); 5] = [(6, 4), (4, 5), (3, 4), (2, 6), (2, 5)];
const WEIGHT_GRAD_TILES: [(usize, usize); 3] = [(2, 5), (4, 3), (2, 3)];
const INPUT_GRAD_TILES: [(usize, usize); 4] = [(5, 5), (5, 4), (4, 3), (3, 3)];

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

    /// Where row `row_idx` of an image `[C, H, W]` (row c·H + y) starts in a group's
    /// interleaved input: past the zero border, at (c, y + padding, padding).
    fn padded_row_start(&self, row_idx: usize) -> usize {
        let (c, y) = (row_idx / self.d.h, row_idx % self.d.h);
        (c * self.hp + y + self.d.padding) * self.wp + self.d.padding
    }
}

/// `[N, C, H, W] -> [N, K, OH, OW]`: bias, then one tile of KB × PB accumulators at a time,
/// each lane group's output rows in parallel.
///
/// Also returns the interleaved input, which the backward pass reads again.
pub(super) fn lanes_forward(
    input: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    d: &ConvDims,
) -> (Tensor, Pooled) {
    let ld = LaneDims::new(*d);
    let (kb, pb) = ld.tiles.forward;
    let x = profile::time("conv2d.lanes.interleave", || {
        interleave_input(input.data(), &ld)
    });
    let w = weight_by_channel_blocks(weight.data(), d, kb);
    let mut b = bias.data().to_vec();
    b.resize(ld.k_fwd, 0.0);

    let rows = RowLayout::by_channel(ld.k_fwd, ld.ow_fwd);
    let group_input_len = ld.group_input_len() * LANES;
    let mut out = Pooled::take(Role::Output, ld, ld.groups * d.oh * rows.row_len * LANES);
    out.par_chunks_mut(rows.row_len * LANES)
        .enumerate()
        .for_each(|(task, out_row)| {
            let (group, oh) = (task / d.oh, task % d.oh);
            let x_group = lane_group(&x, group, group_input_len);
            let (out_row, _) = out_row.as_chunks_mut::<LANES>();
            let args = (x_group, w.as_slice(), b.as_slice(), &ld, oh);
            match (kb, pb) {
                (6, 4) => forward_row::<6, 4>(args, out_row),
                (4, 5) => forward_row::<4, 5>(args, out_row),
                (3, 4) => forward_row::<3, 4>(args, out_row),
                (2, 6) => forward_row::<2, 6>(args, out_row),
                (2, 5) => forward_row::<2, 5>(args, out_row),
                tile => unreachable!("no forward kernel for the tile {tile:?}"),
            }
        });
    let out = profile::time("conv2d.lanes.deinterleave", || {
        deinterleave_output(&out, &ld, rows)
    });
    (out, x)
}

/// Lane group `group` of a buffer of groups of `group_len` f32 each, as vectors.
fn lane_group(buf: &[f32], group: usize, group_len: usize) -> &[Lanes] {
    buf[group * group_len..][..group_len].as_chunks::<LANES>().0
}

/// Gradients of `lanes_forward`, into fresh tensors: dW and db summed over the lane groups in
/// a fixed order, d_input (when asked for) scattered plane by plane. `interleaved_input` is
/// what `lanes_forward` returned beside its output; without it the input is interleaved
/// again.
pub(super) fn lanes_backward(
    input: &Tensor,
    interleaved_input: Option<&Pooled>,
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
    let (fresh_input, g) = profile::time("conv2d.lanes.interleave", || {
        let fresh_input = interleaved_input
            .is_none()
            .then(|| interleave_input(input.data(), &ld));
        (fresh_input, interleave_output(d_out.data(), &ld, rows))
    });
    let Some(x) = interleaved_input.or(fresh_input.as_ref()) else {
        unreachable!("the input is interleaved above when not given")
    };
    let group_grad_len = d.oh * rows.row_len * LANES;

    // dW[k, c, kh, kw] = Σ_{oh,ow} d_out[k, oh, ow] · x[c, oh·s + kh, ow·s + kw] and
    // db[k] = Σ_{oh,ow} d_out[k, oh, ow]: one task per (lane group, block of KB output
    // channels), so that two threads share even a batch of 7 groups evenly; then the groups'
    // partial sums are added in group order.
    let (d_weight, d_bias) = profile::time("conv2d.lanes.weight_grad", || {
        let (kb, _) = ld.tiles.weight_grad;
        let k_blocks = ld.k_dw / kb;
        let mut partial_w = vec![0.0f32; ld.groups * ld.k_dw * col_rows];
        let mut partial_b = vec![0.0f32; ld.groups * ld.k_dw];
        partial_w
            .par_chunks_mut(kb * col_rows)
            .zip(partial_b.par_chunks_mut(kb))
            .enumerate()
            .for_each(|(task, (acc_w, acc_b))| {
                let (group, k0) = (task / k_blocks, task % k_blocks * kb);
                let x_group = lane_group(x, group, group_input_len);
                let g_group = lane_group(&g, group, group_grad_len);
                let args = (x_group, g_group, &ld, rows, k0);
                match ld.tiles.weight_grad {
                    (2, 5) => weight_grad_block::<2, 5>(args, acc_w),
                    (4, 3) => weight_grad_block::<4, 3>(args, acc_w),
                    (2, 3) => weight_grad_block::<2, 3>(args, acc_w),
                    tile => unreachable!("no weight-gradient kernel for the tile {tile:?}"),
                }
                bias_grad_block(g_group, &ld, rows, k0, acc_b);
            });
        let mut d_weight = vec![0.0f32; d.k * col_rows];
        let mut d_bias = vec![0.0f32; d.k];
        for (group_w, group_b) in partial_w
            .chunks(ld.k_dw * col_rows)
            .zip(partial_b.chunks(ld.k_dw))
        {
            for (total, p) in d_weight.iter_mut().zip(group_w) {
                *total += p;
            }
            for (total, p) in d_bias.iter_mut().zip(group_b) {
                *total += p;
            }
        }
        (
            Tensor::from_vec(weight.shape(), d_weight),
            Tensor::from_vec(&[d.k], d_bias),
        )
    });

    // d_input[c, oh·s + kh, ow·s + kw] += Σ_k W[k, c, kh, kw] · d_out[k, oh, ow], one task per
    // (lane group, input channel) plane.
    let d_input = want_input.then(|| {
        profile::time("conv2d.lanes.input_grad", || {
            let (rb, pb) = ld.tiles.input_grad;
            let w = weight_by_column_blocks(weight.data(), d, rb);
            let plane_len = ld.hp * ld.wp;
            let mut d_x = Pooled::take(Role::InputGrad, ld, ld.groups * group_input_len);
            d_x.fill(0.0);
            d_x.par_chunks_mut(plane_len * LANES)
                .enumerate()
                .for_each(|(task, d_plane)| {
                    let (group, c) = (task / d.c, task % d.c);
                    let g_group = lane_group(&g, group, group_grad_len);
                    let (d_plane, _) = d_plane.as_chunks_mut::<LANES>();
                    let args = (g_group, w.as_slice(), &ld, rows, c);
                    match (rb, pb) {
                        (5, 5) => input_grad_plane::<5, 5>(args, d_plane),
                        (5, 4) => input_grad_plane::<5, 4>(args, d_plane),
                        (4, 3) => input_grad_plane::<4, 3>(args, d_plane),
                        (3, 3) => input_grad_plane::<3, 3>(args, d_plane),
                        tile => unreachable!("no input-gradient kernel for the tile {tile:?}"),
                    }
                });
            profile::time("conv2d.lanes.deinterleave", || {
                deinterleave_input(&d_x, &ld)
            })
        })
    });

    ConvGrads {
        d_input,
        d_weight,
        d_bias,
    }
}
