//! Networks described as data: a list of layers, their parameters named as PyTorch names
//! the same network written as an `nn.Sequential` (`0.weight`, `1.running_mean`, ...).
//!
//! Shapes: N batch, C channels, H/W height and width. A network maps `[N, C, H, W]`
//! images to `[N, classes]` logits.

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::graph::{Graph, Var};
use crate::ops::activation::{relu_forward, tanh_in_place};
use crate::ops::batchnorm::{batch_norm2d_eval_in_place, BatchNormConfig, RunningStats, ThenApply};
use crate::ops::conv::{conv2d_forward, Conv2dConfig};
use crate::ops::linear::linear_forward;
use crate::ops::pool::{avg_pool2d_forward, max_pool2d_forward, PoolConfig};
use crate::rng::{keyed_rng, Purpose};
use crate::tensor::Tensor;

fn one() -> usize {
    1
}

/// One layer of a sequential network; its position in the list is its PyTorch index.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Layer {
    Conv2d {
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        #[serde(default = "one")]
        stride: usize,
        #[serde(default)]
        padding: usize,
    },
    BatchNorm2d {
        channels: usize,
    },
    Tanh,
    Relu,
    AvgPool2d {
        kernel: usize,
        stride: usize,
    },
    MaxPool2d {
        kernel: usize,
        stride: usize,
    },
    Flatten,
    Linear {
        in_features: usize,
        out_features: usize,
    },
}

/// The reference network of RECIPES.md, `lenet5-bn`, as PyTorch's `nn.Sequential`.
pub fn lenet5_bn() -> Vec<Layer> {
    use Layer::*;
    let conv = |in_channels, out_channels| Conv2d {
        in_channels,
        out_channels,
        kernel: 5,
        stride: 1,
        padding: 0,
    };
    let pool = AvgPool2d {
        kernel: 2,
        stride: 2,
    };
    vec![
        conv(3, 6),                    // 0: [N, 6, 28, 28]
        BatchNorm2d { channels: 6 },   // 1
        Tanh,                          // 2
        pool,                          // 3: [N, 6, 14, 14]
        conv(6, 16),                   // 4: [N, 16, 10, 10]
        BatchNorm2d { channels: 16 },  // 5
        Tanh,                          // 6
        pool,                          // 7: [N, 16, 5, 5]
        conv(16, 120),                 // 8: [N, 120, 1, 1]
        BatchNorm2d { channels: 120 }, // 9
        Tanh,                          // 10
        Flatten,                       // 11: [N, 120]
        Linear {
            in_features: 120,
            out_features: 84,
        }, // 12
        Tanh,                          // 13
        Linear {
            in_features: 84,
            out_features: 10,
        }, // 14: logits
    ]
}

/// A layer list that does not fit together, named by the layer's index.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ShapeError {
    /// A size of the layer is zero (`Layer::zero_size`).
    #[error("network layer {layer_idx}: {key} must be at least 1, found 0")]
    ZeroSize { layer_idx: usize, key: &'static str },
    /// The layer cannot take the shape the layers before it give.
    #[error("layer {layer_idx} ({layer:?}) cannot take input of shape {input:?}")]
    DoesNotFit {
        layer_idx: usize,
        layer: Layer,
        input: Vec<usize>,
    },
}

impl Layer {
    /// The first of the layer's sizes that is zero, by its recipe key: every size must be at
    /// least 1 (padding may be 0).
    pub fn zero_size(&self) -> Option<&'static str> {
        let sizes: &[(&'static str, usize)] = match *self {
            Layer::Conv2d {
                in_channels,
                out_channels,
                kernel,
                stride,
                ..
            } => &[
                ("in_channels", in_channels),
                ("out_channels", out_channels),
                ("kernel", kernel),
                ("stride", stride),
            ],
            Layer::BatchNorm2d { channels } => &[("channels", channels)],
            Layer::AvgPool2d { kernel, stride } | Layer::MaxPool2d { kernel, stride } => {
                &[("kernel", kernel), ("stride", stride)]
            }
            Layer::Linear {
                in_features,
                out_features,
            } => &[("in_features", in_features), ("out_features", out_features)],
            Layer::Tanh | Layer::Relu | Layer::Flatten => &[],
        };
        sizes
            .iter()
            .find(|(_, size)| *size == 0)
            .map(|(key, _)| *key)
    }
}

