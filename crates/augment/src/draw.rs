//! The random choices of one training sample: crop offsets and flip.

use rand::Rng;

use crate::AugmentConfig;

/// One sample's random choices. `dy` and `dx` are the top-left corner of the 32x32 crop
/// inside the padded image, each in `0..=2 * crop_padding`; `dy = dx = crop_padding`
/// with no flip leaves the image as it is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Draw {
    /// Crop offset in rows.
    pub dy: usize,
    /// Crop offset in columns.
    pub dx: usize,
    /// Mirror the columns after the crop.
    pub flip: bool,
}

impl Draw {
    /// The draw that changes nothing for `cfg`: the centre crop, no flip.
    pub fn identity(cfg: &AugmentConfig) -> Draw {
        Draw {
            dy: cfg.crop_padding,
            dx: cfg.crop_padding,
            flip: false,
        }
    }
}

/// Draws one sample's choices from `rng`.
///
/// Always reads exactly three `u64`s, in the order `dy`, `dx`, `flip`, whatever the config,
/// so that a stream stays aligned when the config changes (padding 0 still reads the two
/// offset values, flip probability 0 still reads the flip value).
pub fn draw(cfg: &AugmentConfig, rng: &mut impl Rng) -> Draw {
    let n_offsets = 2 * cfg.crop_padding as u64 + 1;

    let dy = uniform_below(rng.next_u64(), n_offsets) as usize;
    let dx = uniform_below(rng.next_u64(), n_offsets) as usize;
    let flip = unit_interval(rng.next_u64()) < f64::from(cfg.flip_prob);

    Draw { dy, dx, flip }
}

/// Maps a uniform `u64` to `0..n` by the high half of the 128-bit product. Unlike
/// rejection sampling it reads a fixed number of values; the bias is below `n / 2^64`.
fn uniform_below(bits: u64, n: u64) -> u64 {
    ((u128::from(bits) * u128::from(n)) >> 64) as u64
}

/// Maps a uniform `u64` to [0, 1) using its top 53 bits, so `x < p` has probability `p`
/// up to 2^-53 and `x < 1.0` always holds.
fn unit_interval(bits: u64) -> f64 {
    const SCALE: f64 = 1.0 / (1u64 << 53) as f64;
    (bits >> 11) as f64 * SCALE
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngCore, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn uniform_below_covers_the_range_ends() {
        assert_eq!(uniform_below(0, 5), 0);
        assert_eq!(uniform_below(u64::MAX, 5), 4);
        assert_eq!(uniform_below(u64::MAX, 1), 0);
        assert_eq!(unit_interval(0), 0.0);
        assert!(unit_interval(u64::MAX) < 1.0);
    }

    #[test]
    fn crop_offsets_cover_exactly_zero_to_twice_the_padding() {
        // 5 offsets per axis for padding 2: in 10,000 draws each one is missed with
        // probability (4/5)^10000, so seeing both ends is certain for any seed.
        let cfg = AugmentConfig {
            crop_padding: 2,
            ..AugmentConfig::default()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut seen_dy = [0usize; 5];
        let mut seen_dx = [0usize; 5];
        for _ in 0..10_000 {
            let d = draw(&cfg, &mut rng);
            assert!(d.dy <= 4 && d.dx <= 4, "offset beyond 2 * padding: {d:?}");
            seen_dy[d.dy] += 1;
            seen_dx[d.dx] += 1;
        }
        assert!(seen_dy.iter().all(|&n| n > 0), "dy counts {seen_dy:?}");
        assert!(seen_dx.iter().all(|&n| n > 0), "dx counts {seen_dx:?}");
    }

    #[test]
    fn zero_padding_always_draws_offset_zero() {
        let cfg = AugmentConfig::default();
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        for _ in 0..1000 {
            let d = draw(&cfg, &mut rng);
            assert_eq!((d.dy, d.dx, d.flip), (0, 0, false));
        }
    }

    #[test]
    fn flip_frequency_matches_probability() {
        // Binomial(10000, 0.4): mean 4000, sigma sqrt(10000 * 0.4 * 0.6) = 48.99;
        // 4 sigma = 196 flips.
        let cfg = AugmentConfig {
            flip_prob: 0.4,
            ..AugmentConfig::default()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let n_flips = (0..10_000).filter(|_| draw(&cfg, &mut rng).flip).count();
        assert!(
            (3804..=4196).contains(&n_flips),
            "{n_flips} flips in 10000 draws"
        );
    }

    #[test]
    fn flip_prob_one_always_flips() {
        let cfg = AugmentConfig {
            flip_prob: 1.0,
            ..AugmentConfig::default()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        assert!((0..1000).all(|_| draw(&cfg, &mut rng).flip));
    }

    #[test]
    fn every_config_reads_the_same_number_of_values() {
        // After one draw under any config the stream must be at the same position.
        let configs = [
            AugmentConfig::default(),
            AugmentConfig::v2(),
            AugmentConfig {
                crop_padding: 7,
                flip_prob: 1.0,
                ..AugmentConfig::default()
            },
        ];
        let next_after_draw = |cfg: &AugmentConfig| {
            let mut rng = ChaCha8Rng::seed_from_u64(5);
            draw(cfg, &mut rng);
            rng.next_u64()
        };
        let mut reference = ChaCha8Rng::seed_from_u64(5);
        for _ in 0..3 {
            reference.next_u64();
        }
        let expected = reference.next_u64();
        for cfg in &configs {
            assert_eq!(next_after_draw(cfg), expected, "{cfg:?}");
        }
    }
}
