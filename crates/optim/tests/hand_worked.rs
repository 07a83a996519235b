//! Adam, schedules, EMA and model selection against values worked out by hand (each test
//! shows the arithmetic; decimal values were checked in f64).

use scratchnet_optim::{Adam, AdamConfig, Ema, Schedule, Selected, SelectionConfig, Selector};

#[track_caller]
fn assert_close(actual: &[f32], expected: &[f64], tolerance: f64) {
    assert_eq!(actual.len(), expected.len());
    for (idx, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        let err = (f64::from(a) - e).abs();
        assert!(
            err <= tolerance,
            "[{idx}]: {a} vs {e}, error {err:e} > {tolerance:e}"
        );
    }
}

/// Relative tolerance for a single rate: f32 keeps about 6e-8, the f32 base and
/// eta_min differ from their decimals by under 1e-7.
#[track_caller]
fn assert_rate(actual: f32, expected: f64) {
    let relative = (f64::from(actual) / expected - 1.0).abs();
    assert!(
        relative < 1e-6,
        "{actual} vs {expected}: relative error {relative:e}"
    );
}

// Adam tolerance: about ten f32 operations on values near 1 (2e-6 absolute); the betas
// as f32 (0.9 is stored as 0.89999998) move the results by under 1e-7.
const ADAM_TOLERANCE: f64 = 2e-6;

#[test]
fn adam_two_steps_by_hand() {
    let mut adam = Adam::new(AdamConfig::default(), &[2]);
    let mut p = [1.0f32, -2.0];
    let lr = 0.1;

    // Step 1, g = [0.5, -0.25]:
    //   m = 0.1 g = [0.05, -0.025], v = 0.001 g^2 = [2.5e-4, 6.25e-5]
    //   1 - b1 = 0.1, 1 - b2 = 0.001: step_size = lr / 0.1 = 1,
    //   denom = sqrt(v) / sqrt(0.001) + eps = |g| + 1e-8
    //   p -= m / denom = lr * sign(g) (1 - 1e-8 / |g|): every element moves by lr
    //   p = [0.9, -1.9]
    adam.step(lr, &mut [&mut p], &[&[0.5, -0.25]]);
    assert_close(&p, &[0.9, -1.9], ADAM_TOLERANCE);
    assert_eq!(adam.step, 1);

    // Step 2, g = [0.1, 0.5]:
    //   m = 0.9 m + 0.1 g = [0.045 + 0.01, -0.0225 + 0.05] = [0.055, 0.0275]
    //   v = 0.999 v + 0.001 g^2 = [2.4975e-4 + 1e-5, 6.24375e-5 + 2.5e-4]
    //     = [2.5975e-4, 3.124375e-4]
    //   1 - b1^2 = 0.19, 1 - b2^2 = 0.001999: step_size = 0.1 / 0.19 = 0.5263158
    //   denom = sqrt(v / 0.001999) = [0.3604719, 0.3953440]
    //   p -= step_size m / denom = [0.0803041, 0.0366103]
    //   p = [0.8196959, -1.9366104]
    adam.step(lr, &mut [&mut p], &[&[0.1, 0.5]]);
    assert_close(&p, &[0.8196959, -1.9366104], ADAM_TOLERANCE);
    // The moments to a few f32 ulps of their size (ulp of 0.055 is 3.7e-9, of 3e-4 3e-11).
    assert_close(&adam.m[0], &[0.055, 0.0275], 5e-8);
    assert_close(&adam.v[0], &[2.5975e-4, 3.124375e-4], 2e-10);
}

#[test]
fn adam_weight_decay_is_added_to_the_gradient() {
    let cfg = AdamConfig {
        weight_decay: 0.1,
        ..AdamConfig::default()
    };
    let mut adam = Adam::new(cfg, &[2]);
    let mut p = [1.0f32, -2.0];
    let lr = 0.1;

    // Step 1, g = [-0.05, -0.25]; with L2, g' = g + 0.1 p = [0.05, -0.45]. The first
    // element's gradient changes sign, so it moves down by lr: p = [0.9, -1.9].
    // (Decoupled AdamW would give 1 * (1 - 0.1 * 0.1) + 0.1 = 1.09 instead.)
    adam.step(lr, &mut [&mut p], &[&[-0.05, -0.25]]);
    assert_close(&p, &[0.9, -1.9], ADAM_TOLERANCE);

    // Step 2, g = [0.1, 0.5]; g' = g + 0.1 p = [0.1 + 0.09, 0.5 - 0.19] = [0.19, 0.31]
    //   m = 0.9 [0.005, -0.045] + 0.1 g' = [0.0235, -0.0095]
    //   v = 0.999 [2.5e-6, 2.025e-4] + 0.001 g'^2 = [3.85975e-5, 2.983975e-4]
    //   denom = sqrt(v / 0.001999) = [0.1389547, 0.3863592]
    //   p -= 0.5263158 m / denom = [0.0890104, -0.0129413]
    //   p = [0.8109896, -1.8870587]
    adam.step(lr, &mut [&mut p], &[&[0.1, 0.5]]);
    assert_close(&p, &[0.8109896, -1.8870587], ADAM_TOLERANCE);
}

