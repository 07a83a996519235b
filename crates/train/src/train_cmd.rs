//! `scratchnet train`: a new run from a recipe, or `--resume` of an existing one.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::data::load_split;
use crate::evaluate::{evaluate, per_class_scores};
use crate::recipe::Recipe;
use crate::run_info::{cpu_features, git_revision, RunInfo};
use crate::trainer::{run, RunPlan, TrainState};

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Recipe: a built-in name (original, v2) or a TOML file.
    #[arg(long, required_unless_present = "resume")]
    pub recipe: Option<String>,
    /// Folder with data_batch_1.bin .. data_batch_5.bin (and test_batch.bin); with --resume,
    /// a new place for the run's data (the images must be the same).
    #[arg(long, required_unless_present = "resume")]
    pub data: Option<PathBuf>,
    /// Epochs in all (overrides the recipe; with --resume, counting those done).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Images per training batch (overrides the recipe).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Train on the first N images left after the validation hold-out.
    #[arg(long)]
    pub train_limit: Option<usize>,
    /// Hold out the last N training images for validation.
    #[arg(long, default_value_t = 5000)]
    pub val_size: usize,
    /// Seed of every random stream of the run.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Worker threads (default: the number of cores). Results do not depend on it.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Run folder (default: runs/<name>-<seed>, <name> from the recipe's `name`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// After every epoch, print where its time went, by op.
    #[arg(long)]
    pub profile: bool,
    /// Continue the run in this folder (its recipe, seed and data) to --epochs in all.
    #[arg(long, conflicts_with_all = ["recipe", "batch_size", "train_limit", "val_size", "seed", "out"])]
    pub resume: Option<PathBuf>,
}

pub fn run_train(args: TrainArgs, threads: usize) -> Result<()> {
    let (plan, mut info, state) = match &args.resume {
        Some(run_dir) => resume_plan(run_dir, &args, threads)?,
        None => new_plan(&args, threads)?,
    };
    if args.resume.is_some() && args.data.is_none() && !info.data.exists() {
        bail!(
            "this run's data folder {} is not there any more: pass --data with its new place",
            info.data.display()
        );
    }
    // Every input is read and checked before the first epoch, so that bad data fails in
    // seconds, not after hours of training.
    let split = load_split(&info.data, info.val_size, info.train_limit)?;
    let (n_train, batch) = (split.train.len(), plan.recipe.batch_size);
    if plan.recipe.has_batch_norm()? && n_train % batch == 1 {
        bail!(
            "{n_train} training images in batches of {batch} leave a last batch of one image, \
             which batch norm cannot normalise: change --train-limit, --val-size or --batch-size"
        );
    }
    let fingerprint = data_fingerprint(&split);
    match &info.data_sha256 {
        Some(recorded) if *recorded != fingerprint => bail!(
            "the images in {} are not the ones this run trained on (sha256 {fingerprint}, \
             run.json records {recorded}): a resumed run must see the same data",
            info.data.display()
        ),
        _ => info.data_sha256 = Some(fingerprint),
    }
    let test = load_test_if_present(&info.data)?;
    let class_names = class_names_or_numbers(&info.data);
    let _lock = lock_run_dir(&plan.run_dir, args.resume.is_none())?;
    if args.resume.is_none() {
        // Checked again under the lock: another run may have started here meanwhile.
        refuse_a_folder_holding_a_run(&plan.run_dir)?;
        start_run_dir(&plan, &info)?;
    } else {
        info.write(&plan.run_dir)?;
    }
    scratchnet_tensor::profile::set_enabled(args.profile);
    outln!(
        "run={} recipe={} seed={} threads={} train_images={} val_images={} epochs={} start_epoch={}",
        plan.run_dir.display(),
        plan.recipe.name,
        plan.seed,
        threads,
        split.train.len(),
        split.val.len(),
        plan.epochs,
        state.epochs_done + 1
    )?;
    let outcome = run(&plan, &split, state)?;

    info.best_epoch = outcome.best_epoch;
    let best_path = plan.run_dir.join("best.safetensors");
    info.best_sha256 = best_path
        .exists()
        .then(|| crate::checkpoint::sha256_hex(&best_path))
        .transpose()?;
    info.write(&plan.run_dir)?;
    let Some(mut best) = outcome.best else {
        bail!(
            "no epoch improved the validation loss (was it finite?): {} has no best.safetensors",
            plan.run_dir.display()
        );
    };
    let Some(test) = test else {
        outln!(
            "no {} in {}: no test evaluation",
            scratchnet_cifar::TEST_FILE,
            info.data.display()
        )?;
        return Ok(());
    };
    let eval = evaluate(
        &mut best,
        &test,
        &plan.recipe.augment,
        plan.recipe.label_smoothing,
    );
    // Saved before it is printed, like every epoch: a reader that leaves loses nothing.
    info.test_loss = Some(eval.loss);
    info.test_acc = Some(eval.accuracy);
    info.write(&plan.run_dir)?;
    outln!("class precision recall f1")?;
    for (c, (p, r, f)) in per_class_scores(&eval.confusion).iter().enumerate() {
        let name = class_names.as_ref().map_or(c.to_string(), |n| n[c].clone());
        outln!("{name} {p:.3} {r:.3} {f:.3}")?;
    }
    outln!(
        "best_epoch={} test_loss={:.4} test_acc={:.2} n={}",
        info.best_epoch.unwrap_or(0),
        eval.loss,
        eval.accuracy,
        eval.n_images
    )?;
    Ok(())
}

