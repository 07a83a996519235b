//! Batch files against small fixtures built in each test in a temporary folder: the round
//! trip, the order `load_train` concatenates in, and every error naming its file and value.

use std::fs;
use std::path::Path;

use scratchnet_cifar::{
    load_class_names, load_test, load_train, read_batch_file, write_batch_file, CifarError,
    Dataset, CLASS_NAMES, IMAGE_BYTES, N_CLASSES, RECORD_BYTES, TEST_FILE, TRAIN_FILES,
};

/// `n_records` records whose pixels count up from `first_pixel` (wrapping at 256) and whose
/// labels count up from `first_label` (wrapping at 10), so that no two fixtures agree.
fn fixture(n_records: usize, first_pixel: u8, first_label: u8) -> Dataset {
    let images = (0..n_records * IMAGE_BYTES)
        .map(|byte_idx| first_pixel.wrapping_add(byte_idx as u8))
        .collect();
    let labels = (0..n_records)
        .map(|record_idx| ((usize::from(first_label) + record_idx) % N_CLASSES) as u8)
        .collect();
    Dataset::new(images, labels).unwrap()
}

/// A complete folder: batch `b` (0-based) holds `b + 1` records, the test batch 2 records.
fn write_folder(dir: &Path) -> Vec<Dataset> {
    let batches: Vec<Dataset> = (0..TRAIN_FILES.len())
        .map(|batch_idx| fixture(batch_idx + 1, 40 * batch_idx as u8, batch_idx as u8))
        .collect();
    for (name, batch) in TRAIN_FILES.iter().zip(&batches) {
        write_batch_file(&dir.join(name), batch).unwrap();
    }
    write_batch_file(&dir.join(TEST_FILE), &fixture(2, 7, 3)).unwrap();
    fs::write(dir.join("batches.meta.txt"), CLASS_NAMES.join("\n") + "\n").unwrap();
    batches
}

#[test]
fn write_then_read_gives_back_the_dataset() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("round_trip.bin");
    let data = fixture(3, 200, 8);

    write_batch_file(&path, &data).unwrap();

    assert_eq!(fs::metadata(&path).unwrap().len(), 3 * RECORD_BYTES as u64);
    assert_eq!(read_batch_file(&path).unwrap(), data);
}

#[test]
fn written_file_has_the_official_record_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("layout.bin");
    let data = fixture(2, 0, 4);

    write_batch_file(&path, &data).unwrap();
    let bytes = fs::read(&path).unwrap();

    // Each record is its label then its image: record 0 at byte 0 with label 4, record 1
    // at byte 3073 with label 4 + 1.
    assert_eq!(bytes[0], 4);
    assert_eq!(&bytes[1..RECORD_BYTES], data.image(0));
    assert_eq!(bytes[RECORD_BYTES], 5);
    assert_eq!(&bytes[RECORD_BYTES + 1..], data.image(1));
}

#[test]
fn load_train_concatenates_batches_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let batches = write_folder(tmp.path());

    let train = load_train(tmp.path()).unwrap();

    // 1 + 2 + 3 + 4 + 5 records.
    assert_eq!(train.len(), 15);
    let mut start = 0;
    for batch in &batches {
        assert_eq!(train.slice(start..start + batch.len()), *batch);
        start += batch.len();
    }
}

#[test]
fn load_test_reads_the_test_batch() {
    let tmp = tempfile::tempdir().unwrap();
    write_folder(tmp.path());

    assert_eq!(load_test(tmp.path()).unwrap(), fixture(2, 7, 3));
}

#[test]
fn load_class_names_trims_and_skips_blank_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let padded: Vec<String> = CLASS_NAMES
        .iter()
        .map(|name| format!("  {name}\r"))
        .collect();
    fs::write(
        tmp.path().join("batches.meta.txt"),
        padded.join("\n\n") + "\n\n",
    )
    .unwrap();

    assert_eq!(load_class_names(tmp.path()).unwrap(), CLASS_NAMES);
}

/// A named pipe in place of a batch file is refused at once instead of blocking the read.
#[cfg(unix)]
#[test]
fn a_pipe_in_place_of_a_batch_file_is_refused_without_blocking() {
    let tmp = tempfile::tempdir().unwrap();
    let pipe = tmp.path().join("data_batch_1.bin");
    let made = std::process::Command::new("mkfifo").arg(&pipe).status();
    if !made.map(|s| s.success()).unwrap_or(false) {
        eprintln!("mkfifo is not available here: the pipe case is not checked");
        return;
    }
    let err = read_batch_file(&pipe).unwrap_err();
    assert!(matches!(err, CifarError::NotAFile { .. }), "{err:?}");
    // A folder in place of the file is not a plain file either.
    let folder = tmp.path().join("data_batch_2.bin");
    std::fs::create_dir(&folder).unwrap();
    assert!(matches!(
        read_batch_file(&folder).unwrap_err(),
        CifarError::NotAFile { .. }
    ));
}

#[test]
fn a_file_given_as_the_folder_is_called_a_file() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("data_batch_1.bin");
    std::fs::write(&file, [0u8; 3073]).unwrap();
    let err = load_train(&file).unwrap_err();
    assert!(matches!(err, CifarError::NotAFolder { .. }), "{err:?}");
    assert!(err
        .to_string()
        .starts_with(&format!("{} is a file", file.display())));
}

