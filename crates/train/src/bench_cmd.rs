//! `scratchnet bench`: kernel and training-step timings at the network's real shapes.
//!
//! Every figure is the median of `--iters` timed repetitions after one warm-up, printed
//! beside its GFLOP/s and that rate's share of the machine's sgemm rate measured at start.
//! Shapes: N = 50 images per batch, as the recipes train.

use std::time::{Duration, Instant};

use anyhow::Result;
use clap::{Args, ValueEnum};
use rayon::prelude::*;
use scratchnet_augment::Augmenter;
use scratchnet_cifar::{Dataset, IMAGE_BYTES};
use scratchnet_tensor::gemm::{gemm, MatMut, MatRef};
use scratchnet_tensor::nn::{lenet5_bn, Layer, Network};
use scratchnet_tensor::ops::conv::{
    conv2d_backward, conv2d_backward_naive, conv2d_forward_naive, conv2d_forward_with,
    Conv2dConfig, ConvAlgorithm, ConvDims,
};
use scratchnet_tensor::{profile, Tensor};
use serde_json::json;

use crate::data::{make_batch, Mode};
use crate::evaluate::evaluate;
use crate::recipe::Recipe;
use crate::trainer::{train_step, TrainState};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BenchWhat {
    /// Each conv layer forward and backward by every algorithm that applies and the naive loops.
    Conv,
    /// One v2 training step at batch 50, augmentation included, broken down by op.
    Step,
    /// Evaluation of 10,000 images.
    Eval,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// What to measure.
    #[arg(value_enum)]
    pub what: BenchWhat,
    /// Timed repetitions (the median is reported).
    #[arg(long, default_value_t = 20, value_parser = positive)]
    pub iters: usize,
    /// Images per batch of `conv` and `step`, 2 to 4096 (`eval` evaluates in batches of 500,
    /// as training does).
    #[arg(long, default_value_t = 50, value_parser = batch_size)]
    pub batch_size: usize,
    /// Print one JSON object instead of text lines.
    #[arg(long)]
    pub json: bool,
    /// Worker threads (default: the number of cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// A count of at least one, for clap.
fn positive(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_string()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// A batch size batch norm can train on and memory can hold, for clap.
fn batch_size(text: &str) -> Result<usize, String> {
    let max = crate::recipe::MAX_BATCH_SIZE;
    match text.parse::<usize>() {
        Ok(n) if (2..=max).contains(&n) => Ok(n),
        Ok(n) => Err(format!("{n} is not between 2 and {max}")),
        Err(e) => Err(e.to_string()),
    }
}

/// One more pass of `runs` calls of `f` with the profiler on: each op's milliseconds (in
/// all, divided by `runs`, under the key `per`) and its number of calls in all.
fn profiled(runs: usize, per: &str, mut f: impl FnMut()) -> Vec<serde_json::Value> {
    profile::reset();
    profile::set_enabled(true);
    for _ in 0..runs {
        f();
    }
    profile::set_enabled(false);
    profile::snapshot()
        .into_iter()
        .map(|(name, total, calls)| {
            let ms = total.as_secs_f64() * 1e3 / runs as f64;
            json!({ "op": name, per: ms, "calls": calls })
        })
        .collect()
}

/// `profiled`'s rows as `op=<name> <per>=<ms> calls=<n>` lines.
fn print_breakdown(rows: &[serde_json::Value], per: &str, decimals: usize) -> Result<()> {
    for row in rows {
        outln!(
            "op={} {per}={:.decimals$} calls={}",
            row["op"].as_str().unwrap_or(""),
            row[per].as_f64().unwrap_or(0.0),
            row["calls"]
        )?;
    }
    Ok(())
}

/// The median wall time of `iters` runs of `f` after one warm-up run.
fn median_time(iters: usize, mut f: impl FnMut()) -> Duration {
    f();
    let mut times: Vec<Duration> = (0..iters.max(1))
        .map(|_| {
            let started = Instant::now();
            f();
            started.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

fn gflops(flops: f64, t: Duration) -> f64 {
    flops / t.as_secs_f64() / 1e9
}

/// The machine's sgemm rate in GFLOP/s: every thread multiplying its own 256x256 pair at
/// once, which is how the kernels use the GEMM (one product per thread).
pub fn sgemm_rate(threads: usize) -> f64 {
    const SIDE: usize = 256;
    let a = vec![0.5f32; SIDE * SIDE];
    let b = vec![0.25f32; SIDE * SIDE];
    let mut outs = vec![vec![0.0f32; SIDE * SIDE]; threads];
    let t = median_time(9, || {
        outs.par_iter_mut().for_each(|c| {
            let (a, b) = (
                MatRef::row_major(&a, SIDE, SIDE),
                MatRef::row_major(&b, SIDE, SIDE),
            );
            gemm(1.0, a, b, 0.0, MatMut::row_major(c, SIDE, SIDE));
        })
    });
    gflops((2 * SIDE * SIDE * SIDE * threads) as f64, t)
}

/// Deterministic bytes standing in for images: timings do not depend on pixel values.
fn synthetic(n: usize) -> Dataset {
    let images = (0..n * IMAGE_BYTES)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let labels = (0..n).map(|i| (i % 10) as u8).collect();
    Dataset::new(images, labels).expect("synthetic data is well formed")
}

fn ramp(shape: &[usize], seed: usize) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::from_vec(
        shape,
        (0..n)
            .map(|i| (((i + seed) * 37 % 101) as f32 - 50.0) * 0.01)
            .collect(),
    )
}

pub fn run_bench(args: BenchArgs, threads: usize) -> Result<()> {
    let peak = sgemm_rate(threads);
    match args.what {
        BenchWhat::Conv => bench_conv(&args, peak),
        BenchWhat::Step => bench_step(&args, peak),
        BenchWhat::Eval => bench_eval(&args, peak),
    }
}

fn bench_conv(args: &BenchArgs, peak: f64) -> Result<()> {
    let n = args.batch_size;
    let mut shape = vec![n, 3, 32, 32];
    let mut rows = Vec::new();
    for (layer_idx, layer) in lenet5_bn().into_iter().enumerate() {
        let shapes = scratchnet_tensor::nn::infer_shapes(&[layer], &shape[1..])?;
        let next: Vec<usize> = [n].into_iter().chain(shapes[0].iter().copied()).collect();
        if let Layer::Conv2d {
            in_channels,
            out_channels,
            kernel,
            stride,
            padding,
        } = layer
        {
            let cfg = Conv2dConfig { stride, padding };
            let x = ramp(&shape, 1);
            let w = ramp(&[out_channels, in_channels, kernel, kernel], 2);
            let b = ramp(&[out_channels], 3);
            let d = ConvDims::new(x.shape(), w.shape(), cfg);
            let macs = d.forward_macs() as f64;
            // The first layer's input needs no gradient, as in training.
            let want_input = layer_idx > 0;
            let backward_flops = 2.0 * macs * if want_input { 2.0 } else { 1.0 };
            let d_out = ramp(&next, 4);
            let name = format!("conv{layer_idx}");
            let mut push = |pass: &str, algorithm: &str, t: Duration, flops: f64| {
                rows.push(json!({
                    "layer": name, "pass": pass, "algorithm": algorithm,
                    "default": algorithm == d.algorithm().name(),
                    "input": shape, "weight": [out_channels, in_channels, kernel, kernel],
                    "ms": t.as_secs_f64() * 1e3, "gflops": gflops(flops, t),
                    "share_of_sgemm": gflops(flops, t) / peak,
                }));
            };
            let mut algorithms = vec![ConvAlgorithm::Lanes, ConvAlgorithm::Im2col];
            if d.is_full_window() {
                algorithms.push(ConvAlgorithm::FullWindow);
            }
            for algorithm in algorithms {
                let forward = || conv2d_forward_with(algorithm, &x, &w, &b, cfg);
                let saved = forward().1;
                let fwd = median_time(args.iters, || drop(forward()));
                let bwd = median_time(args.iters, || {
                    drop(conv2d_backward(&saved, &x, &w, &d_out, want_input))
                });
                push("forward", algorithm.name(), fwd, 2.0 * macs);
                push("backward", algorithm.name(), bwd, backward_flops);
                push(
                    "forward+backward",
                    algorithm.name(),
                    fwd + bwd,
                    2.0 * macs + backward_flops,
                );
            }
            let naive_iters = (args.iters / 5).max(1);
            let fwd_naive =
                median_time(naive_iters, || drop(conv2d_forward_naive(&x, &w, &b, cfg)));
            let bwd_naive = median_time(naive_iters, || {
                drop(conv2d_backward_naive(&x, &w, &d_out, cfg))
            });
            push("forward", "naive", fwd_naive, 2.0 * macs);
            push("backward", "naive", bwd_naive, 4.0 * macs);
        }
        shape = next;
    }
    if args.json {
        outln!(
            "{}",
            json!({ "sgemm_gflops": peak, "batch_size": n, "conv": rows })
        )?;
    } else {
        outln!("sgemm_gflops={peak:.1} batch_size={n}")?;
        for r in &rows {
            outln!(
                "layer={} pass={} algorithm={}{} ms={:.3} gflops={:.1} share_of_sgemm={:.1}%",
                r["layer"].as_str().unwrap_or(""),
                r["pass"].as_str().unwrap_or(""),
                r["algorithm"].as_str().unwrap_or(""),
                if r["default"].as_bool() == Some(true) {
                    "(default)"
                } else {
                    ""
                },
                r["ms"].as_f64().unwrap_or(0.0),
                r["gflops"].as_f64().unwrap_or(0.0),
                100.0 * r["share_of_sgemm"].as_f64().unwrap_or(0.0)
            )?;
        }
    }
    Ok(())
}

/// Multiply-adds of one image's forward pass through the convs and linears of `layers`.
fn forward_macs_per_image(layers: &[Layer]) -> f64 {
    let mut shape = vec![3, 32, 32];
    let mut macs = 0.0;
    for layer in layers {
        let out = scratchnet_tensor::nn::infer_shapes(std::slice::from_ref(layer), &shape)
            .expect("the built-in network fits")
            .remove(0);
        macs += match *layer {
            Layer::Conv2d {
                in_channels,
                kernel,
                ..
            } => (out.iter().product::<usize>() * in_channels * kernel * kernel) as f64,
            Layer::Linear {
                in_features,
                out_features,
            } => (in_features * out_features) as f64,
            _ => 0.0,
        };
        shape = out;
    }
    macs
}

fn bench_step(args: &BenchArgs, peak: f64) -> Result<()> {
    let recipe = Recipe::load("v2")?;
    let n = args.batch_size;
    let data = synthetic(n * 20);
    let augmenter = Augmenter::new(&recipe.augment);
    let mut state = TrainState::new(&recipe, 0)?;
    let mut step_idx = 0usize;
    let mut step = || {
        let start = (step_idx % 20) * n;
        let indices: Vec<usize> = (start..start + n).collect();
        let mode = Mode::Train {
            seed: 0,
            epoch: step_idx,
        };
        let (images, labels) = make_batch(&data, &indices, &recipe.augment, &augmenter, mode);
        step_idx += 1;
        train_step(&mut state, images, &labels, recipe.label_smoothing, 1e-3);
    };
    let t = median_time(args.iters, &mut step);
    let breakdown = profiled(args.iters, "ms_per_step", &mut step);
    let flops = 3.0 * 2.0 * forward_macs_per_image(&recipe.network.layers()?) * n as f64;
    let step_ms = t.as_secs_f64() * 1e3;
    let epoch_seconds = step_ms / 1e3 * (50_000.0 / n as f64);
    if args.json {
        outln!(
            "{}",
            json!({
                "step_ms": step_ms, "batch_size": n, "gflops": gflops(flops, t),
                "share_of_sgemm": gflops(flops, t) / peak, "sgemm_gflops": peak,
                "epoch_seconds_50k": epoch_seconds, "breakdown": breakdown,
            })
        )?;
    } else {
        outln!(
            "step_ms={step_ms:.3} batch_size={n} gflops={:.1} share_of_sgemm={:.1}% sgemm_gflops={peak:.1} epoch_seconds_50k={epoch_seconds:.2}",
            gflops(flops, t),
            100.0 * gflops(flops, t) / peak
        )?;
        print_breakdown(&breakdown, "ms_per_step", 3)?;
    }
    Ok(())
}

fn bench_eval(args: &BenchArgs, peak: f64) -> Result<()> {
    let recipe = Recipe::load("v2")?;
    let data = synthetic(10_000);
    let mut net = Network::new(recipe.network.layers()?, 0);
    let iters = (args.iters / 4).max(3);
    let mut run = || {
        let _ = evaluate(&mut net, &data, &recipe.augment, recipe.label_smoothing);
    };
    let t = median_time(iters, &mut run);
    let breakdown = profiled(1, "ms", &mut run);
    let flops = 2.0 * forward_macs_per_image(&recipe.network.layers()?) * data.len() as f64;
    if args.json {
        outln!(
            "{}",
            json!({ "eval_ms": t.as_secs_f64() * 1e3, "images": data.len(), "gflops": gflops(flops, t), "share_of_sgemm": gflops(flops, t) / peak, "sgemm_gflops": peak, "breakdown": breakdown })
        )?;
    } else {
        outln!(
            "eval_ms={:.1} images={} gflops={:.1} share_of_sgemm={:.1}% sgemm_gflops={peak:.1}",
            t.as_secs_f64() * 1e3,
            data.len(),
            gflops(flops, t),
            100.0 * gflops(flops, t) / peak
        )?;
        print_breakdown(&breakdown, "ms", 1)?;
    }
    Ok(())
}
