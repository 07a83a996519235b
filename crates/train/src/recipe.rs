//! Recipes: everything that decides what a run computes, read from a TOML file.
//!
//! `--recipe` takes a built-in name (`original`, `v2`, the files under `recipes/`) or a
//! path. Unknown keys are errors, so a typo never silently falls back to a default.

use std::path::Path;

use anyhow::{bail, Context, Result};
use scratchnet_augment::AugmentConfig;
use scratchnet_optim::{AdamConfig, Schedule, SelectionConfig};
use scratchnet_tensor::nn::{self, Layer};
use serde::{Deserialize, Serialize};

/// The built-in recipes, compiled in so the binary works from any folder.
const BUILT_IN: [(&str, &str); 2] = [
    ("original", include_str!("../../../recipes/original.toml")),
    ("v2", include_str!("../../../recipes/v2.toml")),
];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmaConfig {
    pub decay: f32,
}

/// The network: a named built-in, or a list of layers.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum NetworkSpec {
    Named(String),
    Layers(Vec<Layer>),
}

/// By hand rather than `untagged`: serde's untagged error ("data did not match any variant")
/// named neither the layer nor the field; this one says `network layer 2: unknown variant ..`.
impl<'de> Deserialize<'de> for NetworkSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match toml::Value::deserialize(deserializer)? {
            toml::Value::String(name) => Ok(NetworkSpec::Named(name)),
            toml::Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| {
                    let layer = Layer::deserialize(item.clone())
                        .map_err(|e| D::Error::custom(format!("network layer {i}: {e}")))?;
                    // serde lets a layer without fields (tanh, relu, flatten) carry any keys.
                    let takes_none = matches!(layer, Layer::Tanh | Layer::Relu | Layer::Flatten);
                    match item
                        .as_table()
                        .and_then(|t| t.keys().find(|k| *k != "type"))
                    {
                        Some(extra) if takes_none => Err(D::Error::custom(format!(
                            "network layer {i}: unknown field `{extra}`: a {} layer takes none",
                            item.get("type")
                                .and_then(toml::Value::as_str)
                                .unwrap_or("?")
                        ))),
                        _ => Ok(layer),
                    }
                })
                .collect::<Result<_, _>>()
                .map(NetworkSpec::Layers),
            other => Err(D::Error::custom(format!(
                "network must be a name (\"lenet5-bn\") or a list of [[network]] layers, found {}",
                other.type_str()
            ))),
        }
    }
}

impl NetworkSpec {
    pub fn layers(&self) -> Result<Vec<Layer>> {
        let layers = match self {
            NetworkSpec::Named(name) if name == "lenet5-bn" => nn::lenet5_bn(),
            NetworkSpec::Named(name) => bail!("unknown network {name:?} (known: lenet5-bn)"),
            NetworkSpec::Layers(layers) => layers.clone(),
        };
        let shapes = nn::infer_shapes(&layers, &[3, 32, 32])?;
        match shapes.last().map(|s| &s[..]) {
            Some([10]) => Ok(layers),
            Some(shape) => {
                bail!("the network must end in 10 logits, its output has shape {shape:?}")
            }
            None => bail!("the network has no layers"),
        }
    }
}

/// The largest batch: beyond it one step's activations (about 60 KB an image for lenet5-bn,
/// kept for backward) stop fitting a small machine's memory.
pub const MAX_BATCH_SIZE: usize = 4096;

/// The most parameters a recipe's network may have (400 MB of f32, before Adam's moments).
pub const MAX_PARAMS: usize = 100_000_000;

/// The most activations one batch may keep for backward (4 GiB of f32): beyond it a run
/// would be killed by the kernel's out-of-memory killer without a word.
pub const MAX_BATCH_ACTIVATIONS: usize = 1 << 30;

fn has_batch_norm(layers: &[Layer]) -> bool {
    layers
        .iter()
        .any(|l| matches!(l, Layer::BatchNorm2d { .. }))
}

/// Parameters of `layers`, and the values their outputs hold for one 3x32x32 image.
fn network_size(layers: &[Layer]) -> (usize, usize) {
    let params = layers
        .iter()
        .map(|layer| match *layer {
            Layer::Conv2d {
                in_channels,
                out_channels,
                kernel,
                ..
            } => out_channels.saturating_mul(
                in_channels
                    .saturating_mul(kernel)
                    .saturating_mul(kernel)
                    .saturating_add(1),
            ),
            Layer::BatchNorm2d { channels } => channels.saturating_mul(2),
            Layer::Linear {
                in_features,
                out_features,
            } => out_features.saturating_mul(in_features.saturating_add(1)),
            _ => 0,
        })
        .fold(0usize, usize::saturating_add);
    let activations = nn::infer_shapes(layers, &[3, 32, 32])
        .map(|shapes| {
            shapes
                .iter()
                .map(|s| s.iter().fold(1usize, |a, &b| a.saturating_mul(b)))
                .fold(0usize, usize::saturating_add)
        })
        .unwrap_or(0);
    (params, activations)
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    pub name: String,
    pub network: NetworkSpec,
    pub epochs: usize,
    pub batch_size: usize,
    #[serde(default)]
    pub label_smoothing: f32,
    #[serde(default)]
    pub augment: AugmentConfig,
    #[serde(default)]
    pub optimizer: AdamConfig,
    #[serde(default)]
    pub schedule: Schedule,
    /// No EMA network when absent.
    #[serde(default)]
    pub ema: Option<EmaConfig>,
    #[serde(default)]
    pub selection: SelectionConfig,
}