/// The output shape of every layer for one input of shape `input` (without the batch
/// dimension), or the first layer that does not fit.
pub fn infer_shapes(layers: &[Layer], input: &[usize]) -> Result<Vec<Vec<usize>>, ShapeError> {
    let mut shape = input.to_vec();
    let mut shapes = Vec::with_capacity(layers.len());
    for (layer_idx, layer) in layers.iter().enumerate() {
        if let Some(key) = layer.zero_size() {
            return Err(ShapeError::ZeroSize { layer_idx, key });
        }
        let err = || ShapeError::DoesNotFit {
            layer_idx,
            layer: *layer,
            input: shape.clone(),
        };
        shape = match (*layer, &shape[..]) {
            (
                Layer::Conv2d {
                    in_channels,
                    out_channels,
                    kernel,
                    stride,
                    padding,
                },
                &[c, h, w],
            ) if c == in_channels && h + 2 * padding >= kernel && w + 2 * padding >= kernel => {
                vec![
                    out_channels,
                    (h + 2 * padding - kernel) / stride + 1,
                    (w + 2 * padding - kernel) / stride + 1,
                ]
            }
            (Layer::BatchNorm2d { channels }, &[c, _, _]) if c == channels => shape.clone(),
            (Layer::Tanh | Layer::Relu, _) => shape.clone(),
            (
                Layer::AvgPool2d { kernel, stride } | Layer::MaxPool2d { kernel, stride },
                &[c, h, w],
            ) if h >= kernel && w >= kernel => {
                vec![c, (h - kernel) / stride + 1, (w - kernel) / stride + 1]
            }
            (Layer::Flatten, s) if !s.is_empty() => {
                match s.iter().try_fold(1usize, |a, &b| a.checked_mul(b)) {
                    Some(len) => vec![len],
                    None => return Err(err()),
                }
            }
            (
                Layer::Linear {
                    in_features,
                    out_features,
                },
                &[f],
            ) if f == in_features => vec![out_features],
            _ => return Err(err()),
        };
        shapes.push(shape.clone());
    }
    Ok(shapes)
}

/// A named parameter tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    pub name: String,
    pub value: Tensor,
}

/// A sequential network: its layers, its parameters in a fixed order and the running
/// statistics of its batch-norm layers.
#[derive(Clone, Debug, PartialEq)]
pub struct Network {
    pub layers: Vec<Layer>,
    /// In layer order: weight then bias of every conv, batch-norm and linear layer.
    pub params: Vec<Param>,
    /// One per batch-norm layer, in layer order.
    pub running: Vec<RunningStats>,
    pub bn_config: BatchNormConfig,
}

/// The logits of a forward pass and the tape handles of the parameters, in `params` order.
pub struct Forward {
    pub logits: Var,
    pub params: Vec<Var>,
}

impl Network {
    /// PyTorch's default initialisation: conv and linear weights and biases uniform in
    /// ±1/√fan_in (what Kaiming-uniform with a = √5 comes to), batch-norm scale 1 and
    /// shift 0. Parameter `i` draws from the stream (seed, Init, i).
    pub fn new(layers: Vec<Layer>, seed: u64) -> Network {
        let mut params = Vec::new();
        let mut running = Vec::new();
        for (layer_idx, layer) in layers.iter().enumerate() {
            let uniform = |name: &str, shape: &[usize], fan_in: usize, params: &mut Vec<Param>| {
                let bound = 1.0 / (fan_in as f32).sqrt();
                let mut rng = keyed_rng(seed, Purpose::Init, params.len() as u64, 0);
                let n: usize = shape.iter().product();
                let data = (0..n).map(|_| rng.gen_range(-bound..bound)).collect();
                params.push(Param {
                    name: format!("{layer_idx}.{name}"),
                    value: Tensor::from_vec(shape, data),
                });
            };
            match *layer {
                Layer::Conv2d {
                    in_channels,
                    out_channels,
                    kernel,
                    ..
                } => {
                    let fan_in = in_channels * kernel * kernel;
                    uniform(
                        "weight",
                        &[out_channels, in_channels, kernel, kernel],
                        fan_in,
                        &mut params,
                    );
                    uniform("bias", &[out_channels], fan_in, &mut params);
                }
                Layer::Linear {
                    in_features,
                    out_features,
                } => {
                    uniform(
                        "weight",
                        &[out_features, in_features],
                        in_features,
                        &mut params,
                    );
                    uniform("bias", &[out_features], in_features, &mut params);
                }
                Layer::BatchNorm2d { channels } => {
                    params.push(Param {
                        name: format!("{layer_idx}.weight"),
                        value: Tensor::from_vec(&[channels], vec![1.0; channels]),
                    });
                    params.push(Param {
                        name: format!("{layer_idx}.bias"),
                        value: Tensor::zeros(&[channels]),
                    });
                    running.push(RunningStats::new(channels));
                }
                _ => {}
            }
        }
        Network {
            layers,
            params,
            running,
            bn_config: BatchNormConfig::default(),
        }
    }

    /// The number of values of every parameter, in order.
    pub fn param_lens(&self) -> Vec<usize> {
        self.params.iter().map(|p| p.value.len()).collect()
    }

