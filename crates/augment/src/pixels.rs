//! Bytes to f32: pad, crop, flip, scale, normalise. `[C, H, W]` u8 -> `[C, H, W]` f32.
//!
//! Output pixel (c, y, x) of a training sample reads the raw image at
//!
//! ```text
//! xx  = W - 1 - x if the sample is flipped, else x     (flip after the crop)
//! row = pad(y  + dy - crop_padding, H)
//! col = pad(xx + dx - crop_padding, W)
//! ```
//!
//! where `pad` is [`reflect_index`] in reflect mode and "outside, byte 0" in zeros mode.
//! The byte then becomes `(byte / 255 - mean[c]) / std[c]`, in f32 and in that order, as
//! torchvision's `ToTensor` followed by `Normalize` computes it.
//!
//! [`Augmenter`] is the fast path: it evaluates that value once for each of the 256 bytes
//! of each channel and the source row and column once for each of the 32 output rows and
//! columns, then fills the image by lookups. The `*_naive` twins compute every pixel from
//! the formulas above and are the specification the fast path is tested against.

use crate::{AugmentConfig, Draw, PadMode, C, H, IMAGE_LEN, W};

/// Index into a row of `n` values after mirroring without repeating the edge: a row
/// `a b c d` read at `-2..6` gives `c b a b c d c b`. Indices further out keep bouncing
/// between the two edges (period `2 * (n - 1)`), so every `i` is valid.
///
/// # Panics
/// If `n` is 0.
pub fn reflect_index(i: isize, n: usize) -> usize {
    assert!(n > 0, "reflect_index: empty row");
    if n == 1 {
        return 0;
    }
    let period = 2 * (n as isize - 1);
    let folded = i.rem_euclid(period);
    if folded < n as isize {
        folded as usize
    } else {
        (period - folded) as usize
    }
}

/// The evaluation path: scale to [0, 1] and normalise, no augmentation.
///
/// # Panics
/// If `src` or `out` is not `C * H * W` = 3072 long.
pub fn to_f32(src: &[u8], cfg: &AugmentConfig, out: &mut [f32]) {
    Augmenter::new(cfg).to_f32(src, out);
}

/// The training path: pad the raw image, crop 32x32 at (`draw.dy`, `draw.dx`), flip if
/// `draw.flip`, then scale and normalise.
///
/// # Panics
/// If `src` or `out` is not `C * H * W` = 3072 long.
pub fn augment_to_f32(src: &[u8], cfg: &AugmentConfig, draw: &Draw, out: &mut [f32]) {
    Augmenter::new(cfg).augment_to_f32(src, draw, out);
}

/// A config prepared for many images: the normalised value of every byte in every channel.
/// Build one per config (or per worker) and reuse it; the free functions build one per call.
#[derive(Clone, Debug)]
pub struct Augmenter {
    crop_padding: usize,
    pad_mode: PadMode,
    /// `table[c][byte]` is what `byte` in channel `c` becomes.
    table: [[f32; 256]; C],
}

impl Augmenter {
    pub fn new(cfg: &AugmentConfig) -> Augmenter {
        let mut table = [[0.0; 256]; C];
        for (c, channel_table) in table.iter_mut().enumerate() {
            for (byte, value) in channel_table.iter_mut().enumerate() {
                *value = scale_normalize(byte as u8, c, cfg);
            }
        }
        Augmenter {
            crop_padding: cfg.crop_padding,
            pad_mode: cfg.pad_mode,
            table,
        }
    }

    /// See [`to_f32`].
    pub fn to_f32(&self, src: &[u8], out: &mut [f32]) {
        check_lens(src, out);
        let plane = H * W;
        for (c, (src_plane, out_plane)) in src
            .chunks_exact(plane)
            .zip(out.chunks_exact_mut(plane))
            .enumerate()
        {
            let table = &self.table[c];
            for (value, &byte) in out_plane.iter_mut().zip(src_plane) {
                *value = table[usize::from(byte)];
            }
        }
    }

