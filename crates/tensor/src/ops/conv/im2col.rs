//! im2col and its adjoint col2im, for one image or a group of images side by side, and
//! the per-thread scratch buffers they fill.
//!
//! Shapes as in the parent module: C input channels, K output channels, H/W input height
//! and width, KH/KW kernel, OH/OW output; an im2col matrix is `[C·KH·KW, OH·OW]` per image.

use std::cell::RefCell;

use super::ConvDims;

thread_local! {
    /// Two buffers (a group's im2col matrix and its output or output gradient), reused by
    /// every conv on this thread so that the hot loop allocates nothing.
    static SCRATCH: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Runs `f` on this thread's scratch buffers of `len_a` and `len_b` values (contents
/// unspecified).
pub(super) fn with_scratch<T>(
    len_a: usize,
    len_b: usize,
    f: impl FnOnce(&mut [f32], &mut [f32]) -> T,
) -> T {
    SCRATCH.with(|cell| {
        let mut bufs = cell.borrow_mut();
        let (a, b) = &mut *bufs;
        if a.len() < len_a {
            a.resize(len_a, 0.0);
        }
        if b.len() < len_b {
            b.resize(len_b, 0.0);
        }
        f(&mut a[..len_a], &mut b[..len_b])
    })
}

/// The output columns `ow` whose input column `ow·stride + kw - padding` lies inside
/// `0..W`, as a range.
fn valid_ow(d: &ConvDims, kw: usize) -> std::ops::Range<usize> {
    let first = d.padding.saturating_sub(kw).div_ceil(d.stride);
    let last = (d.w + d.padding)
        .saturating_sub(kw)
        .div_ceil(d.stride)
        .min(d.ow);
    first.min(last)..last
}

/// `dst.copy_from_slice(src)` for the short rows of im2col (OW values), in fixed blocks of
/// four that compile to single vector moves: `copy_from_slice` calls `memmove`, whose
/// call costs more than a 28-value copy.
#[inline(always)]
fn copy_short(src: &[f32], dst: &mut [f32]) {
    let mut dst_blocks = dst.chunks_exact_mut(4);
    let mut src_blocks = src.chunks_exact(4);
    for (d, s) in (&mut dst_blocks).zip(&mut src_blocks) {
        let block: &[f32; 4] = s.try_into().expect("blocks of four");
        d.copy_from_slice(block);
    }
    for (d, s) in dst_blocks
        .into_remainder()
        .iter_mut()
        .zip(src_blocks.remainder())
    {
        *d = *s;
    }
}

/// Copies the receptive fields of one image `[C, H, W]` into its block of an im2col
/// matrix: row (c, kh, kw) of the block starts at `cols[row_idx * cols_stride]` and holds
/// OH·OW values (overwritten). With `cols_stride = OH·OW` the block is the whole matrix
/// `[C·KH·KW, OH·OW]`; a wider stride puts several images side by side.
pub fn im2col(image: &[f32], d: &ConvDims, cols: &mut [f32], cols_stride: usize) {
    if d.padding == 0 && d.stride == 1 {
        return im2col_dense(image, d, cols, cols_stride);
    }
    let n_cols = d.col_cols();
    for c in 0..d.c {
        let plane = &image[c * d.h * d.w..(c + 1) * d.h * d.w];
        for kh in 0..d.kh {
            for kw in 0..d.kw {
                let row_idx = (c * d.kh + kh) * d.kw + kw;
                let row = &mut cols[row_idx * cols_stride..row_idx * cols_stride + n_cols];
                let valid = valid_ow(d, kw);
                for oh in 0..d.oh {
                    let out_row = &mut row[oh * d.ow..(oh + 1) * d.ow];
                    let y = (oh * d.stride + kh) as isize - d.padding as isize;
                    if y < 0 || y >= d.h as isize || valid.is_empty() {
                        out_row.fill(0.0);
                        continue;
                    }
                    let src = &plane[y as usize * d.w..(y as usize + 1) * d.w];
                    out_row[..valid.start].fill(0.0);
                    out_row[valid.end..].fill(0.0);
                    let x0 = valid.start * d.stride + kw - d.padding;
                    let dst = &mut out_row[valid.clone()];
                    if d.stride == 1 {
                        copy_short(&src[x0..x0 + dst.len()], dst);
                    } else {
                        for (i, v) in dst.iter_mut().enumerate() {
                            *v = src[x0 + i * d.stride];
                        }
                    }
                }
            }
        }
    }
}

/// `im2col` without padding at stride 1, as every conv of lenet5-bn: no bounds to test, row
/// (c, kh, kw) is OH runs of OW values starting at pixel (kh, kw) of plane c. Rows are short
/// (OW = 10 in conv2), so the general loop's per-row bookkeeping would cost more than the copy.
fn im2col_dense(image: &[f32], d: &ConvDims, cols: &mut [f32], cols_stride: usize) {
    let n_cols = d.col_cols();
    for (c, plane) in image.chunks_exact(d.h * d.w).enumerate() {
        for kh in 0..d.kh {
            for kw in 0..d.kw {
                let row_idx = (c * d.kh + kh) * d.kw + kw;
                let row = &mut cols[row_idx * cols_stride..][..n_cols];
                let src = &plane[kh * d.w + kw..];
                for (dst, src_row) in row.chunks_exact_mut(d.ow).zip(src.chunks(d.w)) {
                    copy_short(&src_row[..d.ow], dst);
                }
            }
        }
    }
}

/// The adjoint of `im2col_dense`; adds into `image`.
fn col2im_dense(cols: &[f32], d: &ConvDims, image: &mut [f32], cols_stride: usize) {
    let n_cols = d.col_cols();
    for (c, plane) in image.chunks_exact_mut(d.h * d.w).enumerate() {
        for kh in 0..d.kh {
            for kw in 0..d.kw {
                let row_idx = (c * d.kh + kh) * d.kw + kw;
                let row = &cols[row_idx * cols_stride..][..n_cols];
                let dst = &mut plane[kh * d.w + kw..];
                for (src, dst_row) in row.chunks_exact(d.ow).zip(dst.chunks_mut(d.w)) {
                    dst_row[..d.ow]
                        .iter_mut()
                        .zip(src)
                        .for_each(|(o, &v)| *o += v);
                }
            }
        }
    }
}

/// The adjoint of `im2col`: adds every entry of an image's block of `cols` back onto the
/// input pixel it was copied from. Overwrites `image` `[C, H, W]`.
pub fn col2im(cols: &[f32], d: &ConvDims, image: &mut [f32], cols_stride: usize) {
    image.fill(0.0);
    if d.padding == 0 && d.stride == 1 {
        return col2im_dense(cols, d, image, cols_stride);
    }
    for c in 0..d.c {
        let plane = &mut image[c * d.h * d.w..(c + 1) * d.h * d.w];
        for kh in 0..d.kh {
            for kw in 0..d.kw {
                let row_idx = (c * d.kh + kh) * d.kw + kw;
                let row = &cols[row_idx * cols_stride..];
                let valid = valid_ow(d, kw);
                if valid.is_empty() {
                    continue;
                }
                for oh in 0..d.oh {
                    let y = (oh * d.stride + kh) as isize - d.padding as isize;
                    if y < 0 || y >= d.h as isize {
                        continue;
                    }
                    let dst = &mut plane[y as usize * d.w..(y as usize + 1) * d.w];
                    let x0 = valid.start * d.stride + kw - d.padding;
                    let src = &row[oh * d.ow + valid.start..oh * d.ow + valid.end];
                    if d.stride == 1 {
                        let dst = &mut dst[x0..x0 + src.len()];
                        dst.iter_mut().zip(src).for_each(|(o, &v)| *o += v);
                    } else {
                        for (i, &v) in src.iter().enumerate() {
                            dst[x0 + i * d.stride] += v;
                        }
                    }
                }
            }
        }
    }
}

/// Builds the im2col matrix `[C·KH·KW, G'·OH·OW]` of the G' images in `images`
/// (`[G', C, H, W]`), image `i` in columns `i·OH·OW ..`.
pub(super) fn im2col_group(images: &[f32], d: &ConvDims, cols: &mut [f32]) {
    let image_len = d.c * d.h * d.w;
    let n_images = images.len() / image_len;
    let cols_stride = n_images * d.col_cols();
    for (i, image) in images.chunks(image_len).enumerate() {
        im2col(image, d, &mut cols[i * d.col_cols()..], cols_stride);
    }
}

/// The output gradient of G' images (`[G', K, OH, OW]`) as one matrix `[K, G'·OH·OW]`
/// laid out like `im2col_group`'s columns: `d_out` itself for one image, else copied.
pub(super) fn gather_group<'a>(d_out: &'a [f32], d: &ConvDims, buf: &'a mut [f32]) -> &'a [f32] {
    let plane = d.col_cols();
    let n_images = d_out.len() / (d.k * plane);
    if n_images == 1 {
        return d_out;
    }
    let n_cols = n_images * plane;
    for (i, image) in d_out.chunks(d.k * plane).enumerate() {
        for (k, src) in image.chunks(plane).enumerate() {
            buf[k * n_cols + i * plane..k * n_cols + (i + 1) * plane].copy_from_slice(src);
        }
    }
    &buf[..d.k * n_cols]
}
