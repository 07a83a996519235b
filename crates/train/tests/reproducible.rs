//! Bit-for-bit reproducibility of whole runs of the real binary: the thread count must not
//! change a single bit of the weights or the metrics, and a run stopped after an epoch and
//! resumed must end exactly where the uninterrupted run ends.
//!
//! The data is a tiny synthetic CIFAR-10 folder (300 training images, 50 of them held out,
//! 50 test images), so every run takes a fraction of a second.

mod common;

use std::path::Path;

use common::{scratchnet_ok, train_args, Fixture};

/// The files that carry a run's computed state, compared byte for byte.
const WEIGHT_FILES: [&str; 2] = ["last.safetensors", "best.safetensors"];

/// `metrics.csv` of `run_dir` as rows of fields, without the `seconds` column (wall time
/// is the one value that may differ between identical runs). Checks the file has one row
/// per epoch, so that two empty files cannot compare equal.
fn metrics_without_seconds(run_dir: &Path, n_epochs: usize) -> Vec<Vec<String>> {
    let path = run_dir.join("metrics.csv");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .expect("metrics.csv has a header")
        .split(',')
        .collect();
    let seconds_idx = header
        .iter()
        .position(|&name| name == "seconds")
        .expect("metrics.csv has a seconds column");
    let rows: Vec<Vec<String>> = std::iter::once(header.join(","))
        .chain(lines.map(String::from))
        .map(|line| {
            line.split(',')
                .enumerate()
                .filter(|&(idx, _)| idx != seconds_idx)
                .map(|(_, field)| field.to_string())
                .collect()
        })
        .collect();
    assert_eq!(
        rows.len(),
        n_epochs + 1,
        "{}: expected a header and {n_epochs} rows:\n{text}",
        path.display()
    );
    rows
}

/// The JSON header and the tensor bytes of a safetensors file.
fn split_safetensors(bytes: &[u8]) -> (serde_json::Value, &[u8]) {
    let n_header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = serde_json::from_slice(&bytes[8..8 + n_header]).expect("a JSON header");
    (header, &bytes[8 + n_header..])
}

/// The first line where two metadata strings differ, as `a` vs `b`.
fn first_differing_line(a: &serde_json::Value, b: &serde_json::Value) -> String {
    let (text_a, text_b) = (a.as_str().unwrap_or(""), b.as_str().unwrap_or(""));
    let mut lines_b = text_b.lines();
    for line_a in text_a.lines() {
        let line_b = lines_b.next().unwrap_or("<end>");
        if line_a != line_b {
            return format!("{line_a:?} vs {line_b:?}");
        }
    }
    format!("<end> vs {:?}", lines_b.next().unwrap_or("<end>"))
}

/// Why two different safetensors files differ, in words.
fn explain_safetensors_difference(bytes_a: &[u8], bytes_b: &[u8]) -> String {
    let (header_a, data_a) = split_safetensors(bytes_a);
    let (header_b, data_b) = split_safetensors(bytes_b);
    let tensors = if data_a == data_b {
        "the tensor bytes are identical"
    } else {
        "the tensor bytes differ"
    };
    // serde_json maps compare as sorted maps, so this ignores the order of entries.
    let header = if header_a == header_b {
        "the headers hold the same entries in a different order".to_string()
    } else {
        let meta_a = &header_a["__metadata__"];
        let meta_b = &header_b["__metadata__"];
        let keys = meta_a.as_object().into_iter().flat_map(|m| m.keys());
        let differing: Vec<String> = keys
            .filter(|&k| meta_a[k] != meta_b[k])
            .map(|k| format!("{k} ({})", first_differing_line(&meta_a[k], &meta_b[k])))
            .collect();
        format!("the headers differ; metadata entries that differ: {differing:?}")
    };
    format!("{tensors}, {header}")
}

