//! Reading a config file: parse, then validate, with errors that name the file, the field (and
//! line, where the YAML parser gives it) and what was expected.

use std::path::Path;

use super::Config;

/// Why a config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("{path}: cannot read the config file: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The YAML did not match the schema (unknown field, wrong type, bad value).
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's error, with line and column.
        #[source]
        source: Box<serde_saphyr::Error>,
    },
    /// A value is out of range or fields disagree.
    #[error("invalid config: field `{field}`: expected {expected}")]
    Invalid {
        /// The field, as written in YAML.
        field: &'static str,
        /// What it should have been.
        expected: String,
    },
    /// As [`Error::Invalid`], in a named file.
    #[error("{path}: {inner}")]
    InFile {
        /// The file.
        path: String,
        /// The validation error.
        #[source]
        inner: Box<Error>,
    },
}

impl Error {
    /// A bounded label for `tidegate_config_reloads_total{result}`-style metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Read { .. } => "read_error",
            Self::Parse { .. } => "parse_error",
            Self::Invalid { .. } | Self::InFile { .. } => "invalid",
        }
    }
}

/// Parses and validates YAML text; `origin` names it in errors.
pub fn parse(text: &str, origin: &str) -> Result<Config, Error> {
    let config: Config = if text.trim().is_empty() {
        Config::default()
    } else {
        serde_saphyr::from_str(text).map_err(|source| Error::Parse {
            path: origin.to_owned(),
            source: Box::new(source),
        })?
    };
    config.validate().map_err(|inner| Error::InFile {
        path: origin.to_owned(),
        inner: Box::new(inner),
    })?;
    Ok(config)
}

/// Reads, parses and validates a config file.
pub fn load_file(path: &Path) -> Result<Config, Error> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: origin.clone(),
        source,
    })?;
    parse(&text, &origin)
}
