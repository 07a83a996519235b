//! Errors for config values that cannot be meant.

/// A config field outside the range its formula accepts.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{config}.{field} must be {expected}, found {value}")]
pub struct ConfigError {
    /// The config: `adam`, `schedule` or `selection`.
    pub config: &'static str,
    /// The field within it.
    pub field: &'static str,
    /// The accepted range, in words.
    pub expected: &'static str,
    /// The value found, as it was written (an f32 printed as an f32: `-0.001`, not the
    /// digits of its widening to f64).
    pub value: String,
}

/// `Ok` when `ok` holds, else the error for `config.field = value`.
pub(crate) fn check(
    ok: bool,
    config: &'static str,
    field: &'static str,
    expected: &'static str,
    value: impl std::fmt::Display,
) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError {
            config,
            field,
            expected,
            value: value.to_string(),
        })
    }
}
