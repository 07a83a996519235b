//! The training loop: epochs of shuffled batches, evaluation of the live (and EMA)
//! network, model selection, checkpoints after every epoch, and resuming from them.
//!
//! A run directory holds `recipe.toml` and `run.json` (what the run is), `metrics.csv`,
//! `last.safetensors` and `state.safetensors` (where it is: written at the end of every
//! epoch, the state last) and `best.safetensors` (the selected network at its best
//! validation loss: the final model).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use scratchnet_augment::Augmenter;
use scratchnet_cifar::{Dataset, N_CLASSES};
use scratchnet_optim::{Adam, Ema, Selected, Selector};
use scratchnet_tensor::nn::Network;
use scratchnet_tensor::{profile, Graph, Tensor};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, Entry, TensorFile};
use crate::data::{epoch_order, make_batch, Mode, Split};
use crate::evaluate::{argmax, evaluate, Evaluation};
use crate::metrics::{self, MetricsRow};
use crate::recipe::Recipe;

/// Metadata key of the progress record in `state.safetensors`.
const PROGRESS_KEY: &str = "scratchnet.progress";

/// Scalars of the training state; the tensors (Adam moments, EMA weights) sit beside them
/// in `state.safetensors`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Progress {
    epochs_done: usize,
    adam_step: u64,
    selector: Selector,
    stopped_early: bool,
}

/// Everything that changes while a run trains.
pub struct TrainState {
    pub net: Network,
    pub adam: Adam,
    pub ema: Option<Ema>,
    pub selector: Selector,
    pub epochs_done: usize,
    pub stopped_early: bool,
    pub rows: Vec<MetricsRow>,
}

impl TrainState {
    pub fn new(recipe: &Recipe, seed: u64) -> Result<TrainState> {
        let net = Network::new(recipe.network.layers()?, seed);
        let adam = Adam::new(recipe.optimizer, &net.param_lens());
        Ok(TrainState {
            net,
            adam,
            ema: recipe.ema.as_ref().map(|e| Ema::new(e.decay)),
            selector: Selector::new(recipe.selection),
            epochs_done: 0,
            stopped_early: false,
            rows: Vec::new(),
        })
    }

    /// Writes `last.safetensors` and then `state.safetensors` into `run_dir`.
    fn save(&self, run_dir: &Path, recipe_toml: &str) -> Result<()> {
        checkpoint::save_weights(&run_dir.join("last.safetensors"), &self.net, recipe_toml)?;
        let mut entries = Vec::new();
        for (p, (m, v)) in self
            .net
            .params
            .iter()
            .zip(self.adam.m.iter().zip(&self.adam.v))
        {
            entries.push(Entry::f32(format!("adam.m.{}", p.name), &[m.len()], m));
            entries.push(Entry::f32(format!("adam.v.{}", p.name), &[v.len()], v));
        }
        if let Some(shadow) = self.ema.as_ref().and_then(|e| e.shadow.as_ref()) {
            for (p, s) in self.net.params.iter().zip(shadow) {
                entries.push(Entry::f32(format!("ema.{}", p.name), &[s.len()], s));
            }
        }
        let progress = Progress {
            epochs_done: self.epochs_done,
            adam_step: self.adam.step,
            selector: self.selector.clone(),
            stopped_early: self.stopped_early,
        };
        let metadata = HashMap::from([
            // One key only: safetensors writes a map's keys in hash order, which differs
            // from process to process, and the file must be the same bytes every time.
            (PROGRESS_KEY.to_string(), serde_json::to_string(&progress)?),
        ]);
        let bytes = checkpoint::serialize(&entries, metadata)?;
        checkpoint::write_atomically(&run_dir.join("state.safetensors"), &bytes)
    }

    /// The state a run directory was left in after its last finished epoch.
    pub fn load(run_dir: &Path, recipe: &Recipe, seed: u64) -> Result<TrainState> {
        let mut state = TrainState::new(recipe, seed)?;
        let file = TensorFile::read(&run_dir.join("state.safetensors"))?;
        let progress: Progress = file
            .metadata(PROGRESS_KEY)
            .context("state.safetensors has no progress record")
            .and_then(|text| Ok(serde_json::from_str(&text)?))
            .with_context(|| format!("reading {}", file.path.display()))?;
        let last = TensorFile::read(&run_dir.join("last.safetensors"))?;
        // A run must end as it would have without the stop: recipe.toml, which a user can
        // edit, must still be the recipe the checkpoints were written with.
        if let Some(stored) = last.metadata(checkpoint::RECIPE_KEY) {
            let trained = Recipe::parse(&stored)
                .with_context(|| format!("the recipe stored in {}", last.path.display()))?;
            if trained != *recipe {
                bail!(
                    "{} is not the recipe this run was trained with (the one stored in {}): \
                     a resumed run keeps its recipe; put it back, or start a new run with the \
                     changed one",
                    run_dir.join("recipe.toml").display(),
                    last.path.display()
                );
            }
        }
        last.load_into(&mut state.net)?;
        for (idx, p) in state.net.params.iter().enumerate() {
            let len = p.value.len();
            state.adam.m[idx] = file.f32(&format!("adam.m.{}", p.name), &[len])?;
            state.adam.v[idx] = file.f32(&format!("adam.v.{}", p.name), &[len])?;
        }
        state.adam.step = progress.adam_step;
        if let Some(ema) = &mut state.ema {
            if progress.adam_step > 0 {
                let shadow = state
                    .net
                    .params
                    .iter()
                    .map(|p| file.f32(&format!("ema.{}", p.name), &[p.value.len()]))
                    .collect::<Result<Vec<_>>>()?;
                ema.shadow = Some(shadow);
            }
        }
        state.selector = progress.selector;
        state.epochs_done = progress.epochs_done;
        state.stopped_early = progress.stopped_early;
        let mut rows = metrics::read(&run_dir.join("metrics.csv"))?;
        // Rows past the saved state belong to an epoch that did not finish saving.
        rows.retain(|r| r.epoch <= state.epochs_done);
        if rows.len() != state.epochs_done {
            bail!(
                "{}: {} rows for {} finished epochs",
                run_dir.join("metrics.csv").display(),
                rows.len(),
                state.epochs_done
            );
        }
        state.rows = rows;
        Ok(state)
    }
}