#[test]
fn cosine_table_of_recipe_v2() {
    // eta_min + (base - eta_min) (1 + cos(pi e / 150)) / 2, base 1e-3, eta_min 3e-5.
    let schedule = Schedule::Cosine {
        t_max: 150,
        eta_min: 3e-5,
    };
    let lr = |epoch| schedule.lr_at(1e-3, epoch);

    // Epoch 0: cos 0 = 1, the base rate; f64 rounding cannot move the f32 result.
    assert_eq!(lr(0), 1e-3);

    // Epoch 1: 1 - cos(pi/150) = 2.193165e-4, so 1e-3 - 9.7e-4 * 2.193165e-4 / 2
    // = 9.998936e-4.
    assert_rate(lr(1), 9.998936e-4);

    // Epoch 75: cos(pi/2) = 0, the midpoint (1e-3 + 3e-5) / 2 = 5.15e-4.
    assert_rate(lr(75), 5.15e-4);

    // Epoch 149, the last one trained: 1 + cos(149 pi/150) = 1 - cos(pi/150)
    // = x^2/2 - x^4/24 with x = pi/150 = 0.020943951: 2.1932454e-4 - 8.017e-9
    // = 2.1931652e-4; 3e-5 + 9.7e-4 * 2.1931652e-4 / 2 = 3e-5 + 1.0636852e-7
    // = 3.0106369e-5.
    assert_rate(lr(149), 3.0106369e-5);

    // Epoch 150: cos pi = -1 exactly, eta_min exactly.
    assert_eq!(lr(150), 3e-5);

    // Monotone over the run.
    for epoch in 1..=150 {
        assert!(lr(epoch) < lr(epoch - 1), "epoch {epoch}");
    }
}

#[test]
fn step_schedule_drops_by_gamma_every_step_size_epochs() {
    // base * gamma^(epoch / 30), gamma 0.1, integer division.
    let schedule = Schedule::Step {
        step_size: 30,
        gamma: 0.1,
    };
    let lr = |epoch| schedule.lr_at(1e-3, epoch);
    assert_eq!(lr(0), 1e-3);
    assert_eq!(lr(29), 1e-3);
    assert_rate(lr(30), 1e-4);
    assert_rate(lr(59), 1e-4);
    assert_rate(lr(60), 1e-5);
    assert_rate(lr(95), 1e-6);
}

#[test]
fn ema_three_updates_by_hand() {
    // decay 0.9: shadow = 0.9 shadow + 0.1 p.
    let mut ema = Ema::new(0.9);

    // 1. Copy: [1, -1].
    ema.update(&[&[1.0, -1.0]]);
    assert_eq!(ema.shadow.as_ref().unwrap()[0], [1.0, -1.0]);

    // 2. p = [2, 0]: [0.9 + 0.2, -0.9 + 0] = [1.1, -0.9].
    ema.update(&[&[2.0, 0.0]]);
    assert_close(&ema.shadow.as_ref().unwrap()[0], &[1.1, -0.9], 1e-6);

    // 3. p = [3, 1]: [0.99 + 0.3, -0.81 + 0.1] = [1.29, -0.71].
    ema.update(&[&[3.0, 1.0]]);
    assert_close(&ema.shadow.as_ref().unwrap()[0], &[1.29, -0.71], 1e-6);
}

#[test]
fn warmup_selects_live_even_when_ema_is_lower() {
    let mut selector = Selector::new(SelectionConfig::default());
    for epoch in 0..8 {
        let decision = selector.observe(epoch, 2.0, Some(1.0));
        assert_eq!(decision.selected, Selected::Live, "epoch {epoch}");
        assert_eq!(decision.loss, 2.0);
    }

    // Epoch 8 is the first after 8 warm-up epochs.
    let decision = selector.observe(8, 2.0, Some(1.0));
    assert_eq!((decision.selected, decision.loss), (Selected::Ema, 1.0));
    assert!(decision.improved);
    assert_eq!(selector.best_epoch, Some(8));
}

