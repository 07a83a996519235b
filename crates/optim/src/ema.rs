//! Exponential moving average of the weights.
//!
//! ```text
//! first update: shadow = p
//! afterwards:   shadow = decay * shadow + (1 - decay) * p
//! ```
//!
//! Only parameters are averaged; batch-norm running statistics are the trainer's to copy
//! from the live network (RECIPES.md, recipe v2).

/// The averaged copy of the parameters, one buffer per parameter tensor in the usual order.
/// Public fields so that the trainer can checkpoint and restore them.
#[derive(Clone, Debug, PartialEq)]
pub struct Ema {
    /// Weight of the old average in each update (recipe v2: 0.999).
    pub decay: f32,
    /// `None` until the first update.
    pub shadow: Option<Vec<Vec<f32>>>,
}

impl Ema {
    pub fn new(decay: f32) -> Ema {
        Ema {
            decay,
            shadow: None,
        }
    }

    /// Folds the current parameters into the average; call after every optimiser step.
    ///
    /// # Panics
    /// If the tensor count or a tensor length differs from the first update's.
    #[track_caller]
    pub fn update(&mut self, params: &[&[f32]]) {
        let Some(shadow) = &mut self.shadow else {
            self.shadow = Some(params.iter().map(|param| param.to_vec()).collect());
            return;
        };

        assert_eq!(
            shadow.len(),
            params.len(),
            "ema: averaging {} tensors, given {}",
            shadow.len(),
            params.len()
        );
        let decay = self.decay;
        let one_minus_decay = 1.0 - decay;
        for (tensor_idx, (average, param)) in shadow.iter_mut().zip(params).enumerate() {
            assert_eq!(
                average.len(),
                param.len(),
                "ema: tensor {tensor_idx} has {} averaged values, given {}",
                average.len(),
                param.len()
            );
            for (s, &p) in average.iter_mut().zip(param.iter()) {
                *s = decay * *s + one_minus_decay * p;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_update_copies_bitwise() {
        let mut ema = Ema::new(0.999);
        assert_eq!(ema.shadow, None);
        ema.update(&[&[0.1, f32::MIN_POSITIVE], &[-3.0]]);
        assert_eq!(
            ema.shadow,
            Some(vec![vec![0.1, f32::MIN_POSITIVE], vec![-3.0]])
        );
    }

    #[test]
    #[should_panic(expected = "ema: tensor 0 has 2 averaged values, given 3")]
    fn changed_length_panics_with_lengths() {
        let mut ema = Ema::new(0.9);
        ema.update(&[&[0.0; 2]]);
        ema.update(&[&[0.0; 3]]);
    }
}
