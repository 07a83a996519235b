//! Average and max pooling without padding.
//!
//! Shapes: N batch, C channels, H/W input, KH = KW = kernel, OH/OW output with
//! OH = (H - kernel) / stride + 1; `[N, C, H, W] -> [N, C, OH, OW]`.

use rayon::prelude::*;

use crate::graph::{Backward, Grads, Graph, Var};
use crate::tensor::Tensor;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    pub kernel: usize,
    pub stride: usize,
}

#[derive(Clone, Copy, Debug)]
struct PoolDims {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
}

impl PoolDims {
    #[track_caller]
    fn new(input: &[usize], cfg: PoolConfig) -> PoolDims {
        let &[n, c, h, w] = input else {
            panic!("pooling wants a 4-d input, got {input:?}")
        };
        assert!(
            cfg.kernel > 0 && cfg.stride > 0 && h >= cfg.kernel && w >= cfg.kernel,
            "pooling: kernel {} stride {} does not fit input {input:?}",
            cfg.kernel,
            cfg.stride
        );
        PoolDims {
            n,
            c,
            h,
            w,
            oh: (h - cfg.kernel) / cfg.stride + 1,
            ow: (w - cfg.kernel) / cfg.stride + 1,
        }
    }
}

/// The 2x2, stride-2 windows of lenet5-bn.
const HALVING: PoolConfig = PoolConfig {
    kernel: 2,
    stride: 2,
};

/// Each output is the mean of its kernel x kernel window. 2x2 windows at stride 2 take a
/// loop of their own that reads two input rows at a time; other windows the general one.
pub fn avg_pool2d_forward(input: &Tensor, cfg: PoolConfig) -> Tensor {
    if cfg == HALVING {
        avg_pool2x2_forward(input)
    } else {
        avg_pool2d_forward_naive(input, cfg)
    }
}

/// out = ((x00 + x01) + (x10 + x11)) / 4 over each 2x2 window.
fn avg_pool2x2_forward(input: &Tensor) -> Tensor {
    let d = PoolDims::new(input.shape(), HALVING);
    let mut out = Tensor::zeros(&[d.n, d.c, d.oh, d.ow]);
    out.data_mut()
        .par_chunks_mut(d.oh * d.ow)
        .zip(input.data().par_chunks(d.h * d.w))
        .for_each(|(o, x)| {
            for (oh, out_row) in o.chunks_exact_mut(d.ow).enumerate() {
                let top = &x[2 * oh * d.w..][..2 * d.ow];
                let bottom = &x[(2 * oh + 1) * d.w..][..2 * d.ow];
                for ((v, t), b) in out_row
                    .iter_mut()
                    .zip(top.chunks_exact(2))
                    .zip(bottom.chunks_exact(2))
                {
                    *v = ((t[0] + t[1]) + (b[0] + b[1])) * 0.25;
                }
            }
        });
    out
}

/// Any window and stride: the plain loops, and the twin the 2x2 path is tested against.
pub fn avg_pool2d_forward_naive(input: &Tensor, cfg: PoolConfig) -> Tensor {
    let d = PoolDims::new(input.shape(), cfg);
    let scale = 1.0 / (cfg.kernel * cfg.kernel) as f32;
    let mut out = Tensor::zeros(&[d.n, d.c, d.oh, d.ow]);
    out.data_mut()
        .par_chunks_mut(d.oh * d.ow)
        .zip(input.data().par_chunks(d.h * d.w))
        .for_each(|(o, x)| {
            for oh in 0..d.oh {
                for ow in 0..d.ow {
                    let mut acc = 0.0;
                    for kh in 0..cfg.kernel {
                        let row = (oh * cfg.stride + kh) * d.w + ow * cfg.stride;
                        acc += x[row..row + cfg.kernel].iter().sum::<f32>();
                    }
                    o[oh * d.ow + ow] = acc * scale;
                }
            }
        });
    out
}

/// dx = d_out / kernel² spread over each window (overlapping windows add); fresh tensor.
pub fn avg_pool2d_backward(d_out: &Tensor, input_shape: &[usize], cfg: PoolConfig) -> Tensor {
    if cfg == HALVING {
        avg_pool2x2_backward(d_out, input_shape)
    } else {
        avg_pool2d_backward_naive(d_out, input_shape, cfg)
    }
}

/// 2x2 windows at stride 2 do not overlap: each input pixel gets a quarter of its one
/// window's gradient (pixels of an odd last row or column get none).
fn avg_pool2x2_backward(d_out: &Tensor, input_shape: &[usize]) -> Tensor {
    let d = PoolDims::new(input_shape, HALVING);
    let mut d_input = Tensor::zeros(input_shape);
    d_input
        .data_mut()
        .par_chunks_mut(d.h * d.w)
        .zip(d_out.data().par_chunks(d.oh * d.ow))
        .for_each(|(dx, go)| {
            for (oh, g_row) in go.chunks_exact(d.ow).enumerate() {
                for dy in 0..2 {
                    let dx_row = &mut dx[(2 * oh + dy) * d.w..][..2 * d.ow];
                    for (pair, &g) in dx_row.chunks_exact_mut(2).zip(g_row) {
                        pair[0] = g * 0.25;
                        pair[1] = g * 0.25;
                    }
                }
            }
        });
    d_input
}