/// The test images, when the folder has `test_batch.bin`; a file that is there but bad is
/// an error.
fn load_test_if_present(dir: &Path) -> Result<Option<scratchnet_cifar::Dataset>> {
    if !dir.join(scratchnet_cifar::TEST_FILE).exists() {
        return Ok(None);
    }
    Ok(Some(scratchnet_cifar::load_test(dir)?))
}

/// The sha256 of the training and validation images and labels, as the run sees them.
fn data_fingerprint(split: &crate::data::Split) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for data in [&split.train, &split.val] {
        for idx in 0..data.len() {
            hasher.update([data.label(idx)]);
            hasher.update(data.image(idx));
        }
    }
    format!("{:x}", hasher.finalize())
}

fn new_plan(args: &TrainArgs, threads: usize) -> Result<(RunPlan, RunInfo, TrainState)> {
    let recipe_name = args.recipe.as_deref().expect("clap requires --recipe");
    let data = args.data.clone().expect("clap requires --data");
    let mut recipe = Recipe::load(recipe_name)?;
    // --epochs sets how long this run goes (run.json), not the recipe: the recipe stored
    // in every checkpoint is then the same whether a run went in one go or was resumed.
    let epochs = args.epochs.unwrap_or(recipe.epochs);
    if epochs == 0 {
        match args.epochs {
            Some(_) => bail!(
                "--epochs must be at least 1 (the recipe's epochs: {})",
                recipe.epochs
            ),
            None => bail!("recipe {recipe_name}: epochs must be at least 1"),
        }
    }
    if let Some(batch_size) = args.batch_size {
        recipe.batch_size = batch_size;
    }
    recipe.validate()?;
    let run_dir = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("runs/{}-{}", recipe.name, args.seed)));
    refuse_a_folder_holding_a_run(&run_dir)?;
    let info = RunInfo {
        recipe: recipe.name.clone(),
        seed: args.seed,
        threads,
        data: std::path::absolute(&data).unwrap_or(data),
        val_size: args.val_size,
        data_sha256: None,
        train_limit: args.train_limit,
        epochs,
        crate_version: env!("CARGO_PKG_VERSION").to_string(),
        git_revision: git_revision(),
        cpu_features: cpu_features(),
        best_epoch: None,
        best_sha256: None,
        test_loss: None,
        test_acc: None,
    };
    let state = TrainState::new(&recipe, args.seed)?;
    let plan = RunPlan {
        run_dir,
        epochs,
        recipe,
        seed: args.seed,
    };
    Ok((plan, info, state))
}

