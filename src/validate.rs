//! Checks shared by every config builder, each returning a [`ConfigError`] that names the
//! field, the rule and the value.

use std::time::Duration;

use crate::error::ConfigError;

/// `d` must be non-zero and at most `max`.
pub(crate) fn duration_in(
    field: &'static str,
    d: Duration,
    max: Duration,
) -> Result<Duration, ConfigError> {
    if d.is_zero() {
        return Err(ConfigError::new(field, "must be greater than zero", d));
    }
    if d > max {
        return Err(ConfigError::new(
            field,
            format!("must be at most {max:?}"),
            d,
        ));
    }
    Ok(d)
}

/// A policy name must be non-empty (it labels events, metrics and errors).
pub(crate) fn name(name: &'static str) -> Result<&'static str, ConfigError> {
    check_name(name)?;
    Ok(name)
}

/// The rule of [`name`], for a name not yet made `'static` (one read from a file).
pub(crate) fn check_name(name: &str) -> Result<(), ConfigError> {
    if name.trim().is_empty() {
        return Err(ConfigError::new("name", "must not be empty", name));
    }
    Ok(())
}

/// A ratio must be in (0, 1]; NaN is rejected.
pub(crate) fn ratio(field: &'static str, r: f64) -> Result<f64, ConfigError> {
    // Written so that NaN fails the comparison.
    if !(r > 0.0 && r <= 1.0) {
        return Err(ConfigError::new(field, "must be in (0, 1]", r));
    }
    Ok(r)
}
