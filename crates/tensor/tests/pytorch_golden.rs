//! scratchnet against PyTorch on one training step of lenet5-bn.
//!
//! The reference is `tests/fixtures/lenet5_bn_pytorch.safetensors`, written by
//! `tools/make_pytorch_golden.py` with PyTorch 2.15: the network's tensors before the step,
//! 8 inputs and labels, the logits, the mean loss with label smoothing 0.05, every
//! parameter's gradient and the batch-norm running statistics after the forward pass. The
//! two frameworks sum in different orders, so values agree to f32 rounding, not bit for
//! bit; the tolerances below are a few hundred times f32's epsilon.

use safetensors::tensor::{Dtype, SafeTensors};
use scratchnet_tensor::nn::{lenet5_bn, Layer, Network};
use scratchnet_tensor::{Graph, Tensor};

const FIXTURE: &[u8] = include_bytes!("fixtures/lenet5_bn_pytorch.safetensors");

fn f32s(file: &SafeTensors<'_>, name: &str) -> (Vec<usize>, Vec<f32>) {
    let view = file
        .tensor(name)
        .unwrap_or_else(|_| panic!("fixture lacks {name}"));
    assert_eq!(view.dtype(), Dtype::F32, "{name}");
    let values = view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()));
    (view.shape().to_vec(), values.collect())
}

/// Gradients below this are rounding noise in both frameworks: a conv bias followed by
/// batch norm has a true gradient of exactly zero (the normalisation removes any shift),
/// and both compute noise of about 1e-6 there, against weight gradients of 1e-2 and more.
const NOISE_FLOOR: f32 = 1e-5;

/// |a - b| <= tol · max|b| + NOISE_FLOOR over the tensor: an element-wise relative test
/// would measure only rounding noise in the small entries.
#[track_caller]
fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * scale + NOISE_FLOOR,
            "{what}[{i}]: scratchnet {g}, PyTorch {w} (scale {scale})"
        );
    }
}

#[test]
fn one_training_step_matches_pytorch() {
    let file = SafeTensors::deserialize(FIXTURE).expect("fixture is safetensors");
    let mut net = Network::new(lenet5_bn(), 0);
    for p in &mut net.params {
        let (shape, values) = f32s(&file, &format!("before.{}", p.name));
        assert_eq!(shape, p.value.shape(), "{}", p.name);
        p.value = Tensor::from_vec(&shape, values);
    }
    let bn_layers: Vec<usize> = net
        .layers
        .iter()
        .enumerate()
        .filter(|(_, l)| matches!(l, Layer::BatchNorm2d { .. }))
        .map(|(i, _)| i)
        .collect();

    let (shape, input) = f32s(&file, "input");
    let labels: Vec<usize> = file
        .tensor("labels")
        .unwrap()
        .data()
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as usize)
        .collect();
    let mut graph = Graph::new();
    let x = graph.leaf(Tensor::from_vec(&shape, input), false);
    let forward = net.forward(&mut graph, x, true);
    let (loss, _) = graph.cross_entropy(forward.logits, &labels, 0.05);

    assert_close(
        "logits",
        graph.value(forward.logits).data(),
        &f32s(&file, "logits").1,
        1e-5,
    );
    assert_close(
        "loss",
        graph.value(loss).data(),
        &f32s(&file, "loss").1,
        1e-6,
    );

    graph.backward(loss);
    for (p, &var) in net.params.iter().zip(&forward.params) {
        let want = f32s(&file, &format!("grad.{}", p.name)).1;
        assert_close(
            &format!("grad {}", p.name),
            graph.grad(var).unwrap().data(),
            &want,
            1e-4,
        );
    }
    for (layer_idx, stats) in bn_layers.iter().zip(&net.running) {
        let mean = f32s(&file, &format!("after.{layer_idx}.running_mean")).1;
        let var = f32s(&file, &format!("after.{layer_idx}.running_var")).1;
        assert_close(
            &format!("{layer_idx}.running_mean"),
            &stats.mean,
            &mean,
            1e-5,
        );
        assert_close(&format!("{layer_idx}.running_var"), &stats.var, &var, 1e-5);
        assert_eq!(stats.n_batches, 1);
    }
}
