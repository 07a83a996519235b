//! The threading policy: how work is cut into pieces, independently of the thread count.
//!
//! Parallel loops hand each image (or each channel) to one task through `par_chunks_mut`,
//! so writes are disjoint by construction. Sums over the batch are cut into groups of
//! images (at least `REDUCE_GROUP`; a kernel may ask for larger ones, see
//! `ConvDims::images_per_reduction`) whose boundaries depend only on the shapes; each group
//! is summed in image order on one thread and the group results are added in group order.
//! A run therefore computes the same bits with 1 thread or 64.

use rayon::prelude::*;

/// The fewest images summed on one thread before partial results are combined.
pub const REDUCE_GROUP: usize = 5;

/// `[start, end)` ranges of `group` images each (the last may be shorter).
pub fn groups_of(n_images: usize, group: usize) -> Vec<(usize, usize)> {
    assert!(group > 0, "groups of zero images");
    (0..n_images.div_ceil(group))
        .map(|g| (g * group, ((g + 1) * group).min(n_images)))
        .collect()
}

/// Sums `len`-long vectors over the images of a batch in a fixed order.
///
/// `accumulate(start, end, acc)` adds the contribution of images `start..end` into `acc`
/// (which starts at zero). The groups of `group` images run in parallel; their results are
/// added in group order. `group` must depend on shapes only, never on the thread count.
pub fn sum_over_groups<F>(n_images: usize, group: usize, len: usize, accumulate: F) -> Vec<f32>
where
    F: Fn(usize, usize, &mut [f32]) + Sync,
{
    let groups = groups_of(n_images, group);
    let partials: Vec<Vec<f32>> = groups
        .par_iter()
        .map(|&(start, end)| {
            let mut acc = vec![0.0f32; len];
            accumulate(start, end, &mut acc);
            acc
        })
        .collect();
    let mut total = vec![0.0f32; len];
    for partial in &partials {
        for (t, p) in total.iter_mut().zip(partial) {
            *t += p;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_cover_the_batch_once() {
        assert_eq!(groups_of(12, 5), vec![(0, 5), (5, 10), (10, 12)]);
        assert_eq!(groups_of(0, 5), vec![]);
    }

    #[test]
    fn sum_is_identical_for_any_thread_count() {
        let values: Vec<f32> = (0..97).map(|i| 1.0 / (i as f32 + 0.37)).collect();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                sum_over_groups(values.len(), REDUCE_GROUP, 1, |s, e, acc| {
                    for v in &values[s..e] {
                        acc[0] += v;
                    }
                })
            })
        };
        let one = run(1);
        for threads in [2, 3, 8] {
            assert_eq!(one[0].to_bits(), run(threads)[0].to_bits());
        }
    }
}