#[test]
fn after_warmup_selects_the_lower_loss_and_live_on_a_tie() {
    let cfg = SelectionConfig {
        ema_warmup_epochs: 0,
        ..SelectionConfig::default()
    };
    let mut selector = Selector::new(cfg);
    assert_eq!(selector.observe(0, 1.0, Some(0.9)).selected, Selected::Ema);
    assert_eq!(
        selector.observe(1, 0.8, Some(0.85)).selected,
        Selected::Live
    );
    assert_eq!(selector.observe(2, 0.7, Some(0.7)).selected, Selected::Live);
    assert_eq!(selector.observe(3, 0.6, None).selected, Selected::Live);
}

#[test]
fn min_delta_boundary_is_not_an_improvement() {
    // With min_delta a power of two, 1.0 - 0.75 is exactly min_delta: no improvement.
    let cfg = SelectionConfig {
        min_delta: 0.25,
        ..SelectionConfig::default()
    };
    let mut selector = Selector::new(cfg);
    assert!(selector.observe(0, 1.0, None).improved);
    let decision = selector.observe(1, 0.75, None);
    assert!(!decision.improved);
    assert_eq!(selector.epochs_without_improvement, 1);
    assert_eq!(selector.best_loss, Some(1.0));
    assert!(selector.observe(2, 0.7, None).improved);
    assert_eq!(selector.epochs_without_improvement, 0);

    // Default min_delta 1e-4: from best 1e-4 to 0 is exactly 1e-4 (exact in f32), no
    // improvement; at recipe-like losses a drop of 9e-5 is none, one of 1.1e-4 is.
    let mut selector = Selector::new(SelectionConfig::default());
    selector.observe(0, 1e-4, None);
    assert!(!selector.observe(1, 0.0, None).improved);

    let mut selector = Selector::new(SelectionConfig::default());
    selector.observe(0, 0.8855, None);
    assert!(!selector.observe(1, 0.88541, None).improved);
    assert!(selector.observe(2, 0.88539, None).improved);
    assert_eq!(selector.best_epoch, Some(2));
}

#[test]
fn patience_stops_on_the_right_epoch() {
    // Patience 3: the best is at epoch 1; epochs 2, 3, 4 bring no improvement, so the
    // counter reaches 3 and the selector stops at epoch 4.
    let cfg = SelectionConfig {
        patience: Some(3),
        ema_warmup_epochs: 0,
        min_delta: 1e-4,
    };
    let mut selector = Selector::new(cfg);
    let losses = [1.0, 0.9, 0.95, 0.9, 0.91];
    let stops: Vec<bool> = losses
        .iter()
        .enumerate()
        .map(|(epoch, &loss)| selector.observe(epoch, loss, None).stop)
        .collect();
    assert_eq!(stops, [false, false, false, false, true]);
    assert_eq!(selector.best_epoch, Some(1));

    // An improvement resets the count: best at 0, improvement at 3, stop at 6.
    let mut selector = Selector::new(cfg);
    let losses = [1.0, 1.0, 1.0, 0.5, 0.6, 0.6, 0.6];
    let first_stop = losses
        .iter()
        .enumerate()
        .position(|(epoch, &loss)| selector.observe(epoch, loss, None).stop);
    assert_eq!(first_stop, Some(6));
    assert_eq!(selector.best_epoch, Some(3));
}

#[test]
fn no_patience_never_stops() {
    let cfg = SelectionConfig {
        patience: None,
        ..SelectionConfig::default()
    };
    let mut selector = Selector::new(cfg);
    for epoch in 0..1000 {
        assert!(
            !selector.observe(epoch, 1.0, Some(1.0)).stop,
            "epoch {epoch}"
        );
    }
    assert_eq!(selector.epochs_without_improvement, 999);
}

#[test]
fn a_bad_config_value_is_reported_as_it_was_written() {
    // -0.001 as an f32 widens to -0.0010000000474974513 in f64; the message shows the f32.
    let adam = AdamConfig {
        lr: -0.001,
        ..AdamConfig::default()
    };
    let err = adam.validate().unwrap_err();
    assert_eq!(
        err.to_string(),
        "adam.lr must be finite and >= 0, found -0.001"
    );
}