    /// Builds the forward pass of `input` `[N, C, H, W]` on `graph`. In training the
    /// batch-norm layers use batch statistics and update their running estimates.
    pub fn forward(&mut self, graph: &mut Graph, input: Var, training: bool) -> Forward {
        let params: Vec<Var> = self
            .params
            .iter()
            .map(|p| graph.leaf(p.value.clone(), training))
            .collect();
        let mut next_param = params.iter().copied();
        let mut running = self.running.iter_mut();
        let mut x = input;
        for layer in &self.layers {
            x = match *layer {
                Layer::Conv2d {
                    stride, padding, ..
                } => {
                    let (w, b) = (next_param.next().unwrap(), next_param.next().unwrap());
                    graph.conv2d(x, w, b, Conv2dConfig { stride, padding })
                }
                Layer::BatchNorm2d { .. } => {
                    let (gamma, beta) = (next_param.next().unwrap(), next_param.next().unwrap());
                    let stats = running
                        .next()
                        .expect("one running-stats entry per batch norm");
                    graph.batch_norm2d(x, gamma, beta, stats, self.bn_config, training)
                }
                Layer::Tanh => graph.tanh(x),
                Layer::Relu => graph.relu(x),
                Layer::AvgPool2d { kernel, stride } => {
                    graph.avg_pool2d(x, PoolConfig { kernel, stride })
                }
                Layer::MaxPool2d { kernel, stride } => {
                    graph.max_pool2d(x, PoolConfig { kernel, stride })
                }
                Layer::Flatten => graph.flatten(x),
                Layer::Linear { .. } => {
                    let (w, b) = (next_param.next().unwrap(), next_param.next().unwrap());
                    graph.linear(x, w, b)
                }
            };
        }
        Forward { logits: x, params }
    }
}