    /// See [`augment_to_f32`].
    pub fn augment_to_f32(&self, src: &[u8], draw: &Draw, out: &mut [f32]) {
        check_lens(src, out);
        let pad = self.crop_padding;
        debug_assert!(
            draw.dy <= 2 * pad && draw.dx <= 2 * pad,
            "draw {draw:?} is outside the padding {pad}"
        );

        // 1. Where each output row and column reads in the raw image (None: zero padding).
        let mut src_rows = [None; H];
        for (y, src_row) in src_rows.iter_mut().enumerate() {
            *src_row = self.source_index(y + draw.dy, H);
        }
        let mut src_cols = [None; W];
        for (x, src_col) in src_cols.iter_mut().enumerate() {
            let xx = if draw.flip { W - 1 - x } else { x };
            *src_col = self.source_index(xx + draw.dx, W);
        }

        // 2. Fill each channel by lookups; byte 0 is what zero padding reads.
        let plane = H * W;
        for (c, (src_plane, out_plane)) in src
            .chunks_exact(plane)
            .zip(out.chunks_exact_mut(plane))
            .enumerate()
        {
            let table = &self.table[c];
            let zero_value = table[0];
            for (out_row, src_y) in out_plane.chunks_exact_mut(W).zip(src_rows) {
                let Some(src_y) = src_y else {
                    out_row.fill(zero_value);
                    continue;
                };
                let src_row = &src_plane[src_y * W..(src_y + 1) * W];
                for (value, src_x) in out_row.iter_mut().zip(src_cols) {
                    *value = match src_x {
                        Some(src_x) => table[usize::from(src_row[src_x])],
                        None => zero_value,
                    };
                }
            }
        }
    }

    /// The raw index read at `padded_idx` of the padded axis of length `n + 2 * pad`.
    fn source_index(&self, padded_idx: usize, n: usize) -> Option<usize> {
        let i = padded_idx as isize - self.crop_padding as isize;
        if (0..n as isize).contains(&i) {
            return Some(i as usize);
        }
        match self.pad_mode {
            PadMode::Reflect => Some(reflect_index(i, n)),
            PadMode::Zeros => None,
        }
    }
}

/// Plain-loop twin of [`to_f32`].
pub fn to_f32_naive(src: &[u8], cfg: &AugmentConfig, out: &mut [f32]) {
    check_lens(src, out);
    for c in 0..C {
        for y in 0..H {
            for x in 0..W {
                let idx = (c * H + y) * W + x;
                out[idx] = scale_normalize(src[idx], c, cfg);
            }
        }
    }
}

/// Plain-loop twin of [`augment_to_f32`]: every pixel straight from the formulas in the
/// module header.
pub fn augment_to_f32_naive(src: &[u8], cfg: &AugmentConfig, draw: &Draw, out: &mut [f32]) {
    check_lens(src, out);
    let pad = cfg.crop_padding as isize;
    for c in 0..C {
        for y in 0..H {
            for x in 0..W {
                let xx = if draw.flip { W - 1 - x } else { x };
                let row = y as isize + draw.dy as isize - pad;
                let col = xx as isize + draw.dx as isize - pad;
                let inside = (0..H as isize).contains(&row) && (0..W as isize).contains(&col);
                let byte = match (cfg.pad_mode, inside) {
                    (_, true) | (PadMode::Reflect, false) => {
                        let src_y = reflect_index(row, H);
                        let src_x = reflect_index(col, W);
                        src[(c * H + src_y) * W + src_x]
                    }
                    (PadMode::Zeros, false) => 0,
                };
                out[(c * H + y) * W + x] = scale_normalize(byte, c, cfg);
            }
        }
    }
}