/// Any window and stride: the plain loops, and the twin the 2x2 path is tested against.
pub fn avg_pool2d_backward_naive(d_out: &Tensor, input_shape: &[usize], cfg: PoolConfig) -> Tensor {
    let d = PoolDims::new(input_shape, cfg);
    let scale = 1.0 / (cfg.kernel * cfg.kernel) as f32;
    let mut d_input = Tensor::zeros(input_shape);
    d_input
        .data_mut()
        .par_chunks_mut(d.h * d.w)
        .zip(d_out.data().par_chunks(d.oh * d.ow))
        .for_each(|(dx, go)| {
            for oh in 0..d.oh {
                for ow in 0..d.ow {
                    let g = go[oh * d.ow + ow] * scale;
                    for kh in 0..cfg.kernel {
                        let row = (oh * cfg.stride + kh) * d.w + ow * cfg.stride;
                        dx[row..row + cfg.kernel].iter_mut().for_each(|v| *v += g);
                    }
                }
            }
        });
    d_input
}

/// Each output is the largest value of its window; also returns, for every output, the
/// index within its input plane of that value (the first one on a tie).
pub fn max_pool2d_forward(input: &Tensor, cfg: PoolConfig) -> (Tensor, Vec<u32>) {
    let d = PoolDims::new(input.shape(), cfg);
    let mut out = Tensor::zeros(&[d.n, d.c, d.oh, d.ow]);
    let mut argmax = vec![0u32; out.len()];
    out.data_mut()
        .par_chunks_mut(d.oh * d.ow)
        .zip(argmax.par_chunks_mut(d.oh * d.ow))
        .zip(input.data().par_chunks(d.h * d.w))
        .for_each(|((o, arg), x)| {
            for oh in 0..d.oh {
                for ow in 0..d.ow {
                    let mut best_idx = (oh * cfg.stride) * d.w + ow * cfg.stride;
                    for kh in 0..cfg.kernel {
                        for kw in 0..cfg.kernel {
                            let idx = (oh * cfg.stride + kh) * d.w + ow * cfg.stride + kw;
                            if x[idx] > x[best_idx] {
                                best_idx = idx;
                            }
                        }
                    }
                    o[oh * d.ow + ow] = x[best_idx];
                    arg[oh * d.ow + ow] = best_idx as u32;
                }
            }
        });
    (out, argmax)
}

/// dx = d_out routed to the position that won each window; fresh tensor.
pub fn max_pool2d_backward(
    d_out: &Tensor,
    argmax: &[u32],
    input_shape: &[usize],
    cfg: PoolConfig,
) -> Tensor {
    let d = PoolDims::new(input_shape, cfg);
    let mut d_input = Tensor::zeros(input_shape);
    d_input
        .data_mut()
        .par_chunks_mut(d.h * d.w)
        .zip(d_out.data().par_chunks(d.oh * d.ow))
        .zip(argmax.par_chunks(d.oh * d.ow))
        .for_each(|((dx, go), arg)| {
            for (&g, &idx) in go.iter().zip(arg) {
                dx[idx as usize] += g;
            }
        });
    d_input
}

struct AvgPoolBackward {
    input: Var,
    input_shape: Vec<usize>,
    cfg: PoolConfig,
}

impl Backward for AvgPoolBackward {
    fn name(&self) -> &'static str {
        "avg_pool2d.backward"
    }

    fn backward(&self, _values: &[Tensor], d_out: &Tensor, grads: &mut Grads<'_>) {
        grads.add(
            self.input,
            avg_pool2d_backward(d_out, &self.input_shape, self.cfg),
        );
    }
}

struct MaxPoolBackward {
    input: Var,
    input_shape: Vec<usize>,
    cfg: PoolConfig,
    argmax: Vec<u32>,
}

impl Backward for MaxPoolBackward {
    fn name(&self) -> &'static str {
        "max_pool2d.backward"
    }

    fn backward(&self, _values: &[Tensor], d_out: &Tensor, grads: &mut Grads<'_>) {
        let d_input = max_pool2d_backward(d_out, &self.argmax, &self.input_shape, self.cfg);
        grads.add(self.input, d_input);
    }
}

impl Graph {
    pub fn avg_pool2d(&mut self, input: Var, cfg: PoolConfig) -> Var {
        let out = crate::profile::time("avg_pool2d.forward", || {
            avg_pool2d_forward(self.value(input), cfg)
        });
        let input_shape = self.value(input).shape().to_vec();
        let op = AvgPoolBackward {
            input,
            input_shape,
            cfg,
        };
        self.push_op(out, &[input], op)
    }

    pub fn max_pool2d(&mut self, input: Var, cfg: PoolConfig) -> Var {
        let (out, argmax) = crate::profile::time("max_pool2d.forward", || {
            max_pool2d_forward(self.value(input), cfg)
        });
        let input_shape = self.value(input).shape().to_vec();
        let op = MaxPoolBackward {
            input,
            input_shape,
            cfg,
            argmax,
        };
        self.push_op(out, &[input], op)
    }
}
