//! `metrics.csv`: one row per epoch, rewritten whole (and atomically) after every epoch.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::checkpoint::write_atomically;

/// One epoch. Accuracies are percentages; `epoch` counts from 1. The EMA columns are
/// empty for a recipe without an EMA network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricsRow {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_loss_std: f64,
    pub train_acc: f64,
    pub val_loss: f64,
    pub val_acc: f64,
    pub lr: f32,
    pub seconds: f64,
    pub ema_val_loss: Option<f64>,
    pub ema_val_acc: Option<f64>,
    pub selected: String,
}

pub fn write(path: &Path, rows: &[MetricsRow]) -> Result<()> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    for row in rows {
        writer.serialize(row)?;
    }
    if rows.is_empty() {
        writer.write_record([
            "epoch",
            "train_loss",
            "train_loss_std",
            "train_acc",
            "val_loss",
            "val_acc",
            "lr",
            "seconds",
            "ema_val_loss",
            "ema_val_acc",
            "selected",
        ])?;
    }
    let bytes = writer.into_inner().context("formatting metrics.csv")?;
    write_atomically(path, &bytes)
}

pub fn read(path: &Path) -> Result<Vec<MetricsRow>> {
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
    let rows = reader
        .deserialize()
        .collect::<Result<Vec<MetricsRow>, _>>()
        .with_context(|| format!("parsing {}", path.display()))?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_and_the_header_is_the_documented_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.csv");
        let row = MetricsRow {
            epoch: 1,
            train_loss: 1.5,
            train_loss_std: 0.25,
            train_acc: 40.0,
            val_loss: 1.25,
            val_acc: 50.5,
            lr: 1e-3,
            seconds: 3.0,
            ema_val_loss: None,
            ema_val_acc: None,
            selected: "live".into(),
        };
        write(&path, std::slice::from_ref(&row)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(
            "epoch,train_loss,train_loss_std,train_acc,val_loss,val_acc,lr,seconds,ema_val_loss,ema_val_acc,selected\n"
        ));
        assert_eq!(read(&path).unwrap(), vec![row]);
    }
}