/// `(byte / 255 - mean[c]) / std[c]` in f32, or just `byte / 255` without normalisation.
fn scale_normalize(byte: u8, c: usize, cfg: &AugmentConfig) -> f32 {
    let scaled = f32::from(byte) / 255.0;
    match &cfg.normalize {
        Some(norm) => (scaled - norm.mean[c]) / norm.std[c],
        None => scaled,
    }
}

#[track_caller]
fn check_lens(src: &[u8], out: &[f32]) {
    assert!(
        src.len() == IMAGE_LEN && out.len() == IMAGE_LEN,
        "augment: image must be {IMAGE_LEN} values [C={C}, H={H}, W={W}], \
         found src {} and out {}",
        src.len(),
        out.len()
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{draw, Normalize};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn reflect_index_of_the_abcd_example() {
        // Row a b c d (indices 0 1 2 3) padded by 2 reads c b a b c d c b.
        let read: Vec<usize> = (-2..6).map(|i| reflect_index(i, 4)).collect();
        assert_eq!(read, [2, 1, 0, 1, 2, 3, 2, 1]);
    }

    #[test]
    fn reflect_index_far_outside_keeps_bouncing() {
        // Period 2 * (4 - 1) = 6: 0 1 2 3 2 1 | 0 1 2 ...
        assert_eq!(reflect_index(6, 4), 0);
        assert_eq!(reflect_index(9, 4), 3);
        assert_eq!(reflect_index(-6, 4), 0);
        assert_eq!(reflect_index(-4, 4), 2);
        assert_eq!(reflect_index(-3, 1), 0);
    }

    fn random_image(seed: u64) -> Vec<u8> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..IMAGE_LEN).map(|_| rng.gen()).collect()
    }

    #[test]
    fn fast_path_matches_naive_bitwise() {
        let configs = [
            AugmentConfig::default(),
            AugmentConfig::v2(),
            AugmentConfig {
                pad_mode: PadMode::Zeros,
                ..AugmentConfig::v2()
            },
            AugmentConfig {
                crop_padding: 5,
                pad_mode: PadMode::Zeros,
                flip_prob: 0.5,
                normalize: Some(Normalize {
                    mean: [0.1, 0.2, 0.3],
                    std: [0.5, 0.7, 0.9],
                }),
            },
        ];
        let mut rng = ChaCha8Rng::seed_from_u64(10);
        let mut fast = vec![0.0; IMAGE_LEN];
        let mut naive = vec![0.0; IMAGE_LEN];
        for (cfg_idx, cfg) in configs.iter().enumerate() {
            let src = random_image(cfg_idx as u64);
            to_f32(&src, cfg, &mut fast);
            to_f32_naive(&src, cfg, &mut naive);
            assert_eq!(bits(&fast), bits(&naive), "to_f32 {cfg:?}");

            for _ in 0..50 {
                let d = draw(cfg, &mut rng);
                augment_to_f32(&src, cfg, &d, &mut fast);
                augment_to_f32_naive(&src, cfg, &d, &mut naive);
                assert_eq!(bits(&fast), bits(&naive), "augment {cfg:?} {d:?}");
            }
        }
    }

    #[test]
    fn identity_draw_equals_evaluation_path() {
        for cfg in [AugmentConfig::default(), AugmentConfig::v2()] {
            let src = random_image(20);
            let mut eval = vec![0.0; IMAGE_LEN];
            let mut train = vec![0.0; IMAGE_LEN];
            to_f32(&src, &cfg, &mut eval);
            augment_to_f32(&src, &cfg, &Draw::identity(&cfg), &mut train);
            assert_eq!(bits(&eval), bits(&train));
        }
    }

    #[test]
    #[should_panic(expected = "found src 3071 and out 3072")]
    fn wrong_length_panics_with_lengths() {
        let mut out = vec![0.0; IMAGE_LEN];
        to_f32(&[0; IMAGE_LEN - 1], &AugmentConfig::default(), &mut out);
    }

    fn bits(values: &[f32]) -> Vec<u32> {
        values.iter().map(|v| v.to_bits()).collect()
    }
}
