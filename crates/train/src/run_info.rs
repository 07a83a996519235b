//! `run.json`: what a run was and what produced it, so that it can be resumed and checked.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::checkpoint::write_atomically;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub recipe: String,
    pub seed: u64,
    pub threads: usize,
    pub data: PathBuf,
    pub val_size: usize,
    /// sha256 of the training and validation records the run sees; checked on resume.
    #[serde(default)]
    pub data_sha256: Option<String>,
    pub train_limit: Option<usize>,
    pub epochs: usize,
    pub crate_version: String,
    pub git_revision: String,
    /// The CPU features that choose matrixmultiply's GEMM kernel; results are reproducible
    /// between machines with the same set.
    pub cpu_features: Vec<String>,
    pub best_epoch: Option<usize>,
    pub best_sha256: Option<String>,
    pub test_loss: Option<f64>,
    pub test_acc: Option<f64>,
}

/// The x86 features matrixmultiply dispatches on, as this CPU reports them.
pub fn cpu_features() -> Vec<String> {
    let mut features = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        let checks = [
            ("sse2", std::arch::is_x86_feature_detected!("sse2")),
            ("avx", std::arch::is_x86_feature_detected!("avx")),
            ("fma", std::arch::is_x86_feature_detected!("fma")),
            ("avx2", std::arch::is_x86_feature_detected!("avx2")),
            ("avx512f", std::arch::is_x86_feature_detected!("avx512f")),
        ];
        features.extend(checks.iter().filter(|c| c.1).map(|c| c.0.to_string()));
    }
    #[cfg(not(target_arch = "x86_64"))]
    features.push(std::env::consts::ARCH.to_string());
    features
}

pub fn git_revision() -> String {
    option_env!("SCRATCHNET_GIT_REVISION")
        .unwrap_or("unknown")
        .to_string()
}

impl RunInfo {
    pub fn path(run_dir: &Path) -> PathBuf {
        run_dir.join("run.json")
    }

    pub fn write(&self, run_dir: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)? + "\n";
        write_atomically(&RunInfo::path(run_dir), text.as_bytes())
    }

    pub fn read(run_dir: &Path) -> Result<RunInfo> {
        let path = RunInfo::path(run_dir);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }
}
