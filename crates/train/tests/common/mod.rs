//! Helpers shared by the integration tests: a tiny synthetic CIFAR-10 folder and a way to
//! run the real `scratchnet` binary.
//!
//! Each test file uses a different subset of these helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use scratchnet_cifar::{write_batch_file, Dataset, IMAGE_BYTES, N_CLASSES, TRAIN_FILES};

/// Images in each of the five training batches.
pub const N_PER_BATCH: usize = 60;

/// Images in all five training batches.
pub const N_TRAIN_IMAGES: usize = N_PER_BATCH * TRAIN_FILES.len();

/// Images in `test_batch.bin`.
pub const N_TEST_IMAGES: usize = 50;

/// The validation hold-out the tests use.
pub const VAL_SIZE: usize = 50;

/// Side of an image.
const SIDE: usize = 32;

/// Image `image_idx` of class `label`: a two-level stripe pattern whose orientation and
/// period depend on the class (so the network has something to learn), plus a small
/// per-pixel hash noise so that no two images are equal. Bytes are CHW.
pub fn synthetic_image(image_idx: usize, label: u8) -> Vec<u8> {
    let class = label as usize;
    let h_step = class % 5 + 1;
    let w_step = class / 5 + 1;
    let mut image = Vec::with_capacity(IMAGE_BYTES);
    for c in 0..3 {
        for h in 0..SIDE {
            for w in 0..SIDE {
                let phase = (h * h_step + w * w_step + c * class) / 4;
                let base = [190, 60][phase % 2];
                let hash = (image_idx * 7919 + c * 1031 + h * 131 + w * 17) % 41;
                image.push((base + hash) as u8);
            }
        }
    }
    image
}

/// `n` synthetic images numbered from `first_idx`, labels cycling through 0-9 with a
/// stride of 3 so consecutive images are of different classes.
pub fn synthetic_dataset(first_idx: usize, n: usize) -> Dataset {
    let mut images = Vec::with_capacity(n * IMAGE_BYTES);
    let mut labels = Vec::with_capacity(n);
    for image_idx in first_idx..first_idx + n {
        let label = ((image_idx * 3) % N_CLASSES) as u8;
        images.extend(synthetic_image(image_idx, label));
        labels.push(label);
    }
    Dataset::new(images, labels).expect("synthetic images and labels agree")
}

/// Writes a complete tiny CIFAR-10 folder into `dir`: five training batches of
/// `N_PER_BATCH` images, `test_batch.bin` of `N_TEST_IMAGES` and `batches.meta.txt`.
pub fn write_cifar_folder(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for (batch_idx, name) in TRAIN_FILES.iter().enumerate() {
        let data = synthetic_dataset(batch_idx * N_PER_BATCH, N_PER_BATCH);
        write_batch_file(&dir.join(name), &data).unwrap();
    }
    let test = synthetic_dataset(N_TRAIN_IMAGES, N_TEST_IMAGES);
    write_batch_file(&dir.join("test_batch.bin"), &test).unwrap();
    let names = scratchnet_cifar::CLASS_NAMES.join("\n") + "\n";
    std::fs::write(dir.join("batches.meta.txt"), names).unwrap();
}

/// A temporary folder holding a tiny CIFAR-10 folder at `<tmp>/cifar`.
pub struct Fixture {
    pub tmp: tempfile::TempDir,
    pub data: PathBuf,
}

impl Fixture {
    pub fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("cifar");
        write_cifar_folder(&data);
        Fixture { tmp, data }
    }

    /// A path inside the temporary folder (not created).
    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }
}

/// Runs `scratchnet` with `args` and returns what it did, whatever the exit status.
pub fn scratchnet<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Command::new(env!("CARGO_BIN_EXE_scratchnet"))
        .args(args)
        .output()
        .expect("the scratchnet binary starts")
}

/// Runs `scratchnet` with `args`, which must succeed; returns its stdout.
pub fn scratchnet_ok<I, S>(args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let args: Vec<std::ffi::OsString> = args.into_iter().map(|a| a.as_ref().into()).collect();
    let output = scratchnet(&args);
    assert!(
        output.status.success(),
        "scratchnet {args:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("stdout is UTF-8")
}

/// `train` arguments for a tiny new run of `recipe` on `data` into `out`.
pub fn train_args(recipe: &str, data: &Path, out: &Path, epochs: usize, seed: u64) -> Vec<String> {
    [
        "train",
        "--recipe",
        recipe,
        "--data",
        &data.display().to_string(),
        "--out",
        &out.display().to_string(),
        "--epochs",
        &epochs.to_string(),
        "--batch-size",
        "20",
        "--val-size",
        &VAL_SIZE.to_string(),
        "--seed",
        &seed.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}