impl Recipe {
    /// A built-in recipe by name, or a TOML file by path.
    pub fn load(name_or_path: &str) -> Result<Recipe> {
        if let Some((_, text)) = BUILT_IN.iter().find(|(name, _)| *name == name_or_path) {
            return Recipe::parse(text).with_context(|| format!("built-in recipe {name_or_path}"));
        }
        let path = Path::new(name_or_path);
        if !path.exists() {
            let names: Vec<&str> = BUILT_IN.iter().map(|(n, _)| *n).collect();
            bail!(
                "recipe {name_or_path:?} is neither a built-in ({}) nor a file",
                names.join(", ")
            );
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading recipe {}", path.display()))?;
        Recipe::parse(&text).with_context(|| format!("recipe {}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Recipe> {
        let recipe: Recipe = toml::from_str(text)?;
        // serde lets `kind = "constant"`, which has no fields, carry any keys.
        if recipe.schedule == Schedule::Constant {
            let table: toml::Table = toml::from_str(text)?;
            let schedule = table.get("schedule").and_then(toml::Value::as_table);
            if let Some(extra) = schedule.and_then(|t| t.keys().find(|k| *k != "kind")) {
                bail!("schedule: unknown field `{extra}`: the constant schedule takes none");
            }
        }
        recipe.validate()?;
        Ok(recipe)
    }

    /// Whether the network normalises over the batch (so a batch of one image cannot train).
    pub fn has_batch_norm(&self) -> Result<bool> {
        Ok(has_batch_norm(&self.network.layers()?))
    }

    pub fn validate(&self) -> Result<()> {
        let layers = self.network.layers()?;
        if self.batch_size == 0 {
            bail!("batch_size must be at least 1");
        }
        if self.batch_size > MAX_BATCH_SIZE {
            bail!(
                "batch_size {} is more than {MAX_BATCH_SIZE} (a batch's activations must fit in memory)",
                self.batch_size
            );
        }
        let (n_params, n_activations) = network_size(&layers);
        if n_params > MAX_PARAMS {
            bail!("the network has {n_params} parameters, more than {MAX_PARAMS}");
        }
        let batch_activations = n_activations.saturating_mul(self.batch_size);
        if batch_activations > MAX_BATCH_ACTIVATIONS {
            bail!(
                "a batch of {} keeps {batch_activations} activations for backward \
                 ({n_activations} an image), more than {MAX_BATCH_ACTIVATIONS}: use a smaller \
                 batch or network",
                self.batch_size
            );
        }
        if has_batch_norm(&layers) && self.batch_size == 1 {
            bail!(
                "batch_size 1 leaves batch norm one value per channel to normalise: use at least 2"
            );
        }
        let name_ok = !self.name.is_empty()
            && !self.name.starts_with('.')
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !name_ok {
            bail!(
                "name {:?} must be letters, digits, '-', '_' or '.', not starting with '.' \
                 (it names the run folder)",
                self.name
            );
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            bail!(
                "label_smoothing must be in [0, 1), got {}",
                self.label_smoothing
            );
        }
        if let Some(ema) = &self.ema {
            if !(0.0..1.0).contains(&ema.decay) {
                bail!("ema.decay must be in [0, 1), got {}", ema.decay);
            }
        }
        self.augment.validate()?;
        self.optimizer.validate()?;
        self.schedule.validate()?;
        self.selection.validate()?;
        Ok(())
    }

    /// The recipe as TOML. Floats are written as the shortest decimal of their f32 value
    /// (`lr = 0.001`, not the f64 expansion `0.0010000000474974513`), which reads back as
    /// the same f32.
    pub fn to_toml(&self) -> String {
        let mut value = toml::Value::try_from(self).expect("a recipe always serialises");
        shorten_floats(&mut value);
        toml::to_string(&value).expect("a recipe always serialises")
    }
}

/// Rewrites every float of a TOML tree as the f64 nearest the shortest decimal of its f32.
fn shorten_floats(value: &mut toml::Value) {
    match value {
        toml::Value::Float(x) => {
            let short = format!("{}", *x as f32);
            *x = short.parse().expect("an f32 prints as a valid float");
        }
        toml::Value::Array(items) => items.iter_mut().for_each(shorten_floats),
        toml::Value::Table(table) => table.iter_mut().for_each(|(_, v)| shorten_floats(v)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_recipes_parse_and_say_what_recipes_md_says() {
        let original = Recipe::load("original").unwrap();
        assert_eq!(original.optimizer.weight_decay, 1e-3);
        assert_eq!(original.label_smoothing, 0.0);
        assert!(original.ema.is_none());
        assert_eq!(original.selection.patience, None);
        let v2 = Recipe::load("v2").unwrap();
        assert_eq!(v2.optimizer.weight_decay, 5e-4);
        assert_eq!(v2.label_smoothing, 0.05);
        assert_eq!(v2.ema, Some(EmaConfig { decay: 0.999 }));
        assert_eq!(
            v2.schedule,
            Schedule::Cosine {
                t_max: 150,
                eta_min: 3e-5
            }
        );
        assert_eq!(v2.augment.crop_padding, 2);
        assert_eq!(v2.augment.flip_prob, 0.4);
        assert_eq!(v2.selection.patience, Some(20));
    }

    #[test]
    fn a_bad_inline_layer_is_named_by_its_index_and_field() {
        let text = "name = \"x\"\nepochs = 1\nbatch_size = 2\n\
                    [[network]]\ntype = \"flatten\"\n\
                    [[network]]\ntype = \"conv3d\"\n";
        let err = format!("{:#}", Recipe::parse(text).unwrap_err());
        assert!(
            err.contains("network layer 1") && err.contains("conv3d"),
            "{err}"
        );
        let text = "name = \"x\"\nepochs = 1\nbatch_size = 2\n\
                    [[network]]\ntype = \"conv2d\"\nin_channels = 3\nout_channels = 6\n";
        let err = format!("{:#}", Recipe::parse(text).unwrap_err());
        assert!(
            err.contains("network layer 0") && err.contains("kernel"),
            "{err}"
        );
    }

    #[test]
    fn keys_on_what_takes_none_are_refused() {
        let base = "name = \"x\"\nepochs = 1\nbatch_size = 2\nnetwork = \"lenet5-bn\"\n";
        let err = Recipe::parse(&format!(
            "{base}[schedule]\nkind = \"constant\"\nt_max = 5\n"
        ))
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("unknown field `t_max`"),
            "{err:#}"
        );
        let text = "name = \"x\"\nepochs = 1\nbatch_size = 2\n\
                    [[network]]\ntype = \"flatten\"\nstart_dim = 2\n";
        let err = format!("{:#}", Recipe::parse(text).unwrap_err());
        assert!(
            err.contains("network layer 0: unknown field `start_dim`: a flatten layer takes none"),
            "{err}"
        );
    }

    #[test]
    fn a_layer_of_size_zero_is_refused() {
        // A conv with no output channel used to reach the initialiser and panic there.
        let text = "name = \"x\"\nepochs = 1\nbatch_size = 2\n\
                    [[network]]\ntype = \"conv2d\"\nin_channels = 3\nout_channels = 0\nkernel = 3\n";
        let err = format!("{:#}", Recipe::parse(text).unwrap_err());
        assert!(
            err.contains("network layer 0: out_channels must be at least 1, found 0"),
            "{err}"
        );
    }

    #[test]
    fn unknown_key_is_an_error() {
        let text = include_str!("../../../recipes/v2.toml").replace("batch_size", "batch_sise");
        let err = format!("{:#}", Recipe::parse(&text).unwrap_err());
        assert!(err.contains("batch_sise"), "{err}");
    }

    #[test]
    fn recipe_round_trips_through_toml() {
        let v2 = Recipe::load("v2").unwrap();
        assert_eq!(Recipe::parse(&v2.to_toml()).unwrap(), v2);
    }

    // Pins that recipe.toml shows `lr = 0.001`, not the f64 expansion of the f32 value.
    #[test]
    fn floats_are_written_as_their_short_decimal() {
        let text = Recipe::load("v2").unwrap().to_toml();
        assert!(text.contains("lr = 0.001\n"), "{text}");
        assert!(text.contains("min_delta = 0.0001\n"), "{text}");
        assert!(!text.contains("0.00100000004"), "{text}");
    }

    #[test]
    fn a_network_can_be_written_as_a_list_of_layers() {
        let text = r#"
            name = "small"
            epochs = 1
            batch_size = 10
            [[network]]
            type = "conv2d"
            in_channels = 3
            out_channels = 4
            kernel = 3
            padding = 1
            [[network]]
            type = "relu"
            [[network]]
            type = "max_pool2d"
            kernel = 2
            stride = 2
            [[network]]
            type = "flatten"
            [[network]]
            type = "linear"
            in_features = 1024
            out_features = 10
        "#;
        let recipe = Recipe::parse(text).unwrap();
        let layers = recipe.network.layers().unwrap();
        assert_eq!(layers.len(), 5);
        assert_eq!(
            layers[0],
            Layer::Conv2d {
                in_channels: 3,
                out_channels: 4,
                kernel: 3,
                stride: 1,
                padding: 1
            }
        );
        let wrong = text.replace("in_features = 1024", "in_features = 1000");
        let err = format!("{:#}", Recipe::parse(&wrong).unwrap_err());
        assert!(err.contains("layer 4"), "{err}");
    }

    #[test]
    fn missing_recipe_file_names_it() {
        let err = Recipe::load("no/such/recipe.toml").unwrap_err().to_string();
        assert!(err.contains("no/such/recipe.toml"), "{err}");
    }
}
