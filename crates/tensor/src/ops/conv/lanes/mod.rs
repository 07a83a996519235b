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
//! The images left after the full groups (N mod L) share one more group, each image's output
//! rows cut into bands with a lane per (image, band) (`Tail`), so that a batch of 50 costs
//! about 6.3 groups' work and not 7.
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
use crate::tensor::Tensor;

mod kernels;
mod layout;
mod pool;

use kernels::{bias_grad_block, forward_row, input_grad_plane, weight_grad_block};
use layout::{
    deinterleave_input_group, deinterleave_input_tail, deinterleave_output_group,
    deinterleave_output_tail, interleave_input, interleave_output, weight_by_channel_blocks,
    weight_by_column_blocks, RowLayout,
};
pub use pool::Pooled;
use pool::Role;

/// Images per vector, the width of `crate::simd`'s vectors: 8 f32 fill one 256-bit
/// register, which both AVX2 and AVX-512 machines multiply-add at full rate (Zen 4 splits a
/// 512-bit operation in two), and the images past the full groups of a batch fill a group
/// of 8 in bands of rows (`Tail`) more easily than one of 16.
pub const LANES: usize = crate::simd::WIDTH;

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
    /// Full lane groups: N / L rounded down (the images left over form the `Tail`).
    pub full_groups: usize,
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
            full_groups: d.n / LANES,
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

/// The lane group of the r = N mod L images left after the full groups. With r <= L/2 its
/// lanes would be mostly empty, so each image's output rows are cut into `parts` bands of
/// `band` rows, one lane per (image, band): lane l holds band l % parts of image
/// first + l / parts, and the lanes past r · parts are zero. For the kernels the group is a
/// convolution of its own (`ld`): L images, each the zero-padded rows its band reads, `band`
/// output rows, no further padding. With parts = 1 it holds the r images whole, as a full
/// group would. For a batch of 50, conv1's tail is 2 images in 4 bands of 7 rows: a quarter
/// of a group's work instead of a whole group's.
#[derive(Clone, Copy, Debug)]
pub(super) struct Tail {
    pub first: usize,
    pub images: usize,
    pub parts: usize,
    pub band: usize,
    pub ld: LaneDims,
}

impl Tail {
    fn new(ld: &LaneDims) -> Option<Tail> {
        let d = &ld.d;
        let images = d.n % LANES;
        if images == 0 {
            return None;
        }
        let band = d.oh.div_ceil((LANES / images).min(d.oh));
        let group = ConvDims {
            n: LANES,
            h: (band - 1) * d.stride + d.kh,
            w: d.w + 2 * d.padding,
            oh: band,
            padding: 0,
            ..*d
        };
        Some(Tail {
            first: d.n - images,
            images,
            parts: d.oh.div_ceil(band),
            band,
            ld: LaneDims::new(group),
        })
    }

    /// Lane l's image (its index in the batch) and the first output row of its band; `None`
    /// for a lane past the last band.
    pub fn lane(&self, l: usize) -> Option<(usize, usize)> {
        (l < self.images * self.parts)
            .then(|| (self.first + l / self.parts, l % self.parts * self.band))
    }
}

