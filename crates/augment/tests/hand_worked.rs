//! Padding, cropping, flipping and normalisation checked against values worked out by hand.
//!
//! The position image puts each pixel's row index in the red byte and its column index in
//! the green byte, so the (row, col) an output pixel came from can be read back exactly
//! from an unnormalised output (byte = value * 255).

use scratchnet_augment::{
    augment_to_f32, to_f32, AugmentConfig, Draw, Normalize, PadMode, H, IMAGE_LEN, W,
};

/// Red = row index, green = column index, blue = 7 everywhere.
fn position_image() -> Vec<u8> {
    let mut img = vec![7u8; IMAGE_LEN];
    for y in 0..H {
        for x in 0..W {
            img[y * W + x] = y as u8;
            img[H * W + y * W + x] = x as u8;
        }
    }
    img
}

/// The raw (row, col) that output pixel (y, x) was read from.
fn source_of(out: &[f32], y: usize, x: usize) -> (usize, usize) {
    let byte = |v: f32| (v * 255.0).round() as usize;
    (byte(out[y * W + x]), byte(out[H * W + y * W + x]))
}

fn pad2(pad_mode: PadMode) -> AugmentConfig {
    AugmentConfig {
        crop_padding: 2,
        pad_mode,
        ..AugmentConfig::default()
    }
}

fn augmented(cfg: &AugmentConfig, dy: usize, dx: usize, flip: bool) -> Vec<f32> {
    let mut out = vec![0.0; IMAGE_LEN];
    augment_to_f32(&position_image(), cfg, &Draw { dy, dx, flip }, &mut out);
    out
}

#[test]
fn reflection_padding_at_the_top_left_corner() {
    // Padded index p reads raw reflect(p - 2): padded 0 1 2 3 -> raw 2 1 0 1.
    // The crop at (0, 0) shows padded (0..32, 0..32) as output (0..32, 0..32).
    let out = augmented(&pad2(PadMode::Reflect), 0, 0, false);
    assert_eq!(source_of(&out, 0, 0), (2, 2));
    assert_eq!(source_of(&out, 0, 1), (2, 1));
    assert_eq!(source_of(&out, 1, 0), (1, 2));
    assert_eq!(source_of(&out, 1, 1), (1, 1));
    assert_eq!(source_of(&out, 2, 2), (0, 0));
    assert_eq!(source_of(&out, 3, 2), (1, 0));
}

#[test]
fn reflection_padding_at_the_other_corners() {
    // The padded image is 36 wide; padded 35 reads raw reflect(33) = 31 - 2 = 29,
    // padded 34 reads raw reflect(32) = 30, padded 33 reads raw 31.
    let cfg = pad2(PadMode::Reflect);

    // Crop at (4, 4): output (31, 31) is padded (35, 35).
    let bottom_right = augmented(&cfg, 4, 4, false);
    assert_eq!(source_of(&bottom_right, 31, 31), (29, 29));
    assert_eq!(source_of(&bottom_right, 30, 31), (30, 29));
    assert_eq!(source_of(&bottom_right, 29, 29), (31, 31));

    // Crop at (0, 4): output (0, 31) is padded (0, 35).
    let top_right = augmented(&cfg, 0, 4, false);
    assert_eq!(source_of(&top_right, 0, 31), (2, 29));

    // Crop at (4, 0): output (31, 0) is padded (35, 0).
    let bottom_left = augmented(&cfg, 4, 0, false);
    assert_eq!(source_of(&bottom_left, 31, 0), (29, 2));
}

#[test]
fn centre_crop_without_flip_is_the_image() {
    let out = augmented(&pad2(PadMode::Reflect), 2, 2, false);
    for y in 0..H {
        for x in 0..W {
            assert_eq!(source_of(&out, y, x), (y, x));
        }
    }
}

