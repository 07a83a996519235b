//! Reader and writer for the binary version of CIFAR-10 (`cifar-10-batches-bin`).
//!
//! A batch file is a run of 3073-byte records: one label byte (0-9), then the 32x32 image
//! as C H W bytes: the 1024 red values in row-major order (height before width), then the
//! 1024 green, then the 1024 blue. Images stay as bytes here; turning them into f32
//! tensors is the training crate's business.
#![forbid(unsafe_code)]

mod batch;
mod dataset;
mod error;

pub use batch::{load_class_names, load_test, load_train, read_batch_file, write_batch_file};
pub use dataset::Dataset;
pub use error::CifarError;

/// Bytes of one image: 3 channels x 32 rows x 32 columns, channel-major (CHW).
pub const IMAGE_BYTES: usize = 3 * 32 * 32;

/// Bytes of one record in a batch file: the label byte, then the image.
pub const RECORD_BYTES: usize = 1 + IMAGE_BYTES;

/// Number of classes; valid labels are `0..N_CLASSES`.
pub const N_CLASSES: usize = 10;

/// The training batches, in the order `load_train` concatenates them.
pub const TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];

/// The test batch.
pub const TEST_FILE: &str = "test_batch.bin";

/// The class names, one a line.
pub const META_FILE: &str = "batches.meta.txt";

/// The class names of the official `batches.meta.txt`, in label order.
pub const CLASS_NAMES: [&str; N_CLASSES] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];
