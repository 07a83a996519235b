//! Shape-only ops: the values stay, the shape changes.

use crate::graph::{Backward, Grads, Graph, Var};
use crate::tensor::Tensor;

struct ReshapeBackward {
    input: Var,
    input_shape: Vec<usize>,
}

impl Backward for ReshapeBackward {
    fn name(&self) -> &'static str {
        "reshape.backward"
    }

    fn backward(&self, _values: &[Tensor], d_out: &Tensor, grads: &mut Grads<'_>) {
        grads.add(self.input, d_out.clone().reshape(&self.input_shape));
    }
}

impl Graph {
    /// `[N, C, H, W] -> [N, C·H·W]`
    pub fn flatten(&mut self, input: Var) -> Var {
        let input_shape = self.value(input).shape().to_vec();
        let n = input_shape[0];
        let rest: usize = input_shape[1..].iter().product();
        let out = self.value(input).clone().reshape(&[n, rest]);
        self.push_op(out, &[input], ReshapeBackward { input, input_shape })
    }
}
