//! What the pipeline does to an image: normalisation, crop padding, pad mode, flip rate.

use serde::{Deserialize, Serialize};

use crate::{H, W};

/// How the image is extended beyond its border before the random crop.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PadMode {
    /// Mirror without repeating the edge: a row `a b c d` padded by 2 reads
    /// `c b a b c d c b` (PyTorch's `padding_mode="reflect"`).
    Reflect,
    /// Byte value 0, black, applied before normalisation (so not the mean colour).
    Zeros,
}

/// Per-channel normalisation `(x - mean) / std`, applied after scaling bytes to [0, 1].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Normalize {
    /// Mean of each channel (red, green, blue) on the [0, 1] scale.
    pub mean: [f32; 3],
    /// Standard deviation of each channel on the [0, 1] scale.
    pub std: [f32; 3],
}

impl Normalize {
    /// The CIFAR-10 statistics of recipe v2.
    pub const CIFAR10: Normalize = Normalize {
        mean: [0.4914, 0.4822, 0.4465],
        std: [0.2023, 0.1994, 0.2010],
    };
}

/// The whole input pipeline of a recipe. The default is recipe "original": scale to
/// [0, 1] and nothing else.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentConfig {
    /// Normalisation after scaling; `None` leaves pixels in [0, 1].
    pub normalize: Option<Normalize>,
    /// Pixels added on each side before the random 32x32 crop; 0 means no crop.
    pub crop_padding: usize,
    /// What the padding is filled with.
    pub pad_mode: PadMode,
    /// Probability of a horizontal flip of a training sample.
    pub flip_prob: f32,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig {
            normalize: None,
            crop_padding: 0,
            pad_mode: PadMode::Reflect,
            flip_prob: 0.0,
        }
    }
}

impl AugmentConfig {
    /// Recipe v2: CIFAR-10 normalisation, reflection padding of 2, flip with
    /// probability 0.4.
    pub fn v2() -> Self {
        AugmentConfig {
            normalize: Some(Normalize::CIFAR10),
            crop_padding: 2,
            pad_mode: PadMode::Reflect,
            flip_prob: 0.4,
        }
    }

    /// Checks the values a config file could get wrong. The pixel functions do not need
    /// it (they never panic on a bad config), but a bad value would silently train
    /// something other than what was asked.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(0.0..=1.0).contains(&self.flip_prob) {
            return Err(ConfigError::FlipProb(self.flip_prob));
        }

        // Like PyTorch, reflect at most once: the padding must be smaller than the image.
        let limit = H.min(W) - 1;
        if self.pad_mode == PadMode::Reflect && self.crop_padding > limit {
            return Err(ConfigError::ReflectPadding {
                padding: self.crop_padding,
                limit,
            });
        }

        if let Some(norm) = &self.normalize {
            for channel_idx in 0..3 {
                let mean = norm.mean[channel_idx];
                let std = norm.std[channel_idx];
                if !mean.is_finite() || !std.is_finite() || std <= 0.0 {
                    return Err(ConfigError::Normalize {
                        channel_idx,
                        mean,
                        std,
                    });
                }
            }
        }

        Ok(())
    }
}

/// A value of [`AugmentConfig`] that cannot be meant.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("augment: flip_prob must lie in [0, 1], found {0}")]
    FlipProb(f32),
    #[error(
        "augment: reflection padding must be at most {limit} for a 32x32 image, found {padding}"
    )]
    ReflectPadding { padding: usize, limit: usize },
    #[error("augment: normalize channel {channel_idx} needs a finite mean and std > 0, found {mean}, {std}")]
    Normalize {
        channel_idx: usize,
        mean: f32,
        std: f32,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_recipe_original() {
        let cfg = AugmentConfig::default();
        assert_eq!(cfg.normalize, None);
        assert_eq!(cfg.crop_padding, 0);
        assert_eq!(cfg.pad_mode, PadMode::Reflect);
        assert_eq!(cfg.flip_prob, 0.0);
        assert_eq!(cfg.validate(), Ok(()));
        assert_eq!(AugmentConfig::v2().validate(), Ok(()));
    }

    #[test]
    fn validate_rejects_bad_values() {
        let flip = AugmentConfig {
            flip_prob: 1.5,
            ..AugmentConfig::default()
        };
        assert_eq!(flip.validate(), Err(ConfigError::FlipProb(1.5)));

        let pad = AugmentConfig {
            crop_padding: 32,
            ..AugmentConfig::default()
        };
        assert_eq!(
            pad.validate(),
            Err(ConfigError::ReflectPadding {
                padding: 32,
                limit: 31
            })
        );

        // Zero padding has no such limit: the crop just sees more black.
        let zeros = AugmentConfig {
            pad_mode: PadMode::Zeros,
            ..pad
        };
        assert_eq!(zeros.validate(), Ok(()));

        let mut norm = Normalize::CIFAR10;
        norm.std[1] = 0.0;
        let bad_std = AugmentConfig {
            normalize: Some(norm),
            ..AugmentConfig::default()
        };
        assert!(matches!(
            bad_std.validate(),
            Err(ConfigError::Normalize { channel_idx: 1, .. })
        ));
    }

    #[test]
    fn config_reads_from_toml_with_defaults_and_rejects_unknown_keys() {
        let text = "crop_padding = 2\npad_mode = \"zeros\"\n\n[normalize]\n\
                    mean = [0.5, 0.5, 0.5]\nstd = [0.25, 0.25, 0.25]\n";
        let cfg: AugmentConfig = toml::from_str(text).unwrap();
        assert_eq!(cfg.crop_padding, 2);
        assert_eq!(cfg.pad_mode, PadMode::Zeros);
        assert_eq!(cfg.flip_prob, 0.0);
        assert_eq!(cfg.normalize.unwrap().std, [0.25; 3]);

        let empty: AugmentConfig = toml::from_str("").unwrap();
        assert_eq!(empty, AugmentConfig::default());

        assert!(toml::from_str::<AugmentConfig>("flip = 0.5").is_err());
    }
}