/// Asserts that `name` holds the same bytes in both run folders; on failure says which file
/// and how it differs without printing megabytes.
fn assert_same_file(a: &Path, b: &Path, name: &str) {
    let bytes_a = std::fs::read(a.join(name)).unwrap_or_else(|e| panic!("{}: {e}", a.display()));
    let bytes_b = std::fs::read(b.join(name)).unwrap_or_else(|e| panic!("{}: {e}", b.display()));
    if bytes_a == bytes_b {
        return;
    }
    let how = if name.ends_with(".safetensors") {
        explain_safetensors_difference(&bytes_a, &bytes_b)
    } else {
        format!("{} vs {} bytes", bytes_a.len(), bytes_b.len())
    };
    panic!(
        "{name} differs between {} and {}: {how}",
        a.display(),
        b.display()
    );
}

/// Asserts that two finished runs of `n_epochs` computed the same thing: the weights files
/// and `extra` byte-identical, and `metrics.csv` equal apart from wall time.
fn assert_same_run(a: &Path, b: &Path, n_epochs: usize, extra: &[&str]) {
    for name in WEIGHT_FILES.iter().chain(extra) {
        assert_same_file(a, b, name);
    }
    assert_eq!(
        metrics_without_seconds(a, n_epochs),
        metrics_without_seconds(b, n_epochs),
        "metrics.csv differs between {} and {}",
        a.display(),
        b.display()
    );
}

/// A new run of `recipe` with the test's fixed flags and `--threads threads`.
fn train(fixture: &Fixture, recipe: &str, out: &Path, epochs: usize, seed: u64, threads: usize) {
    let mut args = train_args(recipe, &fixture.data, out, epochs, seed);
    args.extend(["--threads".to_string(), threads.to_string()]);
    scratchnet_ok(&args);
}

/// `train --resume run_dir --epochs epochs --threads threads`.
fn resume(run_dir: &Path, epochs: usize, threads: usize) {
    scratchnet_ok([
        "train",
        "--resume",
        &run_dir.display().to_string(),
        "--epochs",
        &epochs.to_string(),
        "--threads",
        &threads.to_string(),
    ]);
}

