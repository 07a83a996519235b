//! The three kernels of the lanes convolution, each on a tile of accumulator vectors that
//! stays in registers. Shapes as in the parent module. Each is written once, generic over
//! the vector operations (`Simd`), and `simd_kernel!` picks the code path at run time.

use super::layout::RowLayout;
use super::{LaneDims, Lanes};
use crate::simd::{simd_kernel, Simd};

/// What the forward row kernel reads: a group's input `[C, HP, WP]`, the weight blocks,
/// the bias (padded to `k_fwd`), the dims and the output row `oh`.
pub(super) type ForwardArgs<'a> = (&'a [Lanes], &'a [f32], &'a [f32], &'a LaneDims, usize);

simd_kernel!(wide, pub(super) fn forward_row<const KB: usize, const PB: usize>(
    args: ForwardArgs<'_>,
    out_row: &mut [Lanes],
) => forward_row_with);

/// One output row `oh` of one lane group, `[k_fwd, ow_fwd]` vectors (overwritten).
#[inline(always)]
fn forward_row_with<S: Simd, const KB: usize, const PB: usize>(
    s: S,
    args: ForwardArgs<'_>,
    out_row: &mut [Lanes],
) {
    let (x, w, bias, ld, oh) = args;
    let d = &ld.d;
    let col_rows = d.col_rows();
    let (w_blocks, _) = w.as_chunks::<KB>();
    for k0 in (0..ld.k_fwd).step_by(KB) {
        let w_block = &w_blocks[k0 / KB * col_rows..][..col_rows];
        for ow0 in (0..ld.ow_fwd).step_by(PB) {
            // 1. the accumulators start at the bias
            let mut acc = [[s.splat(0.0); PB]; KB];
            for (acc_k, &b) in acc.iter_mut().zip(&bias[k0..k0 + KB]) {
                *acc_k = [s.splat(b); PB];
            }

            // 2. acc[kk][pb] += W[k0 + kk, c, kh, kw] · x[c, oh·s + kh, (ow0 + pb)·s + kw]
            for c in 0..d.c {
                for kh in 0..d.kh {
                    let y = oh * d.stride + kh;
                    let x_row = &x[(c * ld.hp + y) * ld.wp..][..ld.wp];
                    for kw in 0..d.kw {
                        let w_k = &w_block[(c * d.kh + kh) * d.kw + kw];
                        let x_v: [S::V; PB] =
                            std::array::from_fn(|pb| s.load(&x_row[(ow0 + pb) * d.stride + kw]));
                        for (acc_k, w) in acc.iter_mut().zip(w_k) {
                            let w_v = s.splat_from(w);
                            for (a, &x_p) in acc_k.iter_mut().zip(&x_v) {
                                *a = s.mul_add(w_v, x_p, *a);
                            }
                        }
                    }
                }
            }

            // 3. store the tile
            for (kk, acc_k) in acc.iter().enumerate() {
                let at = (k0 + kk) * ld.ow_fwd + ow0;
                for (out, &a) in out_row[at..at + PB].iter_mut().zip(acc_k) {
                    *out = s.store(a);
                }
            }
        }
    }
}

/// What the weight-gradient kernel reads: a group's input `[C, HP, WP]`, its output gradient
/// in rows by position `[OH, k_dw / KB, ow_dx, KB]`, the dims, that layout and the first
/// output channel k0 of the block.
pub(super) type WeightGradArgs<'a> = (&'a [Lanes], &'a [Lanes], &'a LaneDims, RowLayout, usize);

simd_kernel!(narrow, pub(super) fn weight_grad_block<const KB: usize, const RB: usize>(
    args: WeightGradArgs<'_>,
    acc_w: &mut [f32],
) => weight_grad_block_with);

/// Adds one lane group's dW of the KB output channels from k0, `[KB, C·KH·KW]`, into `acc_w`
/// (rows past K untouched): KB × RB accumulators at a time, each summed over the output
/// positions lane by lane and then across its lanes.
#[inline(always)]
fn weight_grad_block_with<S: Simd, const KB: usize, const RB: usize>(
    s: S,
    args: WeightGradArgs<'_>,
    acc_w: &mut [f32],
) {
    let (x, g, ld, rows, k0) = args;
    let d = &ld.d;
    let col_rows = d.col_rows();
    let k_start = rows.at(k0, 0);
    for c in 0..d.c {
        for kh in 0..d.kh {
            for kw0 in (0..d.kw).step_by(RB) {
                // acc[kk][rr] = Σ_{oh,ow} d_out[k0 + kk, oh, ow] · x[c, oh·s + kh, ow·s + kw0 + rr]
                let mut acc = [[s.splat(0.0); RB]; KB];
                for oh in 0..d.oh {
                    let x_row = &x[(c * ld.hp + oh * d.stride + kh) * ld.wp..][..ld.wp];
                    let g_block = &g[oh * rows.row_len + k_start..][..KB * d.ow];
                    // Position ow: the gradient vectors of its KB channels, and the RB input
                    // columns from ow·s + kw0 on (taken as one array: one bounds check, not RB).
                    let (g_by_position, _) = g_block.as_chunks::<KB>();
                    let x_seg = &x_row[kw0..];
                    for (ow, g_pos) in g_by_position.iter().enumerate() {
                        let g_v: [S::V; KB] = std::array::from_fn(|kk| s.load(&g_pos[kk]));
                        let x_window: &[Lanes; RB] = x_seg[ow * d.stride..]
                            .first_chunk()
                            .expect("the margin holds every tile's columns");
                        for (rr, x_p) in x_window.iter().enumerate() {
                            let x_v = s.load(x_p);
                            for (acc_k, &g_k) in acc.iter_mut().zip(&g_v) {
                                acc_k[rr] = s.mul_add(g_k, x_v, acc_k[rr]);
                            }
                        }
                    }
                }
                for (kk, acc_k) in acc.iter().enumerate() {
                    for (rr, acc_kr) in acc_k.iter().enumerate() {
                        let kw = kw0 + rr;
                        if k0 + kk < d.k && kw < d.kw {
                            let sum = lane_sum(&s.store(*acc_kr));
                            acc_w[kk * col_rows + (c * d.kh + kh) * d.kw + kw] += sum;
                        }
                    }
                }
            }
        }
    }
}

