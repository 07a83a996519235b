//! An in-memory set of CIFAR-10 records: N images of `IMAGE_BYTES` bytes (CHW) and N labels.

use std::ops::Range;

use crate::{CifarError, IMAGE_BYTES, N_CLASSES};

/// N images, stored back to back as `[N, 3, 32, 32]` bytes, and their N labels.
///
/// The constructor checks that lengths agree and every label is below `N_CLASSES`, so the
/// accessors can rely on both.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Dataset {
    images: Vec<u8>,
    labels: Vec<u8>,
}

impl Dataset {
    /// Builds a dataset from `n * IMAGE_BYTES` image bytes and `n` labels, each `< 10`.
    pub fn new(images: Vec<u8>, labels: Vec<u8>) -> Result<Dataset, CifarError> {
        let n_images = images.len() / IMAGE_BYTES;
        if n_images * IMAGE_BYTES != images.len() {
            return Err(CifarError::ImageBytes {
                n_bytes: images.len(),
            });
        }

        if n_images != labels.len() {
            return Err(CifarError::CountMismatch {
                n_images,
                n_labels: labels.len(),
            });
        }

        let bad_label = labels
            .iter()
            .enumerate()
            .find(|&(_, &label)| usize::from(label) >= N_CLASSES);
        if let Some((label_idx, &label)) = bad_label {
            return Err(CifarError::LabelOutOfRange { label, label_idx });
        }

        Ok(Dataset { images, labels })
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there are no records.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The `IMAGE_BYTES` bytes of image `idx`, CHW.
    ///
    /// # Panics
    /// If `idx >= self.len()`.
    pub fn image(&self, idx: usize) -> &[u8] {
        assert!(
            idx < self.len(),
            "image index {idx} out of range for a dataset of {} records",
            self.len()
        );
        let start = idx * IMAGE_BYTES;
        &self.images[start..start + IMAGE_BYTES]
    }

    /// The label of record `idx`, in `0..N_CLASSES`.
    ///
    /// # Panics
    /// If `idx >= self.len()`.
    pub fn label(&self, idx: usize) -> u8 {
        assert!(
            idx < self.len(),
            "label index {idx} out of range for a dataset of {} records",
            self.len()
        );
        self.labels[idx]
    }

    /// All labels, one per record.
    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    /// A copy of the records in `range`.
    ///
    /// # Panics
    /// If the range is reversed or ends past `self.len()`.
    pub fn slice(&self, range: Range<usize>) -> Dataset {
        assert!(
            range.start <= range.end && range.end <= self.len(),
            "slice {range:?} out of range for a dataset of {} records",
            self.len()
        );
        let images = self.images[range.start * IMAGE_BYTES..range.end * IMAGE_BYTES].to_vec();
        let labels = self.labels[range].to_vec();
        Dataset { images, labels }
    }

    /// Makes room for `n_records` more records without reallocating.
    pub fn reserve(&mut self, n_records: usize) {
        self.images.reserve(n_records * IMAGE_BYTES);
        self.labels.reserve(n_records);
    }

    /// Moves the records from `at` on into a new dataset, keeping the first `at`: the
    /// tail is copied once, the head not at all.
    ///
    /// # Panics
    /// When `at` is past the end.
    pub fn split_off(&mut self, at: usize) -> Dataset {
        assert!(
            at <= self.len(),
            "split at {at} of a dataset of {} records",
            self.len()
        );
        Dataset {
            images: self.images.split_off(at * IMAGE_BYTES),
            labels: self.labels.split_off(at),
        }
    }

    /// Keeps the first `n` records (all of them when there are fewer).
    pub fn truncate(&mut self, n: usize) {
        self.images.truncate(n * IMAGE_BYTES);
        self.labels.truncate(n);
    }

    /// Moves the records of `other` onto the end of `self`.
    pub fn append(&mut self, mut other: Dataset) {
        self.images.append(&mut other.images);
        self.labels.append(&mut other.labels);
    }

    /// All image bytes, `[N, 3, 32, 32]`; for the batch writer.
    pub(crate) fn image_bytes(&self) -> &[u8] {
        &self.images
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Image `idx` filled with the byte `idx`, so records are told apart by any pixel.
    fn numbered(n: usize) -> Dataset {
        let images = (0..n)
            .flat_map(|idx| vec![idx as u8; IMAGE_BYTES])
            .collect();
        let labels = (0..n).map(|idx| (idx % N_CLASSES) as u8).collect();
        Dataset::new(images, labels).unwrap()
    }

    #[test]
    fn new_rejects_partial_image() {
        let err = Dataset::new(vec![0; IMAGE_BYTES + 1], vec![0]).unwrap_err();
        assert!(
            matches!(err, CifarError::ImageBytes { n_bytes: 3073 }),
            "{err}"
        );
    }

    #[test]
    fn new_rejects_count_mismatch() {
        let err = Dataset::new(vec![0; 2 * IMAGE_BYTES], vec![0]).unwrap_err();
        assert_eq!(err.to_string(), "dataset: 2 images but 1 labels");
    }

    #[test]
    fn new_rejects_label_ten() {
        let err = Dataset::new(vec![0; 2 * IMAGE_BYTES], vec![9, 10]).unwrap_err();
        assert_eq!(err.to_string(), "dataset: label 10 at index 1 is above 9");
    }

    #[test]
    fn split_off_and_truncate_keep_records_in_order() {
        let mut data = Dataset::new(vec![7; 4 * IMAGE_BYTES], vec![0, 1, 2, 3]).unwrap();
        let tail = data.split_off(3);
        assert_eq!(tail.labels(), [3]);
        assert_eq!(data.labels(), [0, 1, 2]);
        data.truncate(2);
        assert_eq!(data.labels(), [0, 1]);
        assert_eq!(data.len(), 2);
    }

    #[test]
    fn default_is_empty() {
        let data = Dataset::default();
        assert!(data.is_empty());
        assert_eq!(data.len(), 0);
        assert_eq!(data, Dataset::new(Vec::new(), Vec::new()).unwrap());
    }

    #[test]
    fn image_and_label_pick_the_right_record() {
        let data = numbered(4);
        assert_eq!(data.len(), 4);
        assert_eq!(data.image(2).len(), IMAGE_BYTES);
        assert!(data.image(2).iter().all(|&byte| byte == 2));
        assert_eq!(data.label(3), 3);
        assert_eq!(data.labels(), &[0, 1, 2, 3]);
    }

    #[test]
    fn slice_then_append_gives_back_the_whole() {
        let data = numbered(12);
        let mut joined = data.slice(0..5);
        joined.append(data.slice(5..12));
        assert_eq!(joined, data);

        let middle = data.slice(3..4);
        assert_eq!(middle.len(), 1);
        assert_eq!(middle.label(0), 3);
        assert!(middle.image(0).iter().all(|&byte| byte == 3));
        assert!(data.slice(7..7).is_empty());
    }

    #[test]
    #[should_panic(expected = "out of range")]
    fn slice_past_the_end_panics() {
        numbered(3).slice(2..4);
    }
}