#[test]
fn missing_folder_is_named_with_the_fetch_hint() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("no-such-folder");

    for err in [
        load_train(&dir).unwrap_err(),
        load_test(&dir).unwrap_err(),
        load_class_names(&dir).unwrap_err(),
    ] {
        assert!(matches!(err, CifarError::MissingFolder { .. }), "{err:?}");
        let expected = format!(
            "CIFAR-10 folder {} not found (run data/fetch-cifar10.sh)",
            dir.display()
        );
        assert_eq!(err.to_string(), expected);
    }
}

#[test]
fn missing_train_batch_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    write_folder(tmp.path());
    fs::remove_file(tmp.path().join("data_batch_4.bin")).unwrap();

    let err = load_train(tmp.path()).unwrap_err();

    assert!(matches!(err, CifarError::MissingFile { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("data_batch_4.bin"), "{message}");
    assert!(message.contains("not found"), "{message}");
}

#[test]
fn missing_test_batch_and_meta_are_named() {
    let tmp = tempfile::tempdir().unwrap();

    let message = load_test(tmp.path()).unwrap_err().to_string();
    assert!(message.contains(&*tmp.path().join("test_batch.bin").to_string_lossy()));

    let message = load_class_names(tmp.path()).unwrap_err().to_string();
    assert!(message.contains(&*tmp.path().join("batches.meta.txt").to_string_lossy()));
}

#[test]
fn length_1200_is_not_a_whole_number_of_records() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("data_batch_3.bin");
    fs::write(&path, vec![0u8; 1200]).unwrap();

    let err = read_batch_file(&path).unwrap_err();

    assert!(
        matches!(err, CifarError::BadLength { n_bytes: 1200, .. }),
        "{err:?}"
    );
    let expected = format!(
        "reading {}: expected a multiple of 3073 bytes, found 1200",
        path.display()
    );
    assert_eq!(err.to_string(), expected);
}

#[test]
fn one_record_plus_one_byte_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("long.bin");
    fs::write(&path, vec![0u8; RECORD_BYTES + 1]).unwrap();

    let message = read_batch_file(&path).unwrap_err().to_string();
    assert!(message.contains("found 3074"), "{message}");
}

#[test]
fn empty_file_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("empty.bin");
    fs::write(&path, []).unwrap();

    let err = read_batch_file(&path).unwrap_err();

    assert!(matches!(err, CifarError::EmptyFile { .. }), "{err:?}");
    assert!(err.to_string().contains("empty.bin"), "{err}");
}

#[test]
fn label_above_9_names_file_offset_and_record() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("data_batch_1.bin");
    let mut bytes = vec![0u8; 3 * RECORD_BYTES];
    // Record 2 starts at byte 2 * 3073 = 6146.
    bytes[2 * RECORD_BYTES] = 12;
    fs::write(&path, bytes).unwrap();

    let err = read_batch_file(&path).unwrap_err();

    let expected = format!(
        "{}: label 12 at byte offset 6146 (record 2) is above 9",
        path.display()
    );
    assert_eq!(err.to_string(), expected);
}

#[test]
fn label_10_in_a_train_batch_fails_load_train() {
    let tmp = tempfile::tempdir().unwrap();
    write_folder(tmp.path());
    let path = tmp.path().join("data_batch_2.bin");
    let mut bytes = fs::read(&path).unwrap();
    bytes[RECORD_BYTES] = 10;
    fs::write(&path, bytes).unwrap();

    let message = load_train(tmp.path()).unwrap_err().to_string();

    assert!(message.contains("data_batch_2.bin"), "{message}");
    assert!(
        message.contains("label 10 at byte offset 3073 (record 1)"),
        "{message}"
    );
}

#[test]
fn nine_class_names_are_one_too_few() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("batches.meta.txt");
    fs::write(&path, CLASS_NAMES[..9].join("\n")).unwrap();

    let err = load_class_names(tmp.path()).unwrap_err();

    let expected = format!("{}: expected 10 class names, found 9", path.display());
    assert_eq!(err.to_string(), expected);
}

#[test]
fn eleven_class_names_are_one_too_many() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("batches.meta.txt");
    fs::write(&path, CLASS_NAMES.join("\n") + "\nunicorn\n").unwrap();

    let message = load_class_names(tmp.path()).unwrap_err().to_string();
    assert!(
        message.ends_with("expected 10 class names, found 11"),
        "{message}"
    );
}

#[test]
fn writing_an_empty_dataset_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("nothing.bin");

    let err = write_batch_file(&path, &Dataset::default()).unwrap_err();

    assert!(matches!(err, CifarError::EmptyDataset { .. }), "{err:?}");
    assert!(!path.exists());
}

#[test]
fn a_folder_given_as_batch_file_is_refused_with_its_path() {
    let tmp = tempfile::tempdir().unwrap();

    let err = read_batch_file(tmp.path()).unwrap_err();

    assert!(matches!(err, CifarError::NotAFile { .. }), "{err:?}");
    let prefix = format!("{} is not a plain file", tmp.path().display());
    assert!(err.to_string().starts_with(&prefix), "{err}");
}
