//! Weights and training state on disk, as safetensors files written atomically.
//!
//! A weights file holds the tensors of the network under the names PyTorch gives the same
//! network written as an `nn.Sequential` (`0.weight`, `1.running_mean`,
//! `1.num_batches_tracked`, ...), so `model.load_state_dict(safetensors.torch.load_file(f))`
//! loads it. Its metadata carries the recipe, which says how images were normalised.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use byteorder::{ByteOrder, LittleEndian};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use scratchnet_tensor::nn::Network;
use scratchnet_tensor::Tensor;

/// Metadata key of the recipe (TOML) in every file this module writes.
pub const RECIPE_KEY: &str = "scratchnet.recipe";

/// Writes `bytes` to `path` so that a reader sees the old file or the new one, never a
/// part: a temporary file in the same folder, flushed to disk, then renamed over `path`.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // A temporary file is private (0600) by default; the run's files are ordinary ones,
    // readable as the umask allows, like every other file the user makes.
    let mut builder = tempfile::Builder::new();
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    let mut tmp = builder
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    tmp.write_all(bytes)
        .and_then(|_| tmp.as_file().sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    tmp.persist(path)
        .with_context(|| format!("renaming into {}", path.display()))?;
    Ok(())
}

/// Little-endian f32 bytes.
pub fn f32_bytes(values: &[f32]) -> Vec<u8> {
    let mut bytes = vec![0u8; values.len() * 4];
    LittleEndian::write_f32_into(values, &mut bytes);
    bytes
}

/// An owned tensor ready to serialise.
pub struct Entry {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

impl Entry {
    pub fn f32(name: String, shape: &[usize], values: &[f32]) -> Entry {
        Entry {
            name,
            dtype: Dtype::F32,
            shape: shape.to_vec(),
            bytes: f32_bytes(values),
        }
    }
}

/// Serialises entries with metadata into safetensors bytes.
pub fn serialize(entries: &[Entry], metadata: HashMap<String, String>) -> Result<Vec<u8>> {
    let views = entries
        .iter()
        .map(|e| {
            Ok((
                e.name.clone(),
                TensorView::new(e.dtype, e.shape.clone(), &e.bytes)?,
            ))
        })
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()?;
    Ok(safetensors::serialize(views, Some(metadata))?)
}

/// The network's tensors under their `nn.Sequential` names.
pub fn network_entries(net: &Network) -> Vec<Entry> {
    let mut entries: Vec<Entry> = net
        .params
        .iter()
        .map(|p| Entry::f32(p.name.clone(), p.value.shape(), p.value.data()))
        .collect();
    for (layer_idx, stats) in bn_layers(net).zip(&net.running) {
        let c = stats.mean.len();
        entries.push(Entry::f32(
            format!("{layer_idx}.running_mean"),
            &[c],
            &stats.mean,
        ));
        entries.push(Entry::f32(
            format!("{layer_idx}.running_var"),
            &[c],
            &stats.var,
        ));
        entries.push(Entry {
            name: format!("{layer_idx}.num_batches_tracked"),
            dtype: Dtype::I64,
            shape: vec![],
            bytes: stats.n_batches.to_le_bytes().to_vec(),
        });
    }
    entries
}

fn bn_layers(net: &Network) -> impl Iterator<Item = usize> + '_ {
    net.layers
        .iter()
        .enumerate()
        .filter(|(_, l)| matches!(l, scratchnet_tensor::nn::Layer::BatchNorm2d { .. }))
        .map(|(i, _)| i)
}

/// Saves the network's weights to `path` (atomically), with the recipe in the metadata.
pub fn save_weights(path: &Path, net: &Network, recipe_toml: &str) -> Result<()> {
    let metadata = HashMap::from([(RECIPE_KEY.to_string(), recipe_toml.to_string())]);
    let bytes = serialize(&network_entries(net), metadata)?;
    write_atomically(path, &bytes)
}

/// A safetensors file read into memory.
pub struct TensorFile {
    pub path: std::path::PathBuf,
    bytes: Vec<u8>,
}