/// `[N, C, H, W] -> [N, K, OH, OW]`: bias, then one tile of KB × PB accumulators at a time.
/// One task per lane group interleaves its images, computes its output rows (each row a task
/// of its own, for an idle thread to take) and de-interleaves its output; the tail group
/// (`Tail`) runs beside the full ones.
///
/// Also returns the interleaved input, which the backward pass reads again.
pub(super) fn lanes_forward(
    input: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    d: &ConvDims,
) -> (Tensor, Pooled) {
    let ld = LaneDims::new(*d);
    let tail = Tail::new(&ld);
    let (kb, pb) = ld.tiles.forward;
    let w = weight_by_channel_blocks(weight.data(), d, kb);
    let mut b = bias.data().to_vec();
    b.resize(ld.k_fwd, 0.0);

    let rows = RowLayout::by_channel(ld.k_fwd, ld.ow_fwd);
    let out_image_len = d.k * d.oh * d.ow;
    let group_input_len = ld.group_input_len() * LANES;
    let group_out_len = d.oh * rows.row_len * LANES;
    let main_input_len = ld.full_groups * group_input_len;
    let main_out_len = ld.full_groups * group_out_len;
    let tail_input_len = tail.map_or(0, |t| t.ld.group_input_len() * LANES);
    let tail_out_len = tail.map_or(0, |t| t.band * rows.row_len * LANES);
    let mut x = Pooled::take(Role::Input, ld, main_input_len + tail_input_len);
    let mut out_lanes = Pooled::take(Role::Output, ld, main_out_len + tail_out_len);
    let mut out = Tensor::zeros(&[d.n, d.k, d.oh, d.ow]);

    // The output rows of one group of dims `ld_g` (rows by channel), a task each.
    let forward_rows = |x_group: &[Lanes], ld_g: &LaneDims, out_group: &mut [f32]| {
        out_group
            .par_chunks_mut(rows.row_len * LANES)
            .enumerate()
            .for_each(|(oh, out_row)| {
                let (out_row, _) = out_row.as_chunks_mut::<LANES>();
                let args = (x_group, w.as_slice(), b.as_slice(), ld_g, oh);
                match (kb, pb) {
                    (6, 4) => forward_row::<6, 4>(args, out_row),
                    (4, 5) => forward_row::<4, 5>(args, out_row),
                    (3, 4) => forward_row::<3, 4>(args, out_row),
                    (2, 6) => forward_row::<2, 6>(args, out_row),
                    (2, 5) => forward_row::<2, 5>(args, out_row),
                    tile => unreachable!("no forward kernel for the tile {tile:?}"),
                }
            });
    };
    let (x_main, x_tail) = x.split_at_mut(main_input_len);
    let (lanes_main, lanes_tail) = out_lanes.split_at_mut(main_out_len);
    let (out_main, out_tail) = out
        .data_mut()
        .split_at_mut(ld.full_groups * LANES * out_image_len);
    rayon::join(
        || {
            x_main
                .par_chunks_mut(group_input_len)
                .zip(lanes_main.par_chunks_mut(group_out_len))
                .zip(out_main.par_chunks_mut(LANES * out_image_len))
                .enumerate()
                .for_each(|(group, ((x_group, out_group), out_images))| {
                    let lane = |l| Some((group * LANES + l, 0));
                    interleave_input(input.data(), &ld, &ld, lane, x_group);
                    forward_rows(x_group.as_chunks().0, &ld, out_group);
                    deinterleave_output_group(out_group, &ld, rows, out_images);
                })
        },
        || {
            if let Some(tail) = &tail {
                interleave_input(input.data(), &ld, &tail.ld, |l| tail.lane(l), x_tail);
                forward_rows(x_tail.as_chunks().0, &tail.ld, lanes_tail);
                deinterleave_output_tail(lanes_tail, &ld, tail, rows, out_tail);
            }
        },
    );
    (out, x)
}

/// `buf` (when there is one) split at `at`, else two `None`s.
fn split_optional(buf: Option<&mut [f32]>, at: usize) -> (Option<&mut [f32]>, Option<&mut [f32]>) {
    match buf {
        Some(buf) => {
            let (head, rest) = buf.split_at_mut(at);
            (Some(head), Some(rest))
        }
        None => (None, None),
    }
}

/// `buf` (when there is one) in `n` chunks of `len`, else `n` times `None`.
fn chunks_or_none(buf: Option<&mut [f32]>, len: usize, n: usize) -> Vec<Option<&mut [f32]>> {
    match buf {
        Some(buf) => buf.chunks_mut(len).take(n).map(Some).collect(),
        None => (0..n).map(|_| None).collect(),
    }
}

