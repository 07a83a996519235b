//! The real CIFAR-10 mirror at /work/shared/data/cifar-10-batches-bin, when it is present.
//! Skipped, with a note on stderr, on machines without it.

use std::path::PathBuf;

use scratchnet_cifar::{load_class_names, load_test, load_train, read_batch_file, N_CLASSES};

fn mirror_dir() -> Option<PathBuf> {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/cifar-10-batches-bin");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("skipping: CIFAR-10 mirror {} not present", dir.display());
        None
    }
}

fn class_counts(labels: &[u8]) -> [usize; N_CLASSES] {
    let mut counts = [0; N_CLASSES];
    for &label in labels {
        counts[usize::from(label)] += 1;
    }
    counts
}

#[test]
fn real_mirror_has_published_sizes_and_counts() {
    let Some(dir) = mirror_dir() else {
        return;
    };

    // The mirror's README: 5 train batches of 10,000 records, 5,000 of each class, and a
    // test batch holding only the first 1,000 official test images.
    let train = load_train(&dir).unwrap();
    assert_eq!(train.len(), 50_000);
    assert_eq!(class_counts(train.labels()), [5_000; N_CLASSES]);
    assert_eq!(load_test(&dir).unwrap().len(), 1_000);

    // The mirror's README quotes the published per-class counts of data_batch_1.
    let batch_1 = read_batch_file(&dir.join("data_batch_1.bin")).unwrap();
    assert_eq!(
        class_counts(batch_1.labels()),
        [1005, 974, 1032, 1016, 999, 937, 1030, 1001, 1025, 981]
    );
    assert_eq!(train.slice(0..10_000), batch_1);

    let names = load_class_names(&dir).unwrap();
    assert_eq!(names[0], "airplane");
    assert_eq!(names[9], "truck");
}
