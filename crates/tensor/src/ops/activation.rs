//! Element-wise activations; any shape in, the same shape out.

use rayon::prelude::*;

use crate::graph::{Backward, Grads, Graph, Var};
use crate::tensor::Tensor;

/// Elements handed to one task; fixed, so the split does not depend on the thread count.
const ELEMENTS_PER_TASK: usize = 1 << 14;

fn map(input: &Tensor, f: impl Fn(f32) -> f32 + Sync) -> Tensor {
    let mut out = Tensor::zeros(input.shape());
    out.data_mut()
        .par_chunks_mut(ELEMENTS_PER_TASK)
        .zip(input.data().par_chunks(ELEMENTS_PER_TASK))
        .for_each(|(o, x)| o.iter_mut().zip(x).for_each(|(o, &x)| *o = f(x)));
    out
}

fn zip_map(a: &Tensor, b: &Tensor, f: impl Fn(f32, f32) -> f32 + Sync) -> Tensor {
    assert_eq!(
        a.shape(),
        b.shape(),
        "element-wise op on shapes {:?} and {:?}",
        a.shape(),
        b.shape()
    );
    let mut out = Tensor::zeros(a.shape());
    out.data_mut()
        .par_chunks_mut(ELEMENTS_PER_TASK)
        .zip(a.data().par_chunks(ELEMENTS_PER_TASK))
        .zip(b.data().par_chunks(ELEMENTS_PER_TASK))
        .for_each(|((o, a), b)| {
            for ((o, &a), &b) in o.iter_mut().zip(a).zip(b) {
                *o = f(a, b);
            }
        });
    out
}

/// y = tanh(x)
pub fn tanh_forward(input: &Tensor) -> Tensor {
    map(input, f32::tanh)
}

/// dx = d_out · (1 - y²), from the forward output y; a fresh tensor.
pub fn tanh_backward(out: &Tensor, d_out: &Tensor) -> Tensor {
    zip_map(out, d_out, |y, go| go * (1.0 - y * y))
}

/// y = max(x, 0)
pub fn relu_forward(input: &Tensor) -> Tensor {
    map(input, |x| x.max(0.0))
}

/// dx = d_out where y > 0, else 0 (the subgradient at 0 is taken as 0, as PyTorch does).
pub fn relu_backward(out: &Tensor, d_out: &Tensor) -> Tensor {
    zip_map(out, d_out, |y, go| if y > 0.0 { go } else { 0.0 })
}

/// Both activations keep only their output: the input and the output are the same node
/// pair on the tape, so the output is read back from the tape's values.
struct ActivationBackward {
    input: Var,
    out: Var,
    derivative: fn(&Tensor, &Tensor) -> Tensor,
}

impl Backward for ActivationBackward {
    fn backward(&self, values: &[Tensor], d_out: &Tensor, grads: &mut Grads<'_>) {
        grads.add(self.input, (self.derivative)(&values[self.out.0], d_out));
    }
}

impl Graph {
    fn activation(
        &mut self,
        input: Var,
        forward: fn(&Tensor) -> Tensor,
        derivative: fn(&Tensor, &Tensor) -> Tensor,
    ) -> Var {
        let out = forward(self.value(input));
        let out_var = Var(self.len());
        let op = ActivationBackward {
            input,
            out: out_var,
            derivative,
        };
        self.push_op(out, &[input], op)
    }

    pub fn tanh(&mut self, input: Var) -> Var {
        self.activation(input, tanh_forward, tanh_backward)
    }

    pub fn relu(&mut self, input: Var) -> Var {
        self.activation(input, relu_forward, relu_backward)
    }
}
