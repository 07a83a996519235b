//! A dense f32 tensor in row-major order; four-dimensional tensors are NCHW.

use std::fmt;

/// A shape and its values, row-major: the last dimension is contiguous.
#[derive(Clone, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Vec<f32>,
}

impl Tensor {
    /// A tensor of zeros.
    pub fn zeros(shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        Tensor {
            shape: shape.to_vec(),
            data: vec![0.0; n],
        }
    }

    /// Wraps `data` as a tensor of `shape`.
    ///
    /// Panics when the number of values does not match the shape.
    #[track_caller]
    pub fn from_vec(shape: &[usize], data: Vec<f32>) -> Tensor {
        let n: usize = shape.iter().product();
        assert_eq!(
            n,
            data.len(),
            "shape {shape:?} needs {n} values, got {}",
            data.len()
        );
        Tensor {
            shape: shape.to_vec(),
            data,
        }
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn data(&self) -> &[f32] {
        &self.data
    }

    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }

    pub fn into_data(self) -> Vec<f32> {
        self.data
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The four dimensions of an NCHW tensor.
    ///
    /// Panics when the tensor is not four-dimensional.
    #[track_caller]
    pub fn dims4(&self) -> [usize; 4] {
        match self.shape[..] {
            [n, c, h, w] => [n, c, h, w],
            _ => panic!("expected a 4-d NCHW tensor, got shape {:?}", self.shape),
        }
    }

    /// The two dimensions of a matrix.
    #[track_caller]
    pub fn dims2(&self) -> [usize; 2] {
        match self.shape[..] {
            [rows, cols] => [rows, cols],
            _ => panic!("expected a 2-d tensor, got shape {:?}", self.shape),
        }
    }

    /// The same values under another shape with as many elements.
    #[track_caller]
    pub fn reshape(mut self, shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        assert_eq!(
            n,
            self.data.len(),
            "cannot reshape {:?} to {shape:?}",
            self.shape
        );
        self.shape = shape.to_vec();
        self
    }

    /// Adds `other` into `self` element by element.
    #[track_caller]
    pub fn add_assign(&mut self, other: &Tensor) {
        assert_eq!(
            self.shape, other.shape,
            "adding tensors of different shapes"
        );
        for (a, b) in self.data.iter_mut().zip(&other.data) {
            *a += b;
        }
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let head: Vec<f32> = self.data.iter().take(8).copied().collect();
        write!(f, "Tensor{:?} {head:?}", self.shape)?;
        if self.data.len() > head.len() {
            write!(f, "...")?;
        }
        Ok(())
    }
}