#[test]
fn flip_mirrors_columns() {
    // No padding: output (y, x) is raw (y, 31 - x).
    let no_pad = AugmentConfig::default();
    let out = augmented(&no_pad, 0, 0, true);
    for y in 0..H {
        for x in 0..W {
            assert_eq!(source_of(&out, y, x), (y, W - 1 - x));
        }
    }

    // The flip comes after the crop: crop at dx = 0 shows padded columns 0..32, i.e. raw
    // 2 1 0 1 ... 29; flipped, output column 0 is raw 29 and column 31 is raw 2.
    let out = augmented(&pad2(PadMode::Reflect), 2, 0, true);
    assert_eq!(source_of(&out, 5, 0), (5, 29));
    assert_eq!(source_of(&out, 5, 29), (5, 0));
    assert_eq!(source_of(&out, 5, 31), (5, 2));
}

#[test]
fn zero_padding_is_black_before_normalisation() {
    // A white image, zero padding, crop at (0, 0): the two top rows and two left
    // columns are padding. With normalisation a padded pixel is (0/255 - mean) / std:
    // red -0.4914/0.2023 = -2.4290657, green -0.4822/0.1994 = -2.4182548,
    // blue -0.4465/0.2010 = -2.2213930; an image pixel is (1 - mean) / std:
    // 2.5140880, 2.5967904, 2.7537313 (worked out in f64). f32 rounding of values near
    // 2.5 is about 2.4e-7 per operation; tolerance 1e-5.
    let cfg = AugmentConfig {
        normalize: Some(Normalize::CIFAR10),
        ..pad2(PadMode::Zeros)
    };
    let white = vec![255u8; IMAGE_LEN];
    let mut out = vec![0.0; IMAGE_LEN];
    augment_to_f32(
        &white,
        &cfg,
        &Draw {
            dy: 0,
            dx: 0,
            flip: false,
        },
        &mut out,
    );

    let padded = [-2.4290657, -2.4182548, -2.221393];
    let inside = [2.514088, 2.5967904, 2.7537313];
    let plane = H * W;
    for c in 0..3 {
        let at = |y: usize, x: usize| out[c * plane + y * W + x];
        for (y, x) in [(0, 0), (0, 31), (1, 10), (10, 1), (31, 0)] {
            assert!(
                (at(y, x) - padded[c]).abs() < 1e-5,
                "c {c} ({y}, {x}): {}",
                at(y, x)
            );
        }
        for (y, x) in [(2, 2), (31, 31), (2, 31), (31, 2)] {
            assert!(
                (at(y, x) - inside[c]).abs() < 1e-5,
                "c {c} ({y}, {x}): {}",
                at(y, x)
            );
        }
    }

    // Without normalisation zero padding is exactly 0.0.
    let plain = augmented(&pad2(PadMode::Zeros), 0, 0, false);
    assert_eq!(plain[0], 0.0);
    assert_eq!(plain[H * W + 2 * W + 1], 0.0);
}

#[test]
fn to_f32_scales_and_normalises() {
    // Byte 255 -> (1 - mean) / std and byte 128 -> (128/255 - mean) / std per channel,
    // worked out in f64: red 2.5140880, 0.0522036; green 2.5967904, 0.0991012;
    // blue 2.7537313, 0.2759243. Tolerance 1e-5 as above.
    let cfg = AugmentConfig {
        normalize: Some(Normalize::CIFAR10),
        ..AugmentConfig::default()
    };
    let mut img = vec![255u8; IMAGE_LEN];
    let plane = H * W;
    for c in 0..3 {
        img[c * plane + 1] = 128;
    }
    let mut out = vec![0.0; IMAGE_LEN];
    to_f32(&img, &cfg, &mut out);

    let white = [2.514088, 2.5967904, 2.7537313];
    let grey = [0.0522036, 0.0991012, 0.2759243];
    for c in 0..3 {
        assert!(
            (out[c * plane] - white[c]).abs() < 1e-5,
            "c {c}: {}",
            out[c * plane]
        );
        assert!(
            (out[c * plane + 1] - grey[c]).abs() < 1e-5,
            "c {c}: {}",
            out[c * plane + 1]
        );
    }

    // Without normalisation: byte / 255 exactly as f32 division computes it.
    let mut plain = vec![0.0; IMAGE_LEN];
    to_f32(&img, &AugmentConfig::default(), &mut plain);
    assert_eq!(plain[0], 1.0);
    assert_eq!(plain[1], 128.0f32 / 255.0);
}