impl TensorFile {
    pub fn read(path: &Path) -> Result<TensorFile> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        SafeTensors::deserialize(&bytes)
            .map_err(|e| anyhow!("{} is not a valid safetensors file: {e}", path.display()))?;
        Ok(TensorFile {
            path: path.to_path_buf(),
            bytes,
        })
    }

    fn tensors(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.bytes).expect("checked when read")
    }

    pub fn metadata(&self, key: &str) -> Option<String> {
        let (_, meta) = SafeTensors::read_metadata(&self.bytes).ok()?;
        meta.metadata().as_ref()?.get(key).cloned()
    }

    /// The f32 tensor `name`, which must have `shape`.
    pub fn f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let tensors = self.tensors();
        let view = tensors
            .tensor(name)
            .map_err(|_| anyhow!("{}: tensor {name} is missing", self.path.display()))?;
        if view.dtype() != Dtype::F32 || view.shape() != shape {
            bail!(
                "{}: tensor {name} is {:?} {:?}, expected F32 {shape:?}",
                self.path.display(),
                view.dtype(),
                view.shape()
            );
        }
        let mut values = vec![0.0f32; view.data().len() / 4];
        LittleEndian::read_f32_into(view.data(), &mut values);
        // Training stops at the first non-finite loss, so no file it writes holds NaN or
        // infinity: one that does was damaged or made elsewhere.
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            bail!(
                "{}: tensor {name} holds {} at index {i}; the weights must be finite",
                self.path.display(),
                values[i]
            );
        }
        Ok(values)
    }

    /// The i64 scalar `name`.
    pub fn i64_scalar(&self, name: &str) -> Result<i64> {
        let tensors = self.tensors();
        let view = tensors
            .tensor(name)
            .map_err(|_| anyhow!("{}: tensor {name} is missing", self.path.display()))?;
        if view.dtype() != Dtype::I64 || view.data().len() != 8 {
            bail!(
                "{}: tensor {name} is not an i64 scalar",
                self.path.display()
            );
        }
        Ok(LittleEndian::read_i64(view.data()))
    }

    /// Overwrites the weights and running statistics of `net` with this file's.
    pub fn load_into(&self, net: &mut Network) -> Result<()> {
        // As PyTorch's `load_state_dict(strict=True)`: a tensor the network does not have
        // means the file is for another network.
        let expected: std::collections::HashSet<String> =
            network_entries(net).into_iter().map(|e| e.name).collect();
        let tensors = self.tensors();
        let mut names = tensors.names();
        names.sort();
        if let Some(extra) = names.iter().find(|name| !expected.contains(**name)) {
            bail!(
                "{}: tensor {extra} is not in this network (a file for another network?)",
                self.path.display()
            );
        }
        for p in &mut net.params {
            let values = self.f32(&p.name, p.value.shape())?;
            p.value = Tensor::from_vec(p.value.shape(), values);
        }
        let layer_idxs: Vec<usize> = bn_layers(net).collect();
        for (layer_idx, stats) in layer_idxs.into_iter().zip(&mut net.running) {
            let c = stats.mean.len();
            stats.mean = self.f32(&format!("{layer_idx}.running_mean"), &[c])?;
            stats.var = self.f32(&format!("{layer_idx}.running_var"), &[c])?;
            if let Some(i) = stats.var.iter().position(|&v| v < 0.0) {
                bail!(
                    "{}: tensor {layer_idx}.running_var holds {} at index {i}; a variance cannot be negative",
                    self.path.display(),
                    stats.var[i]
                );
            }
            stats.n_batches = self.i64_scalar(&format!("{layer_idx}.num_batches_tracked"))?;
        }
        Ok(())
    }
}

/// The sha256 of a file, in hex.
pub fn sha256_hex(path: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(format!("{:x}", Sha256::digest(&bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use scratchnet_tensor::nn::lenet5_bn;

    #[test]
    fn weights_holding_nan_are_refused_with_the_tensor_and_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let mut net = Network::new(lenet5_bn(), 1);
        net.params[2].value.data_mut()[4] = f32::NAN;
        save_weights(&path, &net, "name = \"x\"").unwrap();
        let file = TensorFile::read(&path).unwrap();
        let err = file
            .load_into(&mut Network::new(lenet5_bn(), 2))
            .unwrap_err();
        let message = format!("{err:#}");
        assert!(
            message.contains("tensor 1.weight holds NaN at index 4"),
            "{message}"
        );
    }

    #[test]
    fn a_negative_running_variance_or_a_foreign_tensor_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let mut net = Network::new(lenet5_bn(), 1);
        net.running[0].var[2] = -1.0;
        save_weights(&path, &net, "").unwrap();
        let err = TensorFile::read(&path)
            .unwrap()
            .load_into(&mut Network::new(lenet5_bn(), 2))
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("1.running_var holds -1 at index 2"),
            "{err:#}"
        );

        let mut entries = network_entries(&Network::new(lenet5_bn(), 1));
        entries.push(Entry::f32("99.weight".into(), &[1], &[0.5]));
        let bytes = serialize(&entries, HashMap::new()).unwrap();
        write_atomically(&path, &bytes).unwrap();
        let err = TensorFile::read(&path)
            .unwrap()
            .load_into(&mut Network::new(lenet5_bn(), 2))
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("tensor 99.weight is not in this network"),
            "{err:#}"
        );
    }

    #[test]
    fn atomic_writes_get_the_mode_of_an_ordinary_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let ordinary = dir.path().join("ordinary");
        std::fs::write(&ordinary, b"x").unwrap();
        let atomic = dir.path().join("atomic");
        write_atomically(&atomic, b"x").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&atomic), mode(&ordinary));
    }

    #[test]
    fn weights_round_trip_bit_for_bit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let mut net = Network::new(lenet5_bn(), 1);
        net.running[1].mean[3] = 0.125;
        net.running[2].n_batches = 77;
        save_weights(&path, &net, "name = \"x\"").unwrap();
        let mut back = Network::new(lenet5_bn(), 2);
        let file = TensorFile::read(&path).unwrap();
        file.load_into(&mut back).unwrap();
        assert_eq!(back, net);
        assert_eq!(file.metadata(RECIPE_KEY).as_deref(), Some("name = \"x\""));
    }

    #[test]
    fn a_missing_tensor_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let net = Network::new(lenet5_bn(), 1);
        let entries: Vec<Entry> = network_entries(&net)
            .into_iter()
            .filter(|e| e.name != "8.bias")
            .collect();
        write_atomically(&path, &serialize(&entries, HashMap::new()).unwrap()).unwrap();
        let err = TensorFile::read(&path)
            .unwrap()
            .load_into(&mut net.clone())
            .unwrap_err();
        assert!(err.to_string().contains("8.bias"), "{err}");
    }

    #[test]
    fn a_truncated_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        save_weights(&path, &Network::new(lenet5_bn(), 1), "").unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let err = TensorFile::read(&path).err().unwrap().to_string();
        assert!(err.contains("w.safetensors"), "{err}");
    }
}