/// The EMA weights in a network with the live network's batch-norm statistics.
fn ema_network(live: &Network, ema: &Ema) -> Option<Network> {
    let shadow = ema.shadow.as_ref()?;
    let mut net = live.clone();
    for (p, s) in net.params.iter_mut().zip(shadow) {
        p.value.data_mut().copy_from_slice(s);
    }
    Some(net)
}

/// What one epoch of training measured.
pub struct EpochStats {
    pub loss_mean: f64,
    pub loss_std: f64,
    pub accuracy: f64,
}

/// What one optimiser step measured.
pub struct StepStats {
    /// The batch's mean loss.
    pub loss: f32,
    /// Images whose largest logit was the true class.
    pub correct: usize,
}

/// One optimiser step on a batch: forward in training mode, the loss, backward, Adam, and
/// the EMA update when the run keeps one.
pub fn train_step(
    state: &mut TrainState,
    images: Tensor,
    labels: &[usize],
    smoothing: f32,
    lr: f32,
) -> StepStats {
    let mut graph = Graph::new();
    let input = graph.leaf(images, false);
    let forward = state.net.forward(&mut graph, input, true);
    let (loss, _) = graph.cross_entropy(forward.logits, labels, smoothing);
    let loss_value = graph.value(loss).data()[0];
    let logits = graph.value(forward.logits).data();
    let correct = logits
        .chunks(N_CLASSES)
        .zip(labels)
        .filter(|(row, &l)| argmax(row) == l)
        .count();

    graph.backward(loss);
    let grads: Vec<&[f32]> = forward
        .params
        .iter()
        .map(|&v| {
            graph
                .grad(v)
                .expect("every parameter feeds the loss")
                .data()
        })
        .collect();
    let mut params: Vec<&mut [f32]> = state
        .net
        .params
        .iter_mut()
        .map(|p| p.value.data_mut())
        .collect();
    profile::time("optimizer.adam", || {
        state.adam.step(lr, &mut params, &grads)
    });
    if let Some(ema) = &mut state.ema {
        let live: Vec<&[f32]> = state.net.params.iter().map(|p| p.value.data()).collect();
        profile::time("optimizer.ema", || ema.update(&live));
    }
    StepStats {
        loss: loss_value,
        correct,
    }
}

/// One pass over the training images in the epoch's shuffled order; the last short batch
/// is kept.
pub fn train_epoch(
    state: &mut TrainState,
    recipe: &Recipe,
    train: &Dataset,
    seed: u64,
    epoch: usize,
    lr: f32,
) -> EpochStats {
    let augmenter = Augmenter::new(&recipe.augment);
    let order = epoch_order(train.len(), seed, epoch);
    let mut batch_losses = Vec::with_capacity(order.len().div_ceil(recipe.batch_size));
    let mut correct = 0usize;
    for batch in order.chunks(recipe.batch_size) {
        let (images, labels) = make_batch(
            train,
            batch,
            &recipe.augment,
            &augmenter,
            Mode::Train { seed, epoch },
        );

        let step = train_step(state, images, &labels, recipe.label_smoothing, lr);
        batch_losses.push(step.loss as f64);
        correct += step.correct;
    }
    let n = batch_losses.len() as f64;
    let loss_mean = batch_losses.iter().sum::<f64>() / n;
    let loss_var = batch_losses
        .iter()
        .map(|l| (l - loss_mean) * (l - loss_mean))
        .sum::<f64>()
        / n;
    EpochStats {
        loss_mean,
        loss_std: loss_var.sqrt(),
        accuracy: 100.0 * correct as f64 / train.len() as f64,
    }
}

/// Where a run lives and how far it goes.
pub struct RunPlan {
    pub run_dir: PathBuf,
    pub recipe: Recipe,
    pub seed: u64,
    /// Total epochs, counting those already done.
    pub epochs: usize,
}