/// Adds one lane group's db of the output channels `k0..k0 + acc_b.len()` below K into
/// `acc_b`: each channel summed over its positions lane by lane, then across the lanes. `g`
/// is in rows by position (`RowLayout::by_position`).
pub(super) fn bias_grad_block(
    g: &[Lanes],
    ld: &LaneDims,
    rows: RowLayout,
    k0: usize,
    acc_b: &mut [f32],
) {
    let d = &ld.d;
    for (k, b) in (k0..d.k).zip(acc_b.iter_mut()) {
        let mut acc = [0.0f32; super::LANES];
        let k_start = rows.at(k, 0);
        for oh in 0..d.oh {
            for ow in 0..d.ow {
                let v = &g[oh * rows.row_len + k_start + ow * rows.ow_stride];
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
pub(super) type InputGradArgs<'a> = (&'a [Lanes], &'a [f32], &'a LaneDims, RowLayout, usize);

simd_kernel!(wide, pub(super) fn input_grad_plane<const RB: usize, const PB: usize>(
    args: InputGradArgs<'_>,
    d_plane: &mut [Lanes],
) => input_grad_plane_with);

/// One lane group's input-gradient plane of channel `c`, `[HP, WP]` vectors (zero on entry;
/// added into): RB × PB accumulators at a time, each summed over k, then scattered.
#[inline(always)]
fn input_grad_plane_with<S: Simd, const RB: usize, const PB: usize>(
    s: S,
    args: InputGradArgs<'_>,
    d_plane: &mut [Lanes],
) {
    let (g, w, ld, rows, c) = args;
    let d = &ld.d;
    let n_blocks = d.kw.div_ceil(RB);
    let (w_blocks, _) = w.as_chunks::<RB>();
    // Where channel k's row starts: `RowLayout::at` divides, too slow for the inner loop.
    let k_starts: Vec<usize> = (0..d.k).map(|k| rows.at(k, 0)).collect();
    for oh in 0..d.oh {
        let g_row = &g[oh * rows.row_len..][..rows.row_len];
        for kh in 0..d.kh {
            let y = oh * d.stride + kh;
            for block in 0..n_blocks {
                let kw0 = block * RB;
                let w_block = &w_blocks[((c * d.kh + kh) * n_blocks + block) * d.k..][..d.k];
                for ow0 in (0..ld.ow_dx).step_by(PB) {
                    // 1. acc[rr][pb] = Σ_k W[k, c, kh, kw0 + rr] · d_out[k, oh, ow0 + pb]
                    let mut acc = [[s.splat(0.0); PB]; RB];
                    for (&k_start, w_k) in k_starts.iter().zip(w_block) {
                        let at = k_start + ow0 * rows.ow_stride;
                        let g_v: [S::V; PB] =
                            std::array::from_fn(|pb| s.load(&g_row[at + pb * rows.ow_stride]));
                        for (acc_r, w) in acc.iter_mut().zip(w_k) {
                            let w_v = s.splat_from(w);
                            for (a, &g_p) in acc_r.iter_mut().zip(&g_v) {
                                *a = s.mul_add(w_v, g_p, *a);
                            }
                        }
                    }

                    // 2. d_input[c, y, (ow0 + pb)·s + kw0 + rr] += acc[rr][pb]
                    let d_row = &mut d_plane[y * ld.wp..][..ld.wp];
                    for (rr, acc_r) in acc.iter().enumerate() {
                        for (pb, &acc_rp) in acc_r.iter().enumerate() {
                            let v = &mut d_row[(ow0 + pb) * d.stride + kw0 + rr];
                            for (v_l, a_l) in v.iter_mut().zip(s.store(acc_rp)) {
                                *v_l += a_l;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The sum of one vector's lanes, always in lane order.
fn lane_sum(v: &Lanes) -> f32 {
    v.iter().sum()
}
