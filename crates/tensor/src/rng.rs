//! Keyed random streams.
//!
//! Every random draw in a run comes from a ChaCha stream chosen by a key: the run's seed,
//! a purpose (initialisation, shuffling, augmentation) and up to two indices such as the
//! epoch and the sample index. A stream depends only on its key, never on which thread
//! asks for it or in what order, which is what makes a run independent of the thread count.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// What a random stream is used for; part of its key so that two uses never share a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Purpose {
    /// Weight initialisation; index `a` is the parameter's position in the network.
    Init = 1,
    /// The order of the training samples; index `a` is the epoch.
    Shuffle = 2,
    /// Crop offsets and flips; `a` is the epoch, `b` the sample's index in the data set.
    Augment = 3,
}

/// The generator for one key. The 256-bit ChaCha seed is the seed, the purpose and the two
/// indices, each as 8 little-endian bytes.
pub fn keyed_rng(seed: u64, purpose: Purpose, a: u64, b: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[0..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&(purpose as u64).to_le_bytes());
    key[16..24].copy_from_slice(&a.to_le_bytes());
    key[24..32].copy_from_slice(&b.to_le_bytes());
    ChaCha8Rng::from_seed(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn same_key_gives_same_stream() {
        let x: Vec<u32> = keyed_rng(7, Purpose::Augment, 3, 11)
            .sample_iter(rand::distributions::Standard)
            .take(4)
            .collect();
        let y: Vec<u32> = keyed_rng(7, Purpose::Augment, 3, 11)
            .sample_iter(rand::distributions::Standard)
            .take(4)
            .collect();
        assert_eq!(x, y);
    }

    #[test]
    fn each_key_field_changes_the_stream() {
        let first = |r: &mut ChaCha8Rng| r.gen::<u64>();
        let base = first(&mut keyed_rng(7, Purpose::Augment, 3, 11));
        assert_ne!(base, first(&mut keyed_rng(8, Purpose::Augment, 3, 11)));
        assert_ne!(base, first(&mut keyed_rng(7, Purpose::Shuffle, 3, 11)));
        assert_ne!(base, first(&mut keyed_rng(7, Purpose::Augment, 4, 11)));
        assert_ne!(base, first(&mut keyed_rng(7, Purpose::Augment, 3, 12)));
    }
}
