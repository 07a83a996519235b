//! `scratchnet eval`: the loss and accuracy of a weights file on the test or validation set.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};

use crate::checkpoint::{TensorFile, RECIPE_KEY};
use crate::data::load_split;
use crate::evaluate::evaluate;
use crate::recipe::Recipe;
use scratchnet_tensor::nn::Network;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum EvalSplit {
    Test,
    Val,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// A weights file written by `scratchnet train` (best.safetensors, last.safetensors).
    #[arg(long)]
    pub weights: PathBuf,
    /// The CIFAR-10 folder.
    #[arg(long)]
    pub data: PathBuf,
    /// test: test_batch.bin; val: the last --val-size training images.
    #[arg(long, value_enum, default_value_t = EvalSplit::Test)]
    pub split: EvalSplit,
    /// Size of the validation hold-out, as in training (default: the `val_size` of the
    /// run.json beside the weights file, else 5000).
    #[arg(long)]
    pub val_size: Option<usize>,
    /// Worker threads (default: the number of cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// The hold-out `scratchnet train` uses unless told otherwise.
const DEFAULT_VAL_SIZE: usize = 5000;

/// The validation hold-out of the run that wrote `weights`, from the `run.json` beside it;
/// `None` when there is none (a weights file moved out of its run folder).
fn run_val_size(weights: &std::path::Path) -> Result<Option<usize>> {
    let dir = weights.parent().unwrap_or(std::path::Path::new("."));
    if !crate::run_info::RunInfo::path(dir).exists() {
        return Ok(None);
    }
    Ok(Some(crate::run_info::RunInfo::read(dir)?.val_size))
}

pub fn run_eval(args: EvalArgs) -> Result<()> {
    let file = TensorFile::read(&args.weights)?;
    let recipe_toml = file
        .metadata(RECIPE_KEY)
        .with_context(|| format!("{} has no recipe in its metadata", args.weights.display()))?;
    let recipe = Recipe::parse(&recipe_toml)
        .with_context(|| format!("recipe in {}", args.weights.display()))?;
    let mut net = Network::new(recipe.network.layers()?, 0);
    file.load_into(&mut net)?;
    let (data, prefix) = match args.split {
        EvalSplit::Test => (scratchnet_cifar::load_test(&args.data)?, "test"),
        EvalSplit::Val => {
            let val_size = match args.val_size {
                Some(n) => n,
                None => run_val_size(&args.weights)?.unwrap_or(DEFAULT_VAL_SIZE),
            };
            (load_split(&args.data, val_size, None)?.val, "val")
        }
    };
    let eval = evaluate(&mut net, &data, &recipe.augment, recipe.label_smoothing);
    outln!(
        "{prefix}_loss={:.4} {prefix}_acc={:.2} n={}",
        eval.loss,
        eval.accuracy,
        eval.n_images
    )?;
    Ok(())
}
