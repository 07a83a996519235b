//! Fully connected layer, PyTorch layout: weight `[OUT, IN]`, bias `[OUT]`.
//!
//! Shapes: N batch, IN input features, OUT output features; `[N, IN] -> [N, OUT]`,
//! y = x · Wᵀ + b.

use crate::gemm::{gemm, MatMut, MatRef};
use crate::graph::{Backward, Grads, Graph, Var};
use crate::tensor::Tensor;

pub struct LinearGrads {
    pub d_input: Tensor,
    pub d_weight: Tensor,
    pub d_bias: Tensor,
}

/// y = x · Wᵀ + b
pub fn linear_forward(input: &Tensor, weight: &Tensor, bias: &Tensor) -> Tensor {
    let [n, n_in] = input.dims2();
    let [n_out, w_in] = weight.dims2();
    assert!(
        w_in == n_in && bias.shape() == [n_out],
        "linear: input {:?}, weight {:?}, bias {:?}",
        input.shape(),
        weight.shape(),
        bias.shape()
    );
    let mut out = Tensor::zeros(&[n, n_out]);
    for row in out.data_mut().chunks_mut(n_out) {
        row.copy_from_slice(bias.data());
    }
    let x = MatRef::row_major(input.data(), n, n_in);
    let w_t = MatRef::row_major(weight.data(), n_out, n_in).t();
    gemm(
        1.0,
        x,
        w_t,
        1.0,
        MatMut::row_major(out.data_mut(), n, n_out),
    );
    out
}

/// Gradients of `linear_forward`, into fresh tensors. The batch sum inside dW is one GEMM
/// on one thread, so its order is fixed.
pub fn linear_backward(input: &Tensor, weight: &Tensor, d_out: &Tensor) -> LinearGrads {
    let [n, n_in] = input.dims2();
    let [n_out, _] = weight.dims2();
    let g = MatRef::row_major(d_out.data(), n, n_out);

    // dx = d_out · W
    let mut d_input = Tensor::zeros(&[n, n_in]);
    let w = MatRef::row_major(weight.data(), n_out, n_in);
    gemm(
        1.0,
        g,
        w,
        0.0,
        MatMut::row_major(d_input.data_mut(), n, n_in),
    );

    // dW = d_outᵀ · x
    let mut d_weight = Tensor::zeros(&[n_out, n_in]);
    let x = MatRef::row_major(input.data(), n, n_in);
    gemm(
        1.0,
        g.t(),
        x,
        0.0,
        MatMut::row_major(d_weight.data_mut(), n_out, n_in),
    );

    // db = Σ_n d_out
    let mut d_bias = Tensor::zeros(&[n_out]);
    for row in d_out.data().chunks(n_out) {
        for (b, &v) in d_bias.data_mut().iter_mut().zip(row) {
            *b += v;
        }
    }
    LinearGrads {
        d_input,
        d_weight,
        d_bias,
    }
}

struct LinearBackward {
    input: Var,
    weight: Var,
    bias: Var,
}

impl Backward for LinearBackward {
    fn name(&self) -> &'static str {
        "linear.backward"
    }

    fn backward(&self, values: &[Tensor], d_out: &Tensor, grads: &mut Grads<'_>) {
        let g = linear_backward(&values[self.input.0], &values[self.weight.0], d_out);
        grads.add(self.input, g.d_input);
        grads.add(self.weight, g.d_weight);
        grads.add(self.bias, g.d_bias);
    }
}

impl Graph {
    /// `[N, IN] -> [N, OUT]`
    pub fn linear(&mut self, input: Var, weight: Var, bias: Var) -> Var {
        let out = crate::profile::time("linear.forward", || {
            linear_forward(self.value(input), self.value(weight), self.value(bias))
        });
        let op = LinearBackward {
            input,
            weight,
            bias,
        };
        self.push_op(out, &[input, weight, bias], op)
    }
}
