//! The reverse-mode autograd tape.
//!
//! A `Graph` records values in the order they are computed. Each op pushes its output
//! together with a small struct holding its inputs and what its backward needs from the
//! forward pass. `backward` walks the tape from the end: every node's gradient is complete
//! once all later nodes have run, because an op's inputs always come before its output.
//! Op backwards return fresh gradient tensors; the tape adds them into the inputs'
//! gradients, so a value used twice receives the sum.

use crate::tensor::Tensor;

/// A handle to a value on the tape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Var(pub(crate) usize);

/// An op's backward pass: given the gradient of its output, it adds the gradients of its
/// inputs into `grads`.
pub(crate) trait Backward: Send + Sync {
    /// The op's name in profiles, e.g. "conv2d.backward".
    fn name(&self) -> &'static str;

    fn backward(&self, values: &[Tensor], d_out: &Tensor, grads: &mut Grads<'_>);
}

/// The gradients of the nodes before the one whose backward is running.
pub(crate) struct Grads<'a> {
    grads: &'a mut [Option<Tensor>],
    needs_grad: &'a [bool],
}

impl Grads<'_> {
    /// Whether `var` needs a gradient; ops skip work for inputs that do not.
    pub(crate) fn wants(&self, var: Var) -> bool {
        self.needs_grad[var.0]
    }

    /// Adds `grad` into the gradient of `var`.
    #[track_caller]
    pub(crate) fn add(&mut self, var: Var, grad: Tensor) {
        if !self.needs_grad[var.0] {
            return;
        }
        match &mut self.grads[var.0] {
            Some(existing) => existing.add_assign(&grad),
            slot @ None => *slot = Some(grad),
        }
    }
}

/// A tape of values and the ops that made them.
#[derive(Default)]
pub struct Graph {
    values: Vec<Tensor>,
    grads: Vec<Option<Tensor>>,
    ops: Vec<Option<Box<dyn Backward>>>,
    needs_grad: Vec<bool>,
}

impl Graph {
    pub fn new() -> Graph {
        Graph::default()
    }

    /// A value with no op behind it: an input (`needs_grad = false`) or a parameter.
    pub fn leaf(&mut self, value: Tensor, needs_grad: bool) -> Var {
        self.values.push(value);
        self.grads.push(None);
        self.ops.push(None);
        self.needs_grad.push(needs_grad);
        Var(self.values.len() - 1)
    }

    /// Records an op's output; it needs a gradient when any input does.
    pub(crate) fn push_op(
        &mut self,
        value: Tensor,
        inputs: &[Var],
        op: impl Backward + 'static,
    ) -> Var {
        let needs_grad = inputs.iter().any(|v| self.needs_grad[v.0]);
        self.values.push(value);
        self.grads.push(None);
        self.ops
            .push(needs_grad.then(|| Box::new(op) as Box<dyn Backward>));
        self.needs_grad.push(needs_grad);
        Var(self.values.len() - 1)
    }

    /// Number of values on the tape.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn value(&self, var: Var) -> &Tensor {
        &self.values[var.0]
    }

    /// The gradient of `var` after `backward`, if anything depended on it.
    pub fn grad(&self, var: Var) -> Option<&Tensor> {
        self.grads[var.0].as_ref()
    }

    /// Back-propagates from the scalar `loss` (seeded with d loss = 1).
    ///
    /// Panics when `loss` is not a single value.
    #[track_caller]
    pub fn backward(&mut self, loss: Var) {
        let loss_len = self.values[loss.0].len();
        assert_eq!(
            loss_len, 1,
            "backward starts from a scalar, got {loss_len} values"
        );
        let shape = self.values[loss.0].shape().to_vec();
        self.grads[loss.0] = Some(Tensor::from_vec(&shape, vec![1.0]));
        for idx in (0..=loss.0).rev() {
            let Some(op) = &self.ops[idx] else { continue };
            // Gradients of intermediate values are not needed once their op has run.
            let Some(d_out) = self.grads[idx].take() else {
                continue;
            };
            let mut grads = Grads {
                grads: &mut self.grads[..idx],
                needs_grad: &self.needs_grad[..idx],
            };
            crate::profile::time(op.name(), || op.backward(&self.values, &d_out, &mut grads));
        }
    }
}
