//! Human-readable durations in config files: `"500ms"`, `"30s"`, `"1h"`, `"1h 30m"`.
//!
//! Use with `#[serde(with = "tidegate_common::duration")]` on a [`Duration`] field, or
//! `tidegate_common::duration::option` on an `Option<Duration>`.

use serde::{Deserialize, Deserializer, Serializer, de::Error as _};
use std::time::Duration;

/// Parses a human duration such as `"250ms"`, `"45s"`, `"2m"` or `"1h 30m"`.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(tidegate_common::duration::parse("1m 30s").unwrap(), Duration::from_secs(90));
/// assert!(tidegate_common::duration::parse("soon").is_err());
/// ```
pub fn parse(text: &str) -> Result<Duration, Error> {
    humantime::parse_duration(text.trim()).map_err(|source| Error {
        text: text.to_owned(),
        source,
    })
}

/// A text that is not a duration.
#[derive(Debug, thiserror::Error)]
#[error("invalid duration {text:?}: {source} (expected e.g. \"500ms\", \"30s\", \"1h\")")]
pub struct Error {
    text: String,
    #[source]
    source: humantime::DurationError,
}

/// Formats a duration the way [`parse`] reads it back.
pub fn format(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Serde deserializer for a [`Duration`] written as a human string.
pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(de)?;
    parse(&text).map_err(D::Error::custom)
}

/// Serde serializer for a [`Duration`] as a human string.
pub fn serialize<S: Serializer>(d: &Duration, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(&format(*d))
}

/// The same for `Option<Duration>` (a missing field is `None`).
pub mod option {
    use super::*;

    /// Serde deserializer for an optional human duration.
    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Option<Duration>, D::Error> {
        Option::<String>::deserialize(de)?
            .map(|text| parse(&text).map_err(D::Error::custom))
            .transpose()
    }

    /// Serde serializer for an optional human duration.
    pub fn serialize<S: Serializer>(d: &Option<Duration>, ser: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => ser.serialize_some(&format(*d)),
            None => ser.serialize_none(),
        }
    }
}
