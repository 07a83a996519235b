//! Batch files on disk: reading and writing runs of 3073-byte records, and loading the
//! train, test and class-name files of a `cifar-10-batches-bin` folder.

use std::fs;
use std::io;
use std::path::Path;

use crate::{
    CifarError, Dataset, IMAGE_BYTES, META_FILE, N_CLASSES, RECORD_BYTES, TEST_FILE, TRAIN_FILES,
};

/// Reads one batch file: any whole, non-zero number of records, every label below 10.
pub fn read_batch_file(path: &Path) -> Result<Dataset, CifarError> {
    check_regular_file(path)?;
    let bytes = fs::read(path).map_err(|source| read_error(path, source))?;

    if bytes.is_empty() {
        return Err(CifarError::EmptyFile {
            path: path.to_path_buf(),
        });
    }
    if bytes.len() % RECORD_BYTES != 0 {
        return Err(CifarError::BadLength {
            path: path.to_path_buf(),
            n_bytes: bytes.len(),
        });
    }

    let n_records = bytes.len() / RECORD_BYTES;
    let mut images = Vec::with_capacity(n_records * IMAGE_BYTES);
    let mut labels = Vec::with_capacity(n_records);
    for (record_idx, record) in bytes.chunks_exact(RECORD_BYTES).enumerate() {
        let label = record[0];
        if usize::from(label) >= N_CLASSES {
            return Err(CifarError::BadLabel {
                path: path.to_path_buf(),
                label,
                offset: record_idx * RECORD_BYTES,
                record_idx,
            });
        }
        labels.push(label);
        images.extend_from_slice(&record[1..]);
    }

    Dataset::new(images, labels)
}

/// Writes `data` as one batch file in the official layout, replacing any file at `path`.
///
/// An empty dataset is refused, since `read_batch_file` would refuse the empty file.
pub fn write_batch_file(path: &Path, data: &Dataset) -> Result<(), CifarError> {
    if data.is_empty() {
        return Err(CifarError::EmptyDataset {
            path: path.to_path_buf(),
        });
    }

    let images = data.image_bytes().chunks_exact(IMAGE_BYTES);
    let mut bytes = Vec::with_capacity(data.len() * RECORD_BYTES);
    for (&label, image) in data.labels().iter().zip(images) {
        bytes.push(label);
        bytes.extend_from_slice(image);
    }

    fs::write(path, bytes).map_err(|source| CifarError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Loads the 5 training batches of `dir`, concatenated in the order of `TRAIN_FILES`.
pub fn load_train(dir: &Path) -> Result<Dataset, CifarError> {
    check_folder(dir)?;
    // Reserve the whole set up front: growing by doubling would briefly hold almost twice
    // the 150 MB the training set takes.
    let n_bytes: u64 = TRAIN_FILES
        .iter()
        .map(|name| fs::metadata(dir.join(name)).map_or(0, |m| m.len()))
        .sum();
    let mut train = Dataset::default();
    train.reserve(n_bytes as usize / RECORD_BYTES);
    for name in TRAIN_FILES {
        train.append(read_batch_file(&dir.join(name))?);
    }
    Ok(train)
}

/// Loads `test_batch.bin` of `dir`.
pub fn load_test(dir: &Path) -> Result<Dataset, CifarError> {
    check_folder(dir)?;
    read_batch_file(&dir.join(TEST_FILE))
}

/// Loads the class names from `batches.meta.txt` of `dir`: the non-empty lines, trimmed,
/// which must be exactly `N_CLASSES`.
pub fn load_class_names(dir: &Path) -> Result<Vec<String>, CifarError> {
    check_folder(dir)?;
    let path = dir.join(META_FILE);
    check_regular_file(&path)?;
    let text = fs::read_to_string(&path).map_err(|source| read_error(&path, source))?;

    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(String::from)
        .collect();
    if names.len() != N_CLASSES {
        return Err(CifarError::ClassNameCount {
            path,
            n_names: names.len(),
        });
    }
    Ok(names)
}

fn check_folder(dir: &Path) -> Result<(), CifarError> {
    let dir_buf = dir.to_path_buf();
    match dir.metadata() {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(CifarError::NotAFolder { dir: dir_buf }),
        Err(_) => Err(CifarError::MissingFolder { dir: dir_buf }),
    }
}

/// A batch file must be a plain file (a link to one is fine): reading a named pipe or a
/// device would wait for a writer that may never come, or never end.
fn check_regular_file(path: &Path) -> Result<(), CifarError> {
    match fs::metadata(path) {
        Ok(meta) if !meta.is_file() => Err(CifarError::NotAFile {
            path: path.to_path_buf(),
        }),
        // Missing or unreadable: the read that follows says which.
        _ => Ok(()),
    }
}

/// A missing file gets its own variant so the message can point at the fetch script.
fn read_error(path: &Path, source: io::Error) -> CifarError {
    if source.kind() == io::ErrorKind::NotFound {
        CifarError::MissingFile {
            path: path.to_path_buf(),
        }
    } else {
        CifarError::Read {
            path: path.to_path_buf(),
            source,
        }
    }
}