/// The class names of `batches.meta.txt`, or `None` (classes shown as numbers) when the
/// folder has none; a file that is there but unusable says so on stderr.
fn class_names_or_numbers(data: &Path) -> Option<Vec<String>> {
    if !data.join(scratchnet_cifar::META_FILE).exists() {
        return None;
    }
    match scratchnet_cifar::load_class_names(data) {
        Ok(names) => Some(names),
        Err(err) => {
            eprintln!("note: {err}; the classes are shown as numbers");
            None
        }
    }
}

fn refuse_a_folder_holding_a_run(run_dir: &Path) -> Result<()> {
    if run_dir.join("state.safetensors").exists() {
        bail!(
            "{} already holds a run: continue it with --resume {0}, or choose another --out",
            run_dir.display()
        );
    }
    Ok(())
}

/// The run folder's `lock` file, locked for as long as this value lives (the operating
/// system lets go of it when the process ends, however it ends).
struct RunLock {
    _file: std::fs::File,
}

/// Creates the run folder if need be and locks its `lock` file, so that a second scratchnet
/// run writing into the same folder at the same time is refused instead of interleaving its
/// checkpoints with this one's.
fn lock_run_dir(run_dir: &Path, new_run: bool) -> Result<RunLock> {
    std::fs::create_dir_all(run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    let path = run_dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(RunLock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "{} is in use by another scratchnet run (it holds {}): wait for that run to end{}",
            run_dir.display(),
            path.display(),
            if new_run {
                ", or choose another --out"
            } else {
                ""
            }
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

/// Creates the run folder of a new run with its `recipe.toml` and `run.json`.
fn start_run_dir(plan: &RunPlan, info: &RunInfo) -> Result<()> {
    let run_dir = &plan.run_dir;
    std::fs::create_dir_all(run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    let recipe_path = run_dir.join("recipe.toml");
    crate::checkpoint::write_atomically(&recipe_path, plan.recipe.to_toml().as_bytes())?;
    info.write(run_dir)
}

fn resume_plan(
    run_dir: &Path,
    args: &TrainArgs,
    threads: usize,
) -> Result<(RunPlan, RunInfo, TrainState)> {
    if !run_dir.join("state.safetensors").exists() {
        bail!(
            "{} holds no run to resume (no state.safetensors): start one with --recipe",
            run_dir.display()
        );
    }
    let mut info = RunInfo::read(run_dir)?;
    let recipe_path = run_dir.join("recipe.toml");
    let text = std::fs::read_to_string(&recipe_path)
        .with_context(|| format!("reading {}", recipe_path.display()))?;
    let recipe =
        Recipe::parse(&text).with_context(|| format!("recipe {}", recipe_path.display()))?;
    let epochs = args.epochs.unwrap_or(info.epochs);
    let state = TrainState::load(run_dir, &recipe, info.seed)
        .with_context(|| format!("resuming {}", run_dir.display()))?;
    if state.epochs_done > 0 && !run_dir.join("best.safetensors").exists() {
        bail!(
            "{} has no best.safetensors (deleted or moved?): a resumed run needs its best \
             model so far; put it back, or start a new run",
            run_dir.display()
        );
    }
    if state.stopped_early {
        bail!(
            "{} stopped early after epoch {}: there is nothing to resume",
            run_dir.display(),
            state.epochs_done
        );
    }
    if epochs <= state.epochs_done {
        bail!(
            "{} has {} epochs done already: ask for more with --epochs N (N > {})",
            run_dir.display(),
            state.epochs_done,
            state.epochs_done
        );
    }
    if let Some(data) = &args.data {
        info.data = std::path::absolute(data).unwrap_or(data.clone());
    }
    info.threads = threads;
    info.epochs = epochs;
    let plan = RunPlan {
        run_dir: run_dir.to_path_buf(),
        epochs,
        seed: info.seed,
        recipe,
    };
    Ok((plan, info, state))
}
