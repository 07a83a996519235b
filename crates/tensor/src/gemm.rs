//! The one door to `matrixmultiply::sgemm`: a safe, bounds-checked matrix view API.
//!
//! BLIS names: C[m, n] = alpha * A[m, k] · B[k, n] + beta * C. A view is a slice with a
//! row stride and a column stride, so a transpose is a view with the strides swapped and
//! nothing is copied. The GEMM runs on the calling thread; callers parallelise around it
//! (see `parallel`), which keeps every product's summation order fixed.

/// A read-only matrix view of a slice.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

/// A writable matrix view of a slice.
#[derive(Debug)]
pub struct MatMut<'a> {
    data: &'a mut [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

/// The largest offset a view touches, or `None` for an empty view.
fn last_offset(rows: usize, cols: usize, row_stride: usize, col_stride: usize) -> Option<usize> {
    if rows == 0 || cols == 0 {
        return None;
    }
    Some((rows - 1) * row_stride + (cols - 1) * col_stride)
}

#[track_caller]
fn check_fits(len: usize, rows: usize, cols: usize, row_stride: usize, col_stride: usize) {
    if let Some(last) = last_offset(rows, cols, row_stride, col_stride) {
        assert!(
            last < len,
            "matrix view {rows}x{cols} with strides ({row_stride}, {col_stride}) \
             reaches offset {last}, slice has {len} values"
        );
    }
}

impl<'a> MatRef<'a> {
    /// A row-major `rows` x `cols` matrix.
    #[track_caller]
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> MatRef<'a> {
        MatRef::strided(data, rows, cols, cols, 1)
    }

    #[track_caller]
    pub fn strided(
        data: &'a [f32],
        rows: usize,
        cols: usize,
        row_stride: usize,
        col_stride: usize,
    ) -> MatRef<'a> {
        check_fits(data.len(), rows, cols, row_stride, col_stride);
        MatRef {
            data,
            rows,
            cols,
            row_stride,
            col_stride,
        }
    }

    /// The transpose, as a view of the same values.
    pub fn t(self) -> MatRef<'a> {
        MatRef {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }
}

impl<'a> MatMut<'a> {
    /// A row-major `rows` x `cols` matrix.
    #[track_caller]
    pub fn row_major(data: &'a mut [f32], rows: usize, cols: usize) -> MatMut<'a> {
        MatMut::strided(data, rows, cols, cols, 1)
    }

    /// Element (i, j) at `data[i * row_stride + j * col_stride]`. The strides must not make
    /// two elements share a place: a write to one would change the other.
    #[track_caller]
    pub fn strided(
        data: &'a mut [f32],
        rows: usize,
        cols: usize,
        row_stride: usize,
        col_stride: usize,
    ) -> MatMut<'a> {
        check_fits(data.len(), rows, cols, row_stride, col_stride);
        let (inner, inner_len, outer) = if col_stride <= row_stride {
            (col_stride, cols, row_stride)
        } else {
            (row_stride, rows, col_stride)
        };
        assert!(
            rows <= 1 || cols <= 1 || (inner >= 1 && outer >= inner * inner_len),
            "matrix view {rows}x{cols} with strides ({row_stride}, {col_stride}) overlaps itself"
        );
        MatMut {
            data,
            rows,
            cols,
            row_stride,
            col_stride,
        }
    }
}

#[allow(unsafe_code)] // the one place: see the SAFETY note inside
/// `c = alpha * a · b + beta * c`. With `beta == 0` the old values of `c` are not read.
///
/// Panics when the shapes do not chain.
#[track_caller]
pub fn gemm(alpha: f32, a: MatRef<'_>, b: MatRef<'_>, beta: f32, c: MatMut<'_>) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert!(
        b.rows == k && c.rows == m && c.cols == n,
        "gemm shapes do not chain: A {m}x{k}, B {}x{n}, C {}x{}",
        b.rows,
        c.rows,
        c.cols
    );
    if m == 0 || n == 0 {
        return;
    }
    let to_isize = |s: usize| isize::try_from(s).expect("stride fits in isize");
    // SAFETY: every view was checked at construction to stay inside its slice for its
    // rows, cols and strides (`check_fits`); the shapes chain (asserted above), so sgemm
    // reads A[m, k], B[k, n] and writes C[m, n] inside those slices only. `c` is borrowed
    // mutably and cannot alias `a` or `b`. With k == 0 sgemm only scales C.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            alpha,
            a.data.as_ptr(),
            to_isize(a.row_stride),
            to_isize(a.col_stride),
            b.data.as_ptr(),
            to_isize(b.row_stride),
            to_isize(b.col_stride),
            beta,
            c.data.as_mut_ptr(),
            to_isize(c.row_stride),
            to_isize(c.col_stride),
        );
    }
}

/// The plain triple loop, the specification `gemm` is tested against.
pub fn gemm_naive(alpha: f32, a: MatRef<'_>, b: MatRef<'_>, beta: f32, c: MatMut<'_>) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0.0f32;
            for p in 0..k {
                acc += a.data[i * a.row_stride + p * a.col_stride]
                    * b.data[p * b.row_stride + j * b.col_stride];
            }
            let out = &mut c.data[i * c.row_stride + j * c.col_stride];
            *out = if beta == 0.0 {
                alpha * acc
            } else {
                alpha * acc + beta * *out
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(n: usize, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 7 % 13) as f32 - 6.0) * scale)
            .collect()
    }

    #[test]
    fn gemm_matches_naive_with_transposes_and_beta() {
        let (m, k, n) = (7, 19, 5);
        let a = ramp(m * k, 0.1);
        let bt = ramp(n * k, 0.2); // stored as [n, k], used transposed
        let mut c_fast = ramp(m * n, 0.3);
        let mut c_naive = c_fast.clone();
        let a_view = MatRef::row_major(&a, m, k);
        let b_view = MatRef::row_major(&bt, n, k).t();
        gemm(
            0.5,
            a_view,
            b_view,
            1.0,
            MatMut::row_major(&mut c_fast, m, n),
        );
        gemm_naive(
            0.5,
            a_view,
            b_view,
            1.0,
            MatMut::row_major(&mut c_naive, m, n),
        );
        for (x, y) in c_fast.iter().zip(&c_naive) {
            assert!((x - y).abs() < 1e-4, "{x} vs {y}");
        }
    }

    #[test]
    fn beta_zero_ignores_nan_in_output() {
        let a = [1.0, 2.0];
        let b = [3.0, 4.0];
        let mut c = [f32::NAN];
        gemm(
            1.0,
            MatRef::row_major(&a, 1, 2),
            MatRef::row_major(&b, 2, 1),
            0.0,
            MatMut::row_major(&mut c, 1, 1),
        );
        assert_eq!(c, [11.0]);
    }

    #[test]
    #[should_panic(expected = "reaches offset")]
    fn view_past_the_slice_is_refused() {
        let a = [0.0; 5];
        MatRef::row_major(&a, 2, 3);
    }

    #[test]
    #[should_panic(expected = "do not chain")]
    fn mismatched_shapes_are_refused() {
        let a = [0.0; 6];
        let mut c = [0.0; 4];
        gemm(
            1.0,
            MatRef::row_major(&a, 2, 3),
            MatRef::row_major(&a, 2, 3),
            0.0,
            MatMut::row_major(&mut c, 2, 2),
        );
    }
}