impl Network {
    /// The logits of `input` `[N, C, H, W]` in evaluation mode (running batch-norm
    /// statistics), without a tape: each op's forward runs directly, in place where it can,
    /// and every intermediate value is dropped as soon as the next layer has read it. A batch
    /// norm followed by tanh or ReLU runs as one pass (`batch_norm2d_eval_in_place`); every
    /// value still goes through the same operations as on the tape, so the logits are the
    /// same bits as `forward`'s in evaluation mode.
    pub fn infer(&mut self, input: Tensor) -> Tensor {
        let mut params = self.params.iter().map(|p| &p.value);
        let mut running = self.running.iter_mut();
        let mut layers = self.layers.iter().peekable();
        let mut x = input;
        while let Some(layer) = layers.next() {
            x = match *layer {
                Layer::Conv2d {
                    stride, padding, ..
                } => {
                    let (w, b) = (params.next().unwrap(), params.next().unwrap());
                    crate::profile::time("infer.conv2d", || {
                        conv2d_forward(&x, w, b, Conv2dConfig { stride, padding }).0
                    })
                }
                Layer::BatchNorm2d { .. } => {
                    let (gamma, beta) = (params.next().unwrap(), params.next().unwrap());
                    let stats = running
                        .next()
                        .expect("one running-stats entry per batch norm");
                    let then = match layers.peek() {
                        Some(Layer::Tanh) => ThenApply::Tanh,
                        Some(Layer::Relu) => ThenApply::Relu,
                        _ => ThenApply::Nothing,
                    };
                    if then != ThenApply::Nothing {
                        layers.next();
                    }
                    crate::profile::time("infer.batch_norm2d+activation", || {
                        batch_norm2d_eval_in_place(&mut x, gamma, beta, stats, self.bn_config, then)
                    });
                    x
                }
                Layer::Tanh => {
                    crate::profile::time("infer.tanh", || tanh_in_place(&mut x));
                    x
                }
                Layer::Relu => crate::profile::time("infer.relu", || relu_forward(&x)),
                Layer::AvgPool2d { kernel, stride } => {
                    crate::profile::time("infer.avg_pool2d", || {
                        avg_pool2d_forward(&x, PoolConfig { kernel, stride })
                    })
                }
                Layer::MaxPool2d { kernel, stride } => {
                    crate::profile::time("infer.max_pool2d", || {
                        max_pool2d_forward(&x, PoolConfig { kernel, stride }).0
                    })
                }
                Layer::Flatten => {
                    let n = x.shape()[0];
                    let rest = x.len() / n.max(1);
                    x.reshape(&[n, rest])
                }
                Layer::Linear { .. } => {
                    let (w, b) = (params.next().unwrap(), params.next().unwrap());
                    crate::profile::time("infer.linear", || linear_forward(&x, w, b))
                }
            };
        }
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenet_shapes_match_the_recipe_table() {
        // The output column of the network table in RECIPES.md.
        let shapes = infer_shapes(&lenet5_bn(), &[3, 32, 32]).unwrap();
        assert_eq!(shapes[0], [6, 28, 28]);
        assert_eq!(shapes[3], [6, 14, 14]);
        assert_eq!(shapes[4], [16, 10, 10]);
        assert_eq!(shapes[7], [16, 5, 5]);
        assert_eq!(shapes[8], [120, 1, 1]);
        assert_eq!(shapes[11], [120]);
        assert_eq!(shapes[14], [10]);
    }

    #[test]
    fn infer_gives_the_logits_of_an_evaluation_forward_on_the_tape() {
        let mut net = Network::new(lenet5_bn(), 9);
        net.running[0].mean = vec![0.1, -0.2, 0.05, 0.0, 0.3, -0.1];
        let x = Tensor::from_vec(
            &[3, 3, 32, 32],
            (0..3 * 3072).map(|i| (i % 17) as f32 * 0.1 - 0.8).collect(),
        );
        let mut graph = Graph::new();
        let input = graph.leaf(x.clone(), false);
        let forward = net.clone().forward(&mut graph, input, false);
        assert_eq!(net.infer(x).data(), graph.value(forward.logits).data());
    }

    #[test]
    fn infer_fuses_batch_norm_and_relu_without_changing_the_logits() {
        // Batch norm then ReLU, batch norm alone, and a lone tanh: each of the paths of
        // `infer` besides lenet5-bn's batch norm then tanh.
        let layers = vec![
            Layer::Conv2d {
                in_channels: 3,
                out_channels: 4,
                kernel: 3,
                stride: 2,
                padding: 1,
            },
            Layer::BatchNorm2d { channels: 4 },
            Layer::Relu,
            Layer::BatchNorm2d { channels: 4 },
            Layer::Tanh,
            Layer::Flatten,
            Layer::Linear {
                in_features: 4 * 4 * 4,
                out_features: 3,
            },
        ];
        let mut net = Network::new(layers, 4);
        net.running[0].var = vec![0.5, 2.0, 1.0, 0.25];
        net.running[1].mean = vec![0.2, -0.1, 0.0, 0.4];
        let x = Tensor::from_vec(
            &[2, 3, 8, 8],
            (0..2 * 192).map(|i| (i % 13) as f32 * 0.15 - 0.9).collect(),
        );
        let mut graph = Graph::new();
        let input = graph.leaf(x.clone(), false);
        let forward = net.clone().forward(&mut graph, input, false);
        let bits = |t: &Tensor| t.data().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&net.infer(x)), bits(graph.value(forward.logits)));
    }

    #[test]
    fn a_layer_that_does_not_fit_is_named() {
        let mut layers = lenet5_bn();
        layers[4] = Layer::Conv2d {
            in_channels: 7,
            out_channels: 16,
            kernel: 5,
            stride: 1,
            padding: 0,
        };
        let err = infer_shapes(&layers, &[3, 32, 32]).unwrap_err();
        let ShapeError::DoesNotFit {
            layer_idx, input, ..
        } = err
        else {
            panic!("{err:?}")
        };
        assert_eq!(layer_idx, 4);
        assert_eq!(input, [6, 14, 14]);
    }

    #[test]
    fn parameter_names_follow_nn_sequential() {
        let net = Network::new(lenet5_bn(), 0);
        let names: Vec<&str> = net.params.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "0.weight",
                "0.bias",
                "1.weight",
                "1.bias",
                "4.weight",
                "4.bias",
                "5.weight",
                "5.bias",
                "8.weight",
                "8.bias",
                "9.weight",
                "9.bias",
                "12.weight",
                "12.bias",
                "14.weight",
                "14.bias"
            ]
        );
        // 456 + 12 + 2416 + 32 + 48120 + 240 + 10164 + 850, as PyTorch counts the network.
        assert_eq!(net.param_lens().iter().sum::<usize>(), 62_290);
    }

    #[test]
    fn init_is_uniform_within_the_fan_in_bound_and_seeded() {
        let a = Network::new(lenet5_bn(), 3);
        let b = Network::new(lenet5_bn(), 3);
        let c = Network::new(lenet5_bn(), 4);
        assert_eq!(a, b);
        assert_ne!(a.params[0].value, c.params[0].value);
        // conv 8: fan_in = 16·5·5 = 400, bound 0.05.
        let w = a.params[8].value.data();
        assert!(w.iter().all(|v| v.abs() < 0.05));
        assert!(
            w.iter().any(|v| v.abs() > 0.045),
            "draws should reach near the bound"
        );
        let mean: f32 = w.iter().sum::<f32>() / w.len() as f32;
        assert!(mean.abs() < 0.002, "mean {mean} of 48000 uniform draws");
        assert!(a.params[2].value.data().iter().all(|&v| v == 1.0));
        assert!(a.params[3].value.data().iter().all(|&v| v == 0.0));
    }
}
