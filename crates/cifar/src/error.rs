//! The errors of reading and writing CIFAR-10 batch files. Every variant that comes from a
//! file names it, so the message alone says what to look at.

use std::io;
use std::path::PathBuf;

use thiserror::Error;

use crate::{IMAGE_BYTES, N_CLASSES, RECORD_BYTES};

/// What can go wrong building a [`Dataset`](crate::Dataset) or reading and writing its files.
#[derive(Debug, Error)]
pub enum CifarError {
    #[error("CIFAR-10 folder {} not found (run data/fetch-cifar10.sh)", dir.display())]
    MissingFolder { dir: PathBuf },

    #[error("{} is a file, not a CIFAR-10 folder: --data names the folder that holds data_batch_1.bin .. data_batch_5.bin", dir.display())]
    NotAFolder { dir: PathBuf },

    #[error("CIFAR-10 file {} not found (run data/fetch-cifar10.sh)", path.display())]
    MissingFile { path: PathBuf },

    #[error("{} is not a plain file (a folder, a pipe or a device): a CIFAR-10 batch must be one", path.display())]
    NotAFile { path: PathBuf },

    #[error(
        "reading {}: expected a multiple of {RECORD_BYTES} bytes, found {n_bytes}",
        path.display()
    )]
    BadLength { path: PathBuf, n_bytes: usize },

    #[error("reading {}: file is empty, expected at least one record", path.display())]
    EmptyFile { path: PathBuf },

    #[error(
        "{}: label {label} at byte offset {offset} (record {record_idx}) is above {}",
        path.display(),
        N_CLASSES - 1
    )]
    BadLabel {
        path: PathBuf,
        label: u8,
        offset: usize,
        record_idx: usize,
    },

    #[error("{}: expected {N_CLASSES} class names, found {n_names}", path.display())]
    ClassNameCount { path: PathBuf, n_names: usize },

    #[error("writing {}: the dataset is empty, a batch file needs a record", path.display())]
    EmptyDataset { path: PathBuf },

    #[error("reading {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },

    #[error("writing {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },

    #[error("dataset: {n_bytes} image bytes is not a multiple of {IMAGE_BYTES}")]
    ImageBytes { n_bytes: usize },

    #[error("dataset: {n_images} images but {n_labels} labels")]
    CountMismatch { n_images: usize, n_labels: usize },

    #[error("dataset: label {label} at index {label_idx} is above {}", N_CLASSES - 1)]
    LabelOutOfRange { label: u8, label_idx: usize },
}