/// Copies the files of run folder `from` into a new folder `to`.
fn copy_run(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

// Pins that the thread count is not an input of the computation. Recipe v2 draws from every
// random stream (init, shuffle, per-image crops and flips) and runs the EMA and model
// selection; 250 training images in batches of 20 end in a short batch of 10. Thread
// counts 3 and 8 do not divide the reduction groups evenly, 8 is more than the cores.
#[test]
fn threads_1_2_3_8_give_identical_bits() {
    let fixture = Fixture::new();

    let v2_runs: Vec<_> = [1, 2, 3, 8]
        .iter()
        .map(|&threads| {
            let out = fixture.path(&format!("v2-threads-{threads}"));
            train(&fixture, "v2", &out, 2, 7, threads);
            out
        })
        .collect();
    for other in &v2_runs[1..] {
        assert_same_run(&v2_runs[0], other, 2, &[]);
    }

    // Recipe original: no augmentation and no EMA, so a different code path through the
    // data and the trainer.
    let original_1 = fixture.path("original-threads-1");
    let original_3 = fixture.path("original-threads-3");
    train(&fixture, "original", &original_1, 2, 7, 1);
    train(&fixture, "original", &original_3, 2, 7, 3);
    assert_same_run(&original_1, &original_3, 2, &[]);
}

// Pins that state.safetensors, last.safetensors and metrics.csv carry everything a run
// needs: Adam moments and step, EMA weights, batch-norm statistics, the selector and the
// per-epoch streams. Resuming after epoch 1 must end with the same bits as never stopping,
// with the same thread count and with another one.
#[test]
fn resume_after_epoch_1_ends_bit_for_bit_like_an_uninterrupted_run() {
    let fixture = Fixture::new();

    // 1. The reference: 3 epochs in one go.
    let whole = fixture.path("whole");
    train(&fixture, "v2", &whole, 3, 7, 2);

    // 2. Stop after epoch 1, keep a copy of the stopped run to resume a second way.
    let same_threads = fixture.path("resumed-same-threads");
    let other_threads = fixture.path("resumed-other-threads");
    train(&fixture, "v2", &same_threads, 1, 7, 2);
    copy_run(&same_threads, &other_threads);

    // 3. Resume both to 3 epochs in all: with the thread count of the reference, and with
    // another one.
    resume(&same_threads, 3, 2);
    resume(&other_threads, 3, 1);

    assert_same_run(&whole, &same_threads, 3, &["state.safetensors"]);
    assert_same_run(&whole, &other_threads, 3, &["state.safetensors"]);
}

// Pins that the seed reaches the weights, so the identity tests above cannot pass because
// the output ignores every input.
#[test]
fn different_seeds_give_different_weights() {
    let fixture = Fixture::new();
    let seed_7 = fixture.path("seed-7");
    let seed_8 = fixture.path("seed-8");
    train(&fixture, "v2", &seed_7, 1, 7, 2);
    train(&fixture, "v2", &seed_8, 1, 7 + 1, 2);

    for name in WEIGHT_FILES {
        let bytes_7 = std::fs::read(seed_7.join(name)).unwrap();
        let bytes_8 = std::fs::read(seed_8.join(name)).unwrap();
        assert_eq!(
            bytes_7.len(),
            bytes_8.len(),
            "{name}: same network, same size"
        );
        assert_ne!(bytes_7, bytes_8, "{name} is the same for seeds 7 and 8");
    }
    assert_ne!(
        metrics_without_seconds(&seed_7, 1),
        metrics_without_seconds(&seed_8, 1),
        "metrics.csv is the same for seeds 7 and 8"
    );
}

// Regression: state.safetensors stored its two metadata entries (progress, recipe) from a
// std HashMap, whose iteration order is drawn afresh by every process, so two identical
// runs wrote different bytes about half the time. Eight runs all agree by chance with
// probability 1/128 while the fault is present.
#[test]
fn state_file_metadata_written_in_hash_map_order() {
    let fixture = Fixture::new();
    let runs: Vec<_> = (0..8)
        .map(|run_idx| {
            let out = fixture.path(&format!("run-{run_idx}"));
            let mut args = train_args("original", &fixture.data, &out, 1, 7);
            args.extend(["--train-limit", "20", "--threads", "1"].map(String::from));
            scratchnet_ok(&args);
            out
        })
        .collect();
    for other in &runs[1..] {
        assert_same_file(&runs[0], other, "state.safetensors");
    }
}

// Regression: every weights file embeds the recipe, including `epochs` as overridden by
// the invocation that wrote it. A best.safetensors saved before a stop keeps the first
// invocation's `--epochs 1` after `--resume --epochs 3`, where the uninterrupted run says 3.
// A huge min_delta makes epoch 1 the best of the run, so the file is never rewritten.
#[test]
fn best_file_saved_before_resume_keeps_the_old_epochs_in_its_recipe() {
    let fixture = Fixture::new();
    let recipe = fixture.path("v2-best-is-epoch-1.toml");
    let text =
        include_str!("../../../recipes/v2.toml").replace("min_delta = 1e-4", "min_delta = 1e6");
    assert!(
        text.contains("min_delta = 1e6"),
        "recipes/v2.toml changed its min_delta line"
    );
    std::fs::write(&recipe, text).unwrap();
    let recipe = recipe.display().to_string();

    let whole = fixture.path("whole");
    let resumed = fixture.path("resumed");
    train(&fixture, &recipe, &whole, 3, 7, 2);
    train(&fixture, &recipe, &resumed, 1, 7, 2);
    resume(&resumed, 3, 2);

    assert_same_run(&whole, &resumed, 3, &[]);
}