/// Gradients of `lanes_forward`, into fresh tensors: dW and db summed over the lane groups in
/// a fixed order (the tail last), d_input (when asked for) scattered plane by plane. One task
/// per lane group interleaves its output gradient, then computes its part of dW and db (a
/// task per block of KB output channels) beside its d_input (a task per input channel), and
/// de-interleaves that. `interleaved_input` is what `lanes_forward` returned beside its
/// output; without it each group interleaves its input again.
pub(super) fn lanes_backward(
    input: &Tensor,
    interleaved_input: Option<&Pooled>,
    weight: &Tensor,
    d_out: &Tensor,
    d: &ConvDims,
    want_input: bool,
) -> ConvGrads {
    let ld = LaneDims::new(*d);
    let tail = Tail::new(&ld);
    let full = ld.full_groups;
    let col_rows = d.col_rows();
    let (kb, _) = ld.tiles.weight_grad;
    let (rb, pb) = ld.tiles.input_grad;
    // One layout of the output gradient serves both kernels.
    let rows = RowLayout::by_position(ld.k_dw, ld.ow_dx, kb);
    let image_len = d.c * d.h * d.w;
    let group_input_len = ld.group_input_len() * LANES;
    let group_grad_len = d.oh * rows.row_len * LANES;
    let (main_input_len, main_grad_len) = (full * group_input_len, full * group_grad_len);
    let tail_input_len = tail.map_or(0, |t| t.ld.group_input_len() * LANES);
    let tail_grad_len = tail.map_or(0, |t| t.band * rows.row_len * LANES);
    let groups = full + usize::from(tail.is_some());
    let w_cols = want_input.then(|| weight_by_column_blocks(weight.data(), d, rb));

    let mut g = Pooled::take(Role::OutputGrad, ld, main_grad_len + tail_grad_len);
    let mut fresh_x = interleaved_input
        .is_none()
        .then(|| Pooled::take(Role::Input, ld, main_input_len + tail_input_len));
    let mut d_x =
        want_input.then(|| Pooled::take(Role::InputGrad, ld, main_input_len + tail_input_len));
    let mut d_input = want_input.then(|| Tensor::zeros(&[d.n, d.c, d.h, d.w]));
    let mut partial_w = vec![0.0f32; groups * ld.k_dw * col_rows];
    let mut partial_b = vec![0.0f32; groups * ld.k_dw];

    // One group's dW and db blocks beside its d_input planes, for a group of dims `ld_g`.
    let group_grads = |ld_g: &LaneDims,
                       x_group: &[Lanes],
                       g_group: &[Lanes],
                       acc_w: &mut [f32],
                       acc_b: &mut [f32],
                       d_x_group: Option<&mut [f32]>| {
        rayon::join(
            // dW[k, c, kh, kw] = Σ_{oh,ow} d_out[k, oh, ow] · x[c, oh·s + kh, ow·s + kw],
            // db[k] = Σ_{oh,ow} d_out[k, oh, ow]
            || {
                acc_w
                    .par_chunks_mut(kb * col_rows)
                    .zip(acc_b.par_chunks_mut(kb))
                    .enumerate()
                    .for_each(|(block, (acc_w, acc_b))| {
                        let args = (x_group, g_group, ld_g, rows, block * kb);
                        match ld.tiles.weight_grad {
                            (2, 5) => weight_grad_block::<2, 5>(args, acc_w),
                            (4, 3) => weight_grad_block::<4, 3>(args, acc_w),
                            (2, 3) => weight_grad_block::<2, 3>(args, acc_w),
                            tile => unreachable!("no weight-gradient kernel for the tile {tile:?}"),
                        }
                        bias_grad_block(g_group, ld_g, rows, block * kb, acc_b);
                    })
            },
            // d_input[c, oh·s + kh, ow·s + kw] += Σ_k W[k, c, kh, kw] · d_out[k, oh, ow]
            || {
                let (Some(d_x_group), Some(w_cols)) = (d_x_group, &w_cols) else {
                    return;
                };
                d_x_group
                    .par_chunks_mut(ld_g.hp * ld_g.wp * LANES)
                    .enumerate()
                    .for_each(|(c, d_plane)| {
                        d_plane.fill(0.0);
                        let (d_plane, _) = d_plane.as_chunks_mut::<LANES>();
                        let args = (g_group, w_cols.as_slice(), ld_g, rows, c);
                        match (rb, pb) {
                            (5, 5) => input_grad_plane::<5, 5>(args, d_plane),
                            (5, 4) => input_grad_plane::<5, 4>(args, d_plane),
                            (4, 3) => input_grad_plane::<4, 3>(args, d_plane),
                            (3, 3) => input_grad_plane::<3, 3>(args, d_plane),
                            tile => unreachable!("no input-gradient kernel for the tile {tile:?}"),
                        }
                    });
            },
        );
    };

    let (g_main, g_tail) = g.split_at_mut(main_grad_len);
    let (fresh_main, fresh_tail) = split_optional(fresh_x.as_deref_mut(), main_input_len);
    let (d_x_main, d_x_tail) = split_optional(d_x.as_deref_mut(), main_input_len);
    let (d_input_main, d_input_tail) = split_optional(
        d_input.as_mut().map(Tensor::data_mut),
        full * LANES * image_len,
    );
    let (w_main, w_tail) = partial_w.split_at_mut(full * ld.k_dw * col_rows);
    let (b_main, b_tail) = partial_b.split_at_mut(full * ld.k_dw);
    let saved_x = |group: usize, len: usize| match interleaved_input {
        Some(x) => &x[group * group_input_len..][..len],
        None => unreachable!("the input is interleaved when not given"),
    };

    let tasks = (
        g_main.chunks_mut(group_grad_len).collect::<Vec<_>>(),
        chunks_or_none(fresh_main, group_input_len, full),
        chunks_or_none(d_x_main, group_input_len, full),
        chunks_or_none(d_input_main, LANES * image_len, full),
        w_main.chunks_mut(ld.k_dw * col_rows).collect::<Vec<_>>(),
        b_main.chunks_mut(ld.k_dw).collect::<Vec<_>>(),
    );
    rayon::join(
        || {
            tasks.into_par_iter().enumerate().for_each(
                |(group, (g_group, fresh_x, mut d_x_group, d_input_images, acc_w, acc_b))| {
                    let lane = |l| Some((group * LANES + l, 0));
                    interleave_output(d_out.data(), &ld, d.oh, lane, rows, g_group);
                    let x_group: &[f32] = match fresh_x {
                        Some(buf) => {
                            interleave_input(input.data(), &ld, &ld, lane, buf);
                            buf
                        }
                        None => saved_x(group, group_input_len),
                    };
                    let (x_group, g_group) = (x_group.as_chunks().0, g_group.as_chunks().0);
                    group_grads(
                        &ld,
                        x_group,
                        g_group,
                        acc_w,
                        acc_b,
                        d_x_group.as_deref_mut(),
                    );
                    if let (Some(d_x_group), Some(d_input_images)) = (d_x_group, d_input_images) {
                        deinterleave_input_group(d_x_group, &ld, d_input_images);
                    }
                },
            )
        },
        || {
            let Some(tail) = &tail else { return };
            let lane = |l| tail.lane(l);
            interleave_output(d_out.data(), &ld, tail.band, lane, rows, g_tail);
            let x_tail: &[f32] = match fresh_tail {
                Some(buf) => {
                    interleave_input(input.data(), &ld, &tail.ld, lane, buf);
                    buf
                }
                None => saved_x(full, tail_input_len),
            };
            let (x_tail, g_tail) = (x_tail.as_chunks().0, g_tail.as_chunks().0);
            let mut d_x_tail = d_x_tail;
            group_grads(
                &tail.ld,
                x_tail,
                g_tail,
                w_tail,
                b_tail,
                d_x_tail.as_deref_mut(),
            );
            if let (Some(d_x_tail), Some(d_input_tail)) = (d_x_tail, d_input_tail) {
                deinterleave_input_tail(d_x_tail, &ld, tail, d_input_tail);
            }
        },
    );

    // The groups' partial sums, added in group order.
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
    ConvGrads {
        d_input,
        d_weight: Tensor::from_vec(weight.shape(), d_weight),
        d_bias: Tensor::from_vec(&[d.k], d_bias),
    }
}