/// The model a finished run selected, and its test-set evaluation if there was one.
pub struct Outcome {
    pub best_epoch: Option<usize>,
    pub best: Option<Network>,
}

/// Trains from `state` to `plan.epochs` epochs (or an early stop), saving after every epoch.
pub fn run(plan: &RunPlan, split: &Split, mut state: TrainState) -> Result<Outcome> {
    let recipe = &plan.recipe;
    let recipe_toml = recipe.to_toml();
    let best_path = plan.run_dir.join("best.safetensors");
    while state.epochs_done < plan.epochs && !state.stopped_early {
        let epoch = state.epochs_done;
        let started = Instant::now();
        let lr = recipe.schedule.lr_at(recipe.optimizer.lr, epoch);
        let stats = train_epoch(&mut state, recipe, &split.train, plan.seed, epoch, lr);
        let train_seconds = started.elapsed().as_secs_f64();

        let live = evaluate(
            &mut state.net,
            &split.val,
            &recipe.augment,
            recipe.label_smoothing,
        );
        let mut ema_net = state.ema.as_ref().and_then(|e| ema_network(&state.net, e));
        let ema_eval: Option<Evaluation> = ema_net
            .as_mut()
            .map(|net| evaluate(net, &split.val, &recipe.augment, recipe.label_smoothing));
        let decision = state.selector.observe(
            epoch,
            live.loss as f32,
            ema_eval.as_ref().map(|e| e.loss as f32),
        );
        if decision.improved {
            let chosen = match decision.selected {
                Selected::Live => &state.net,
                Selected::Ema => ema_net.as_ref().expect("EMA selected only when it exists"),
            };
            checkpoint::save_weights(&best_path, chosen, &recipe_toml)?;
        }
        state.stopped_early = decision.stop;
        state.epochs_done += 1;

        let row = MetricsRow {
            epoch: epoch + 1,
            train_loss: stats.loss_mean,
            train_loss_std: stats.loss_std,
            train_acc: stats.accuracy,
            val_loss: live.loss,
            val_acc: live.accuracy,
            lr,
            seconds: started.elapsed().as_secs_f64(),
            ema_val_loss: ema_eval.as_ref().map(|e| e.loss),
            ema_val_acc: ema_eval.as_ref().map(|e| e.accuracy),
            selected: match decision.selected {
                Selected::Live => "live".into(),
                Selected::Ema => "ema".into(),
            },
        };
        // Saved before the line is printed: a reader that stops reading (`| head`) ends the
        // run at this epoch's line, and the epoch is then already on disk.
        let line = log_line(&row, decision.improved);
        let seconds = row.seconds;
        state.rows.push(row);
        metrics::write(&plan.run_dir.join("metrics.csv"), &state.rows)?;
        state.save(&plan.run_dir, &recipe_toml)?;
        outln!("{line}")?;
        if profile::is_enabled() {
            print_profile(epoch + 1, train_seconds, seconds)?;
        }
        if !stats.loss_mean.is_finite() {
            bail!(
                "epoch {}: the training loss is {} (the run diverged); its state is saved in {}, \
                 try a lower learning rate",
                epoch + 1,
                stats.loss_mean,
                plan.run_dir.display()
            );
        }
    }
    if state.stopped_early {
        outln!(
            "early stop: no improvement for {} epochs",
            state.selector.epochs_without_improvement
        )?;
    }
    let best = if best_path.exists() {
        let mut net = state.net.clone();
        TensorFile::read(&best_path)?.load_into(&mut net)?;
        Some(net)
    } else {
        None
    };
    Ok(Outcome {
        best_epoch: state.selector.best_epoch.map(|e| e + 1),
        best,
    })
}

/// Where the epoch's time went, one `key=value` line per op or phase, then resets.
fn print_profile(epoch: usize, train_seconds: f64, epoch_seconds: f64) -> Result<()> {
    for (name, total, calls) in profile::snapshot() {
        let ms = total.as_secs_f64() * 1e3;
        outln!(
            "profile epoch={epoch} op={name} ms={ms:.1} calls={calls} share_of_epoch={:.1}%",
            100.0 * ms / 1e3 / epoch_seconds
        )?;
    }
    outln!(
        "profile epoch={epoch} train_seconds={train_seconds:.2} epoch_seconds={epoch_seconds:.2}"
    )?;
    profile::reset();
    Ok(())
}

/// The one line an epoch prints: fixed `key=value` fields, for grep and plots.
pub fn log_line(row: &MetricsRow, improved: bool) -> String {
    let mut line = format!(
        "epoch={} train_loss={:.4} train_loss_std={:.4} train_acc={:.2} val_loss={:.4} val_acc={:.2} lr={:.3e} seconds={:.2}",
        row.epoch, row.train_loss, row.train_loss_std, row.train_acc, row.val_loss, row.val_acc, row.lr, row.seconds
    );
    if let (Some(loss), Some(acc)) = (row.ema_val_loss, row.ema_val_acc) {
        line += &format!(" ema_val_loss={loss:.4} ema_val_acc={acc:.2}");
    }
    line += &format!(
        " selected={} best={}",
        row.selected,
        if improved { "yes" } else { "no" }
    );
    line
}
