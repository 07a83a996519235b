//! Model selection and early stopping (RECIPES.md, recipe v2).
//!
//! After each epoch the trainer reports the validation loss of the live network and, when
//! it keeps one, of the EMA network. The selector picks one:
//!
//! - during the first `ema_warmup_epochs` epochs (`epoch < ema_warmup_epochs`): live;
//! - afterwards the lower loss; live on a tie or without an EMA loss.
//!
//! The picked loss is an improvement when there is no best yet or `best - loss >
//! min_delta`; an improvement is where the trainer saves its checkpoint. After `patience`
//! epochs in a row without one, the selector says stop.

use serde::{Deserialize, Serialize};

use crate::error::{check, ConfigError};

/// Knobs of model selection; the default is recipe v2's.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SelectionConfig {
    /// Epochs at the start in which the EMA network is never picked.
    pub ema_warmup_epochs: usize,
    /// Epochs without improvement before stopping; `None` never stops. In a config file
    /// `None` is written `patience = "never"` (TOML has no null).
    #[serde(with = "patience_serde")]
    pub patience: Option<usize>,
    /// How much lower than the best a loss must be to count as an improvement.
    pub min_delta: f32,
}

impl Default for SelectionConfig {
    fn default() -> Self {
        SelectionConfig {
            ema_warmup_epochs: 8,
            patience: Some(20),
            min_delta: 1e-4,
        }
    }
}

impl SelectionConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let ok = self.min_delta.is_finite() && self.min_delta >= 0.0;
        check(
            ok,
            "selection",
            "min_delta",
            "finite and >= 0",
            self.min_delta,
        )
    }
}

/// Which network a decision picked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Selected {
    Live,
    Ema,
}

/// What the selector says about one epoch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Decision {
    /// The network picked this epoch.
    pub selected: Selected,
    /// Its validation loss.
    pub loss: f32,
    /// The loss beat the best by more than `min_delta`: save a checkpoint.
    pub improved: bool,
    /// Patience is exhausted: stop training (the final model is the best checkpoint).
    pub stop: bool,
}

/// Selection state across epochs; public and serialisable so that a resumed run carries on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Selector {
    pub config: SelectionConfig,
    /// Loss of the best checkpoint so far.
    pub best_loss: Option<f32>,
    /// Epoch of the best checkpoint so far.
    pub best_epoch: Option<usize>,
    /// Epochs since the last improvement.
    pub epochs_without_improvement: usize,
}

impl Selector {
    pub fn new(config: SelectionConfig) -> Selector {
        Selector {
            config,
            best_loss: None,
            best_epoch: None,
            epochs_without_improvement: 0,
        }
    }

    /// Records `epoch` (0-based) and decides. A NaN loss is never an improvement, and a
    /// NaN live loss loses to a finite EMA loss after warm-up.
    pub fn observe(&mut self, epoch: usize, live_loss: f32, ema_loss: Option<f32>) -> Decision {
        // 1. Pick the network.
        let warm = epoch >= self.config.ema_warmup_epochs;
        let (selected, loss) = match ema_loss {
            Some(ema) if warm && ema_is_lower(ema, live_loss) => (Selected::Ema, ema),
            _ => (Selected::Live, live_loss),
        };

        // 2. Compare with the best so far.
        let improved = match self.best_loss {
            _ if loss.is_nan() => false,
            None => true,
            Some(best) => best - loss > self.config.min_delta,
        };
        if improved {
            self.best_loss = Some(loss);
            self.best_epoch = Some(epoch);
            self.epochs_without_improvement = 0;
        } else {
            self.epochs_without_improvement += 1;
        }

        // 3. Out of patience? (`!improved` only matters for patience 0, which then means
        // "stop at the first epoch without improvement".)
        let stop = match self.config.patience {
            Some(patience) => !improved && self.epochs_without_improvement >= patience,
            None => false,
        };

        Decision {
            selected,
            loss,
            improved,
            stop,
        }
    }
}

fn ema_is_lower(ema: f32, live: f32) -> bool {
    ema < live || (live.is_nan() && !ema.is_nan())
}

/// `patience` in config files: a number of epochs, or `"never"` for `None`.
mod patience_serde {
    use serde::de::Error;
    use serde::{Deserialize, Deserializer, Serializer};

    const NEVER: &str = "never";

    pub fn serialize<S: Serializer>(patience: &Option<usize>, s: S) -> Result<S::Ok, S::Error> {
        match patience {
            Some(epochs) => s.serialize_u64(*epochs as u64),
            None => s.serialize_str(NEVER),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Epochs(usize),
            Word(String),
        }
        match Repr::deserialize(d) {
            Ok(Repr::Epochs(epochs)) => Ok(Some(epochs)),
            Ok(Repr::Word(word)) if word == NEVER => Ok(None),
            _ => Err(D::Error::custom(
                "patience: expected a whole number of epochs or \"never\"",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_recipe_v2() {
        let cfg = SelectionConfig::default();
        assert_eq!(cfg.ema_warmup_epochs, 8);
        assert_eq!(cfg.patience, Some(20));
        assert_eq!(cfg.min_delta, 1e-4);
        assert_eq!(cfg.validate(), Ok(()));
    }

    #[test]
    fn patience_reads_a_number_or_never() {
        let cfg: SelectionConfig = toml::from_str("patience = 5").unwrap();
        assert_eq!(cfg.patience, Some(5));
        let cfg: SelectionConfig = toml::from_str("patience = \"never\"").unwrap();
        assert_eq!(cfg.patience, None);
        let cfg: SelectionConfig = toml::from_str("min_delta = 0.0").unwrap();
        assert_eq!(cfg.patience, Some(20));
        assert!(toml::from_str::<SelectionConfig>("patience = \"soon\"").is_err());
        assert!(toml::from_str::<SelectionConfig>("patience = -1").is_err());
        assert!(toml::from_str::<SelectionConfig>("warmup = 3").is_err());

        let never = SelectionConfig {
            patience: None,
            ..SelectionConfig::default()
        };
        let text = toml::to_string(&never).unwrap();
        assert_eq!(toml::from_str::<SelectionConfig>(&text).unwrap(), never);
    }

    #[test]
    fn selector_round_trips_through_json() {
        let mut selector = Selector::new(SelectionConfig::default());
        selector.observe(0, 1.5, None);
        selector.observe(1, 1.6, None);
        let text = serde_json::to_string(&selector).unwrap();
        assert_eq!(serde_json::from_str::<Selector>(&text).unwrap(), selector);
    }

    #[test]
    fn nan_loss_is_never_an_improvement() {
        let mut selector = Selector::new(SelectionConfig::default());
        assert!(!selector.observe(0, f32::NAN, None).improved);
        assert_eq!(selector.best_loss, None);
        assert!(selector.observe(1, 2.0, None).improved);
        assert!(!selector.observe(2, f32::NAN, None).improved);
        assert_eq!(selector.best_loss, Some(2.0));
    }

    #[test]
    fn nan_live_loss_selects_a_finite_ema_after_warmup() {
        let mut selector = Selector::new(SelectionConfig::default());
        let decision = selector.observe(8, f32::NAN, Some(1.0));
        assert_eq!((decision.selected, decision.loss), (Selected::Ema, 1.0));
    }
}
